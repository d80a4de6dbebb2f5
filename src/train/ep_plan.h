// Communication cost model of expert + data parallel training, per rank per step (reference: expert-parallel.md).
//
// Dimension legend: W = ranks = ep * dp, t = tokens per rank per step, k = experts per token, d = hidden size,
// b = bytes per element sent, L = MoE layers, E = ep (the EP group size).
//   all-to-all      = t k d b * 4 (dispatch + combine, forward + backward) * L * (E - 1) / E
//   dense all-reduce = 2 (W - 1) / W * P_dense b            (ring; every rank holds every dense parameter)
//   expert all-reduce = 2 (dp - 1) / dp * (P_experts / E) b (over the ranks holding the same experts)
//   time = sum over kinds of (latency * messages + bytes / bandwidth)
// The all-to-all figure is exact when every token's rows spread over the EP group as evenly as its experts do
// (k = routed experts, or in expectation for uniform routing); dsmoe's trainer counts the bytes it sends.
#pragma once
#include <cstdint>
#include <string>

#include "model/config.h"

namespace dsmoe {

struct EpPlanInput {
  int64_t ep = 1, dp = 1, tokens_per_step = 0;
  double bytes_per_element = 4;  // dsmoe sends f32; 2 for bf16 trainers
  double bandwidth_gbs = 12.5;   // GB/s per rank (100 Gb/s)
  double latency_us = 5;
};

struct EpPlan {
  int64_t ranks = 1, tokens_per_rank = 0, moe_layers = 0;
  int64_t dense_params = 0, expert_params = 0;
  double alltoall_bytes = 0, dense_allreduce_bytes = 0, expert_allreduce_bytes = 0;
  int64_t alltoall_messages = 0, dense_allreduce_messages = 0, expert_allreduce_messages = 0;
  double alltoall_seconds = 0, dense_allreduce_seconds = 0, expert_allreduce_seconds = 0;
  double total_seconds() const { return alltoall_seconds + dense_allreduce_seconds + expert_allreduce_seconds; }
};

int64_t routed_expert_params(const ModelConfig& c);
EpPlan ep_plan(const ModelConfig& c, const EpPlanInput& in);
std::string ep_plan_table(const ModelConfig& c, const EpPlanInput& in, const EpPlan& p);

}  // namespace dsmoe
