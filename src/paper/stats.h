// Small statistics and number formatting shared by the paper-suite reports.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace dsmoe::paper {

struct Summary {
  double mean = 0, sd = 0, spread = 0;  // sd: sample standard deviation (0 for one value); spread: max - min
};

inline Summary summarize(const std::vector<double>& v) {
  Summary s;
  if (v.empty()) return s;
  double lo = v[0], hi = v[0];
  for (double x : v) s.mean += x, lo = std::min(lo, x), hi = std::max(hi, x);
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  s.spread = hi - lo;
  return s;
}

// 16375728128 -> "16,375,728,128".
inline std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

}  // namespace dsmoe::paper
