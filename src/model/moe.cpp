#include "model/moe.h"

#include <cstring>

#include "core/error.h"
#include "core/gemm.h"
#include "core/ops.h"
#include "core/profile.h"
#include "core/vecmath.h"

namespace dsmoe {

void swiglu_mlp_forward(const float* x, const float* wg, const float* wu, const float* wd, int64_t T, int64_t d,
                        int64_t F, float* g, float* u, float* act, float* y, float y_beta) {
  linear_forward(x, wg, g, T, d, F);
  linear_forward(x, wu, u, T, d, F);
  swiglu_forward(g, u, act, T * F);
  linear_forward(act, wd, y, T, F, d, y_beta);
}

void swiglu_mlp_backward(const float* x, const float* wg, const float* wu, const float* wd, const float* g,
                         const float* u, const float* dy, int64_t T, int64_t d, int64_t F, float* dx, float dx_beta,
                         float* dwg, float* dwu, float* dwd, float* act, float* dact, float* dg, float* du) {
  swiglu_forward(g, u, act, T * F);  // recomputed: cheaper than keeping a third [T,F] buffer per layer
  linear_backward(act, wd, dy, dact, dwd, T, F, d);
  swiglu_backward(g, u, dact, dg, du, T * F);
  linear_backward(x, wg, dg, dx, dwg, T, d, F, dx_beta);
  linear_backward(x, wu, du, dx, dwu, T, d, F, 1.0f);
}

namespace {
// The experts this rank runs and their row blocks: all E over the plan's rows, or (expert parallelism) its own El
// over the rows received, expert-major.
struct ExpertBlocks {
  int64_t first = 0, count = 0;
  std::vector<int64_t> offsets;  // [count + 1]
  int64_t rows() const { return offsets.back(); }
};

ExpertBlocks expert_blocks_of(const ModelConfig& c, const LayerWeights& w, const MoeActs& acts,
                              const ExpertExchange* experts) {
  ExpertBlocks b;
  const int64_t run_first = experts == nullptr ? 0 : experts->first_expert();
  const int64_t run_count = experts == nullptr ? c.n_routed_experts : experts->expert_count();
  check(w.expert_first <= run_first && run_first + run_count <= w.expert_first + w.expert_held,
        "this rank runs experts [{}, {}) but holds [{}, {})", run_first, run_first + run_count, w.expert_first,
        w.expert_first + w.expert_held);
  if (experts == nullptr) {
    b.count = c.n_routed_experts;
    b.offsets = acts.plan.expert_offsets;
  } else {
    b.first = experts->first_expert();
    b.count = experts->expert_count();
    b.offsets = acts.exchange.local_offsets;
  }
  return b;
}

// Forward: under expert parallelism, first exchanges the per-expert row counts (acts.exchange).
ExpertBlocks expert_blocks(const ModelConfig& c, const LayerWeights& w, const RoutingPlan& plan, MoeActs& acts,
                           const ExpertExchange* experts) {
  if (experts != nullptr) {
    std::vector<int64_t> counts(static_cast<size_t>(plan.E));
    for (int64_t e = 0; e < plan.E; ++e) counts[e] = plan.rows_of(e);
    acts.exchange = experts->exchange_counts(counts.data(), plan.E);
  }
  return expert_blocks_of(c, w, acts, experts);
}
}  // namespace

void moe_forward(const ModelConfig& c, const LayerWeights& w, const float* x, int64_t B, int64_t S, MoeActs& acts,
                 float* y, Workspace& ws, bool training, const Parallelism& par, const RoutingOptions& routing) {
  routing.validate(c, training);
  const int64_t T = B * S, d = c.hidden_size, E = c.n_routed_experts, k = routing.experts_per_token(c);
  const int64_t Fe = c.moe_intermediate_size, Fs = routing.disable_shared ? 0 : c.shared_width();

  // 1. gate: probs [T,E] = softmax(x Wr^T) over the routed experts.
  acts.probs.reserve(T * E);
  linear_forward(x, w.router, acts.probs.data(), T, d, E);
  softmax_rows(acts.probs.data(), T, E);

  // 2. routing plan: top-k (after masking, with options), renormalisation, capacity, expert-sorted rows.
  acts.plan =
      routing_plan_build(acts.probs.data(), T, E, k, c.norm_topk_prob, c.capacity_factor, par.reduce, routing.mask_top);
  const RoutingPlan& plan = acts.plan;
  const int64_t A = plan.rows();
  acts.balance = training ? balance_loss(c, acts.probs.data(), plan, B, S, nullptr, par.reduce) : BalanceLoss{};

  // 3. gather the rows of each expert: xs[a] = x[row_token[a]].
  acts.xs.reserve(A * d);
  acts.ye.reserve(A * d);
  float* xs = acts.xs.data();
#pragma omp parallel for schedule(static)
  for (int64_t a = 0; a < A; ++a) std::memcpy(xs + a * d, x + plan.row_token[a] * d, d * sizeof(float));

  // 4. one SwiGLU GEMM chain per expert over its contiguous rows; experts run in parallel, each with a
  //    single-threaded BLAS (OpenBLAS's OpenMP build does that inside a parallel region). Under expert parallelism
  //    the rows first go to the ranks computing their experts, and the outputs come back in plan order.
  const ExpertBlocks blocks = expert_blocks(c, w, plan, acts, par.experts);
  const int64_t R = blocks.rows();
  const float* xin = xs;
  float* yout = acts.ye.data();
  if (par.experts != nullptr) {
    acts.xr.reserve(R * d);
    par.experts->dispatch(acts.exchange, xs, acts.xr.data(), d);
    xin = acts.xr.data();
    yout = ws.get("moe.yr", R * d);
  }
  acts.g.reserve(R * Fe);
  acts.u.reserve(R * Fe);
  float* act = ws.get("moe.act", R * Fe);
  {
    PROFILE_SCOPE("fwd.ffn.experts");
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t j = 0; j < blocks.count; ++j) {
      const int64_t r0 = blocks.offsets[j], n = blocks.offsets[j + 1] - r0, e = blocks.first + j - w.expert_first;
      if (n == 0) continue;
      swiglu_mlp_forward(xin + r0 * d, w.expert_gate + e * Fe * d, w.expert_up + e * Fe * d, w.expert_down + e * d * Fe,
                         n, d, Fe, acts.g.data() + r0 * Fe, acts.u.data() + r0 * Fe, act + r0 * Fe, yout + r0 * d,
                         0.0f);
    }
  }
  if (par.experts != nullptr) par.experts->combine(acts.exchange, yout, acts.ye.data(), d);

  // 5. shared experts see every token: y = Shared(x) (0 without them, or with disable_shared), then the weighted
  //    routed outputs are added per token.
  if (Fs > 0) {
    acts.sg.reserve(T * Fs);
    acts.su.reserve(T * Fs);
    swiglu_mlp_forward(x, w.shared_gate, w.shared_up, w.shared_down, T, d, Fs, acts.sg.data(), acts.su.data(),
                       ws.get("moe.shared_act", T * Fs), y, 0.0f);
  } else {
    std::memset(y, 0, T * d * sizeof(float));
  }
  const float* ye = acts.ye.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int32_t row = plan.slot_row[t * k + j];
      if (row < 0) continue;  // dropped by capacity
      axpy(plan.topk_weight[t * k + j], ye + row * d, y + t * d, d);
    }
  }
}

void moe_backward(const ModelConfig& c, const LayerWeights& w, LayerWeights& grad, const float* x, int64_t B, int64_t S,
                  const MoeActs& acts, const float* dy, float* dx, Workspace& ws, const Parallelism& par) {
  const int64_t T = B * S, d = c.hidden_size, E = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t Fe = c.moe_intermediate_size, Fs = c.shared_width();
  const RoutingPlan& plan = acts.plan;
  const int64_t A = plan.rows();

  // 1. through the weighted sum: dye[row] = w_tj dy[t];  dw_tj = <dy[t], ye[row]>.
  float* dye = ws.get("moe.dye", A * d);
  float* dweight = ws.get("moe.dweight", T * k);
  const float* ye = acts.ye.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int32_t row = plan.slot_row[t * k + j];
      if (row < 0) {
        dweight[t * k + j] = 0.0f;
        continue;
      }
      const float wt = plan.topk_weight[t * k + j];
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) dye[row * d + i] = wt * dy[t * d + i];
      dweight[t * k + j] = dot_of(dy + t * d, ye + row * d, d);
    }
  }

  // 2. experts, in parallel; dxs [A,d] in expert order. Under expert parallelism the output gradients travel the
  //    forward's way to the ranks computing the experts, and the input gradients come back (splits swapped).
  const ExpertBlocks blocks = expert_blocks_of(c, w, acts, par.experts);
  const int64_t R = blocks.rows();
  float* dxs = ws.get("moe.dxs", A * d);
  const float* xin = acts.xs.data();
  const float* dyin = dye;
  float* dxout = dxs;
  if (par.experts != nullptr) {
    float* dyr = ws.get("moe.dyr", R * d);
    par.experts->dispatch(acts.exchange, dye, dyr, d);
    xin = acts.xr.data();
    dyin = dyr;
    dxout = ws.get("moe.dxr", R * d);
  }
  float* act = ws.get("moe.act", R * Fe);
  float* dact = ws.get("moe.dact", R * Fe);
  float* dg = ws.get("moe.dg", R * Fe);
  float* du = ws.get("moe.du", R * Fe);
  {
    PROFILE_SCOPE("bwd.ffn.experts");
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t j = 0; j < blocks.count; ++j) {
      const int64_t r0 = blocks.offsets[j], n = blocks.offsets[j + 1] - r0, e = blocks.first + j - w.expert_first;
      if (n == 0) continue;
      swiglu_mlp_backward(xin + r0 * d, w.expert_gate + e * Fe * d, w.expert_up + e * Fe * d,
                          w.expert_down + e * d * Fe, acts.g.data() + r0 * Fe, acts.u.data() + r0 * Fe, dyin + r0 * d,
                          n, d, Fe, dxout + r0 * d, 0.0f, grad.expert_gate + e * Fe * d, grad.expert_up + e * Fe * d,
                          grad.expert_down + e * d * Fe, act + r0 * Fe, dact + r0 * Fe, dg + r0 * Fe, du + r0 * Fe);
    }
  }
  if (par.experts != nullptr) par.experts->combine(acts.exchange, dxout, dxs, d);
  // 3. shared experts write dx (=); routed rows are scattered back per token (no races: one thread per token).
  if (Fs > 0) {
    swiglu_mlp_backward(x, w.shared_gate, w.shared_up, w.shared_down, acts.sg.data(), acts.su.data(), dy, T, d, Fs, dx,
                        0.0f, grad.shared_gate, grad.shared_up, grad.shared_down, ws.get("moe.shared_act", T * Fs),
                        ws.get("moe.shared_dact", T * Fs), ws.get("moe.shared_dg", T * Fs),
                        ws.get("moe.shared_du", T * Fs));
  } else {
    std::memset(dx, 0, T * d * sizeof(float));
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int32_t row = plan.slot_row[t * k + j];
      if (row >= 0) axpy(1.0f, dxs + row * d, dx + t * d, d);
    }
  }

  // 4. router: d(weights) and the balance losses -> d(probs) -> d(logits) -> dWr, dx.
  float* dprobs = ws.get("moe.dprobs", T * E);
  std::memset(dprobs, 0, T * E * sizeof(float));
  routing_weights_backward(plan, acts.probs.data(), c.norm_topk_prob, dweight, dprobs);
  balance_loss(c, acts.probs.data(), plan, B, S, dprobs, par.reduce);
  float* dlogits = ws.get("moe.dlogits", T * E);
  softmax_backward_rows(acts.probs.data(), dprobs, dlogits, T, E);
  linear_backward(x, w.router, dlogits, dx, grad.router, T, d, E, 1.0f);
}

}  // namespace dsmoe
