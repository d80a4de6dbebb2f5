// A tiny opt-in phase profiler: PROFILE_SCOPE("attn.fwd") accumulates wall time under a name when profiling is on
// (profile_enable(true)); off, it costs one branch. Only for serial code (the phases, not inside parallel loops).
#pragma once
#include <chrono>
#include <map>
#include <string>

namespace dsmoe {

struct ProfileTable {
  bool enabled = false;
  std::map<std::string, double> seconds;
};
ProfileTable& profile_table();
inline void profile_enable(bool on) { profile_table().enabled = on; }

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
