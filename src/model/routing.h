// MoE routing as small named steps (megablocks' indices_and_bins): softmax gate -> top-k -> optional
// renormalisation -> capacity -> a RoutingPlan that groups the kept (token, slot) assignments by expert.
// The plan is what lets each expert run one GEMM over its own contiguous rows instead of a loop over tokens.
//
// Dimension legend: T = tokens in the batch, E = routed experts, k = experts per token, A = kept assignments
// (A = T*k when dropless).
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/parallel.h"

namespace dsmoe {

struct RoutingPlan {
  int64_t T = 0, E = 0, k = 0;
  std::vector<int32_t> topk_expert;      // [T, k] chosen experts, by descending probability
  std::vector<float> topk_weight;        // [T, k] combine weights (renormalised when norm_topk_prob)
  std::vector<int32_t> slot_row;         // [T, k] row of the assignment in expert-sorted order; -1 = dropped
  std::vector<int32_t> row_token;        // [A] token of each expert-sorted row
  std::vector<int64_t> expert_offsets;   // [E + 1] rows of expert e are [offsets[e], offsets[e+1])
  std::vector<int64_t> selected_count;   // [E] top-k selections per expert before dropping (the f of the losses)
  int64_t capacity = 0;                  // per-expert capacity; 0 = unlimited
  int64_t n_dropped = 0;

  int64_t rows() const { return expert_offsets.empty() ? 0 : expert_offsets.back(); }
  int64_t rows_of(int64_t e) const { return expert_offsets[e + 1] - expert_offsets[e]; }
};

// Build the plan from gate probabilities probs [T, E] (softmax already applied).
// Ties in the top-k break towards the lower expert index. With capacity_factor > 0 each expert keeps at most
// ceil(cf * T * k / E) assignments, the earliest tokens first (GShard-style dropping in token order). With `reduce`
// (data parallelism) T is every rank's tokens together and the earliest are counted across the ranks in rank order
// (their shares of the batch are consecutive), so the drops are one process's.
RoutingPlan routing_plan_build(const float* probs, int64_t T, int64_t E, int64_t k, bool norm_topk_prob,
                               double capacity_factor, const BatchReduce* reduce = nullptr);

// Back-propagate d(combine weights) [T, k] to d(probs) [T, E] (+=), through the optional renormalisation.
// Dropped assignments carry no gradient of their own but still sit in the renormalisation's denominator.
void routing_weights_backward(const RoutingPlan& plan, const float* probs, bool norm_topk_prob,
                              const float* dweight, float* dprobs);

// Softmax backward over rows: dlogits = p * (dp - sum(p * dp)). [T, E]
void softmax_backward_rows(const float* probs, const float* dprobs, float* dlogits, int64_t T, int64_t E);

// The balance losses of one MoE layer (paper §3.3), over a batch of B sequences of S tokens (T = B*S).
//   expert-level (alpha1 = aux_loss_alpha): seq_aux -> per sequence f.P averaged over the batch; else over all T.
//   device-level (alpha2 = device_aux_loss_alpha, D = n_expert_groups): alpha2 * sum_g f'_g P'_g with
//   f'_g = mean of f over group g, P'_g = sum of P over group g, over all T tokens.
// f counts top-k selections (not differentiated); P = mean gate probability (differentiated).
struct BalanceLoss {
  double expert = 0.0;
  double device = 0.0;
  double total() const { return expert + device; }
};
// Returns the loss values; when dprobs is non-null adds d(loss)/d(probs) [T, E] into it. With `reduce` (data
// parallelism) the batch is every rank's B sequences together: the statistics are summed over the ranks, the
// returned values are the global batch's, and dprobs is this rank's share of the global gradient.
BalanceLoss balance_loss(const ModelConfig& config, const float* probs, const RoutingPlan& plan, int64_t B,
                         int64_t S, float* dprobs, const BatchReduce* reduce = nullptr);

}  // namespace dsmoe
