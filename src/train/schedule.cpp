#include "train/schedule.h"

#include <cmath>

#include "core/error.h"

namespace dsmoe {

Schedule schedule_from_name(const std::string& name) {
  if (name == "constant") return Schedule::constant;
  if (name == "multistep") return Schedule::multistep;
  if (name == "cosine") return Schedule::cosine;
  fail("unknown schedule '{}' (expected constant, multistep or cosine)", name);
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::constant: return "constant";
    case Schedule::multistep: return "multistep";
    case Schedule::cosine: return "cosine";
  }
  return "?";
}

double schedule_lr(Schedule schedule, double lr, int64_t step, int64_t total, int64_t warmup) {
  if (warmup > 0 && step < warmup) return lr * static_cast<double>(step + 1) / warmup;
  switch (schedule) {
    case Schedule::constant: return lr;
    case Schedule::multistep: {
      double factor = 1.0;
      // floor(0.8 N) and floor(0.9 N) in integers, so no rounding of 0.8 * N can move the boundary
      if (step >= 8 * total / 10) factor *= 0.316;
      if (step >= 9 * total / 10) factor *= 0.316;
      return lr * factor;
    }
    case Schedule::cosine: {
      const double span = static_cast<double>(total - warmup);
      const double progress = span > 0 ? static_cast<double>(step - warmup) / span : 1.0;
      return lr * (0.1 + 0.9 * 0.5 * (1.0 + std::cos(3.141592653589793 * progress)));
    }
  }
  return lr;
}

}  // namespace dsmoe
