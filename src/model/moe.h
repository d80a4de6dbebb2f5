// Feed-forward blocks: the SwiGLU MLP (dense layers, shared experts, and each routed expert) and the MoE layer.
//
// Dimension legend: T = tokens (B sequences of S), d = hidden, F = MLP width, E = routed experts,
// k = experts per token, A = kept assignments (rows of the routing plan), Fe = expert width,
// Fs = fused shared-expert width (n_shared * Fe; SwiGLU is separable over its units, so the shared experts are one
// wider MLP, as HF builds them).
#pragma once
#include <cstdint>

#include "core/buffer.h"
#include "model/config.h"
#include "model/parallel.h"
#include "model/params.h"
#include "model/routing.h"

namespace dsmoe {

// y[T,d] (= or += with y_beta 1) = (silu(x wg^T) * (x wu^T)) wd^T.  Saves g, u [T,F]; act [T,F] is scratch.
void swiglu_mlp_forward(const float* x, const float* wg, const float* wu, const float* wd, int64_t T, int64_t d,
                        int64_t F, float* g, float* u, float* act, float* y, float y_beta);
// dx[T,d] (= or += with dx_beta 1); dwg, dwu, dwd (+=). act, dact, dg, du [T,F] are scratch.
void swiglu_mlp_backward(const float* x, const float* wg, const float* wu, const float* wd, const float* g,
                         const float* u, const float* dy, int64_t T, int64_t d, int64_t F, float* dx, float dx_beta,
                         float* dwg, float* dwu, float* dwd, float* act, float* dact, float* dg, float* du);

// What a MoE layer keeps from forward for backward.
struct MoeActs {
  FloatBuffer probs;  // [T, E] gate softmax
  RoutingPlan plan;
  FloatBuffer xs;      // [A, d] inputs gathered in expert order
  FloatBuffer g, u;    // [A, Fe] expert gate/up pre-activations
  FloatBuffer ye;      // [A, d] expert outputs before weighting
  FloatBuffer sg, su;  // [T, Fs] shared-expert pre-activations
  BalanceLoss balance;
  // Expert parallelism: this rank's experts run over the rows other ranks sent it; g and u are then [R, Fe].
  ExpertRows exchange;
  FloatBuffer xr;  // [R, d] received rows, expert-major
};

// y[T,d] = sum_j w_tj Expert_{e_tj}(x_t) + Shared(x_t). Computes the balance losses when `training`.
// `par` (model/parallel.h): with `reduce` the balance losses are over every rank's batch together; with `experts`
// this rank computes only its own experts, for the rows every rank of its EP group routes to them.
// `routing` (model/routing.h): evaluation-time changes (k, masked top experts, no shared experts); then
// acts.plan.k is the k used. Active options with `training` are an error.
void moe_forward(const ModelConfig& c, const LayerWeights& w, const float* x, int64_t B, int64_t S, MoeActs& acts,
                 float* y, Workspace& ws, bool training, const Parallelism& par = {},
                 const RoutingOptions& routing = {});
// dx[T,d] (=); parameter gradients into `grad` (+=), including the router's, from dy and the balance losses.
void moe_backward(const ModelConfig& c, const LayerWeights& w, LayerWeights& grad, const float* x, int64_t B, int64_t S,
                  const MoeActs& acts, const float* dy, float* dx, Workspace& ws, const Parallelism& par = {});

}  // namespace dsmoe
