// Tensor comparison helpers for tests: relative error in the L2 norm, with a readable report on mismatch.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include <fmt/format.h>

namespace dsmoe::testing {

struct Diff {
  double rel = 0;      // ||a - b|| / ||b||  (absolute when ||b|| == 0)
  double max_abs = 0;  // max |a - b|
  int64_t worst = 0;   // index of max_abs
};

inline Diff compare(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  Diff d;
  for (int64_t i = 0; i < n; ++i) {
    const double diff = static_cast<double>(a[i]) - b[i];
    num += diff * diff;
    den += static_cast<double>(b[i]) * b[i];
    if (std::fabs(diff) > d.max_abs) {
      d.max_abs = std::fabs(diff);
      d.worst = i;
    }
  }
  d.rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return d;
}

inline std::string describe(const std::string& what, const float* got, const float* want, int64_t n, const Diff& d) {
  std::string s = fmt::format("{}: rel err {:.3e}, max abs diff {:.3e} at {} (got {} want {}); first values:", what,
                              d.rel, d.max_abs, d.worst, got[d.worst], want[d.worst]);
  for (int64_t i = 0; i < std::min<int64_t>(n, 5); ++i) s += fmt::format(" {:.6g}/{:.6g}", got[i], want[i]);
  return s;
}

}  // namespace dsmoe::testing

#define DSMOE_EXPECT_CLOSE(what, got, want, n, tol)                                         \
  do {                                                                                      \
    const ::dsmoe::testing::Diff _d = ::dsmoe::testing::compare((got), (want), (n));        \
    EXPECT_LE(_d.rel, (tol)) << ::dsmoe::testing::describe((what), (got), (want), (n), _d); \
  } while (0)
