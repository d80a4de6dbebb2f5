// Learning-rate schedules. Step s counts from 0; N = total steps; W = warmup steps.
//   warmup (all schedules): lr * (s + 1) / W while s < W
//   constant:  lr
//   multistep: the paper's (§4.1.3): lr, x0.316 from step floor(0.8 N), x0.316^2 from step floor(0.9 N)
//   cosine:    lr * (0.1 + 0.9 * 0.5 * (1 + cos(pi * (s - W) / (N - W))))
#pragma once
#include <cstdint>
#include <string>

namespace dsmoe {

enum class Schedule { constant, multistep, cosine };

Schedule schedule_from_name(const std::string& name);  // throws on unknown names
const char* schedule_name(Schedule s);
double schedule_lr(Schedule schedule, double lr, int64_t step, int64_t total_steps, int64_t warmup);

}  // namespace dsmoe
