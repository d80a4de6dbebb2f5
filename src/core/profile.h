// A tiny opt-in phase profiler: PROFILE_SCOPE("fwd.attention") accumulates wall time under a name when profiling is
// on (profile_enable(true)); off, it costs one branch. Only for serial code (the phases, not inside parallel loops).
//
// Names are dotted paths and a scope opened inside another one is named below it ("fwd.ffn.experts" runs inside
// "fwd.ffn"), so a printed breakdown can add up the top-level phases and show the nested ones as parts of their
// parent. Scopes end at their closing brace: give each phase its own block, or the next phase's time is counted
// in it too.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace dsmoe {

struct ProfileTable {
  bool enabled = false;
  std::map<std::string, double> seconds;
};
ProfileTable& profile_table();
inline void profile_enable(bool on) { profile_table().enabled = on; }

// The phase `name` is part of: the longest other name in `seconds` that is a dotted prefix of it ("fwd.ffn" for
// "fwd.ffn.experts"); empty for a top-level phase.
std::string profile_parent(const std::map<std::string, double>& seconds, const std::string& name);
// One line per phase, nested phases indented under their parent, in ms per step; then the rest of `step_seconds`
// that no top-level phase covers ("other"). `steps` divides every total.
std::string profile_breakdown(const std::map<std::string, double>& seconds, double step_seconds, int64_t steps);

class ProfileScope {
 public:
  explicit ProfileScope(const char* name) : name_(name) {
    if (profile_table().enabled) start_ = std::chrono::steady_clock::now();
  }
  ~ProfileScope() {
    if (profile_table().enabled)
      profile_table().seconds[name_] +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  const char* name_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace dsmoe

#define DSMOE_PROFILE_CAT2(a, b) a##b
#define DSMOE_PROFILE_CAT(a, b) DSMOE_PROFILE_CAT2(a, b)
#define PROFILE_SCOPE(name) ::dsmoe::ProfileScope DSMOE_PROFILE_CAT(profile_scope_, __LINE__)(name)
