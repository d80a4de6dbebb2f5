// MoE routing as small named steps (megablocks' indices_and_bins): softmax gate -> top-k -> optional
// renormalisation -> capacity -> a RoutingPlan that groups the kept (token, slot) assignments by expert.
// The plan is what lets each expert run one GEMM over its own contiguous rows instead of a loop over tokens.
//
// Dimension legend: T = tokens in the batch, E = routed experts, k = experts per token, m = masked top experts
// per token (RoutingOptions::mask_top), A = kept assignments (A = T*k when dropless).
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/parallel.h"

namespace dsmoe {

// Evaluation-time changes to the trained routing, for the paper's §4.5 analyses (reference §3.5): removing the
// shared experts (and activating one more routed expert), masking each token's top routed experts, and varying
// the number of activated routed experts. The default-constructed value is the trained routing.
//   - The gate softmax is over all E routed experts as always: the probabilities are unchanged.
//   - mask_top = m: per token, the m experts of highest probability (ties -> lower index, as top-k) are excluded and
//     the top-k is chosen among the other E - m (so the chosen ones are ranks m .. m+k-1 of the full order).
//   - top_k = k (> 0) replaces num_experts_per_tok; 0 keeps the config's.
//   - The combine weights are the chosen experts' softmax probabilities, renormalised over the chosen k only when
//     norm_topk_prob and k > 1 (as HF); masked experts get no weight and are not in the denominator.
//   - disable_shared: the shared experts' output is left out (the layer is the weighted routed sum alone).
//   - Capacity (capacity_factor > 0) counts the k chosen per token: C = ceil(cf * T * k / E).
// Evaluation only: the balance losses are defined for the trained routing, so a training forward with active
// options is an error (validate).
struct RoutingOptions {
  bool disable_shared = false;
  int64_t top_k = 0;     // routed experts per token; 0 = config num_experts_per_tok
  int64_t mask_top = 0;  // per token, exclude the mask_top highest-probability routed experts before the top-k

  // Any field set (even top_k equal to the config's: it then routes identically, but is still refused in training).
  bool active() const { return disable_shared || top_k != 0 || mask_top != 0; }
  // The k the routing uses.
  int64_t experts_per_token(const ModelConfig& c) const { return top_k != 0 ? top_k : c.num_experts_per_tok; }
  // One dsmoe::Error naming the offending values: options on a dense model, top_k < 0 (an explicit top_k of 0 is
  // the config's), mask_top < 0, mask_top + k > n_routed_experts, or any option with `training`.
  void validate(const ModelConfig& c, bool training) const;
};

struct RoutingPlan {
  int64_t T = 0, E = 0, k = 0;
  std::vector<int32_t> topk_expert;     // [T, k] chosen experts, by descending probability
  std::vector<float> topk_weight;       // [T, k] combine weights (renormalised when norm_topk_prob)
  std::vector<int32_t> slot_row;        // [T, k] row of the assignment in expert-sorted order; -1 = dropped
  std::vector<int32_t> row_token;       // [A] token of each expert-sorted row
  std::vector<int64_t> expert_offsets;  // [E + 1] rows of expert e are [offsets[e], offsets[e+1])
  std::vector<int64_t> selected_count;  // [E] top-k selections per expert before dropping (the f of the losses)
  int64_t capacity = 0;                 // per-expert capacity; 0 = unlimited
  int64_t n_dropped = 0;

  int64_t rows() const { return expert_offsets.empty() ? 0 : expert_offsets.back(); }
  int64_t rows_of(int64_t e) const { return expert_offsets[e + 1] - expert_offsets[e]; }
};

// Build the plan from gate probabilities probs [T, E] (softmax already applied).
// Ties in the top-k break towards the lower expert index. With mask_top = m > 0 each token's m most probable experts
// (same order, same ties) are skipped and the top-k is taken from the rest (RoutingOptions); needs k >= 1 and
// m + k <= E. selected_count then counts the experts actually chosen, never the masked ones.
// With capacity_factor > 0 each expert keeps at most ceil(cf * T * k / E) assignments, the earliest tokens first
// (GShard-style dropping in token order). With `reduce` (data parallelism) T is every rank's tokens together and the
// earliest are counted across the ranks in rank order (their shares of the batch are consecutive), so the drops are
// one process's.
RoutingPlan routing_plan_build(const float* probs, int64_t T, int64_t E, int64_t k, bool norm_topk_prob,
                               double capacity_factor, const BatchReduce* reduce = nullptr, int64_t mask_top = 0);

// Back-propagate d(combine weights) [T, k] to d(probs) [T, E] (+=), through the optional renormalisation.
// Dropped assignments carry no gradient of their own but still sit in the renormalisation's denominator.
void routing_weights_backward(const RoutingPlan& plan, const float* probs, bool norm_topk_prob, const float* dweight,
                              float* dprobs);

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
BalanceLoss balance_loss(const ModelConfig& config, const float* probs, const RoutingPlan& plan, int64_t B, int64_t S,
                         float* dprobs, const BatchReduce* reduce = nullptr);

}  // namespace dsmoe
