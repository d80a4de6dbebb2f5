#include "core/profile.h"

#include <fmt/format.h>

namespace dsmoe {

ProfileTable& profile_table() {
  static ProfileTable table;
  return table;
}

std::string profile_parent(const std::map<std::string, double>& seconds, const std::string& name) {
  for (size_t dot = name.rfind('.'); dot != std::string::npos && dot > 0; dot = name.rfind('.', dot - 1)) {
    const std::string prefix = name.substr(0, dot);
    if (seconds.count(prefix)) return prefix;
  }
  return {};
}

std::string profile_breakdown(const std::map<std::string, double>& seconds, double step_seconds, int64_t steps) {
  std::string out;
  double top_level = 0;
  // The map's order puts every nested phase right after its parent ("fwd.ffn" < "fwd.ffn.experts" < "fwd.head").
  for (const auto& [name, sec] : seconds) {
    int depth = 0;
    for (std::string p = profile_parent(seconds, name); !p.empty(); p = profile_parent(seconds, p)) ++depth;
    if (depth == 0) top_level += sec;
    out += fmt::format("  {:<{}}{:<{}} {:8.1f} ms/step{}\n", "", 2 * depth, name, 24 - 2 * depth, 1e3 * sec / steps,
                       depth > 0 ? fmt::format("  (part of {})", profile_parent(seconds, name)) : "");
  }
  out += fmt::format("  {:<24} {:8.1f} ms/step  (the step's time outside the phases above)\n", "other",
                     1e3 * (step_seconds * steps - top_level) / steps);
  return out;
}

}  // namespace dsmoe
