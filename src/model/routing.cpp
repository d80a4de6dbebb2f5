#include "model/routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace dsmoe {

void RoutingOptions::validate(const ModelConfig& c, bool training) const {
  if (!active()) return;
  check(!training,
        "routing options (disable_shared, top_k, mask_top) are evaluation-only: the balance losses are defined for "
        "the trained routing");
  check(c.n_routed_experts > 0, "routing options need a MoE model (n_routed_experts is 0)");
  const int64_t k = experts_per_token(c);
  check(k >= 1 && mask_top >= 0 && mask_top + k <= c.n_routed_experts,
        "invalid routing options: top_k {} (0 = config's {}), mask_top {}: need top_k >= 1, mask_top >= 0 and "
        "mask_top + top_k <= n_routed_experts {}",
        top_k, c.num_experts_per_tok, mask_top, c.n_routed_experts);
}

RoutingPlan routing_plan_build(const float* probs, int64_t T, int64_t E, int64_t k, bool norm_topk_prob,
                               double capacity_factor, const BatchReduce* reduce, int64_t mask_top) {
  check(k >= 1 && mask_top >= 0 && mask_top + k <= E, "routing: top-{} after masking {} of {} experts", k, mask_top, E);
  const int64_t m = mask_top, mk = mask_top + k;  // ranks [0, m) are masked, [m, m+k) chosen
  RoutingPlan plan;
  plan.T = T;
  plan.E = E;
  plan.k = k;
  plan.topk_expert.resize(T * k);
  plan.topk_weight.resize(T * k);
  plan.slot_row.assign(T * k, -1);
  plan.selected_count.assign(E, 0);

  // 1. top-k per token (partial selection of the first m+k ranks; descending probability, lower index first on
  //    ties). Masking is the same order with the first m ranks skipped, so mask_top = 0 is the plain top-k.
#pragma omp parallel
  {
    std::vector<int32_t> order(E);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float* p = probs + t * E;
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + mk, order.end(),
                        [p](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
      const int32_t* chosen = order.data() + m;  // [k]
      double sum = 0.0;
      for (int64_t j = 0; j < k; ++j) sum += p[chosen[j]];
      // HF: topk_weight / (sum + 1e-20), only when top_k > 1.
      const bool renorm = norm_topk_prob && k > 1;
      for (int64_t j = 0; j < k; ++j) {
        plan.topk_expert[t * k + j] = chosen[j];
        plan.topk_weight[t * k + j] = renorm ? static_cast<float>(p[chosen[j]] / (sum + 1e-20)) : p[chosen[j]];
      }
    }
  }
  for (int64_t a = 0; a < T * k; ++a) plan.selected_count[plan.topk_expert[a]]++;

  // 2. capacity: keep the first C assignments of each expert in token order. Across data-parallel ranks, the
  //    selections of the ranks before this one come first: each expert's budget here is C minus those.
  std::vector<int64_t> budget(E, 0);
  if (capacity_factor > 0) {
    double T_all = static_cast<double>(T);
    std::vector<double> before(plan.selected_count.begin(), plan.selected_count.end());
    if (reduce != nullptr) {
      reduce->sum(&T_all, 1);
      reduce->sum_before(before.data(), E);
    } else {
      std::fill(before.begin(), before.end(), 0.0);
    }
    plan.capacity = static_cast<int64_t>(std::ceil(capacity_factor * T_all * k / E));
    for (int64_t e = 0; e < E; ++e) budget[e] = std::max<int64_t>(0, plan.capacity - static_cast<int64_t>(before[e]));
  }
  std::vector<int64_t> kept(E, 0);
  for (int64_t a = 0; a < T * k; ++a) {
    const int32_t e = plan.topk_expert[a];
    if (plan.capacity > 0 && kept[e] >= budget[e]) {
      plan.n_dropped++;
      continue;
    }
    plan.slot_row[a] = static_cast<int32_t>(kept[e]++);  // rank within the expert for now
  }

  // 3. histogram -> offsets -> expert-sorted rows (a stable counting sort: tokens stay ascending per expert).
  plan.expert_offsets.assign(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) plan.expert_offsets[e + 1] = plan.expert_offsets[e] + kept[e];
  plan.row_token.resize(plan.expert_offsets[E]);
  for (int64_t a = 0; a < T * k; ++a) {
    if (plan.slot_row[a] < 0) continue;
    const int64_t row = plan.expert_offsets[plan.topk_expert[a]] + plan.slot_row[a];
    plan.slot_row[a] = static_cast<int32_t>(row);
    plan.row_token[row] = static_cast<int32_t>(a / k);
  }
  return plan;
}

void routing_weights_backward(const RoutingPlan& plan, const float* probs, bool norm_topk_prob, const float* dweight,
                              float* dprobs) {
  const int64_t T = plan.T, E = plan.E, k = plan.k;
  const bool renorm = norm_topk_prob && k > 1;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const int32_t* ex = &plan.topk_expert[t * k];
    const float* dw = dweight + t * k;
    float* dp = dprobs + t * E;
    if (!renorm) {
      for (int64_t j = 0; j < k; ++j) dp[ex[j]] += dw[j];
      continue;
    }
    // w_j = p_j / s with s = sum_i p_i + 1e-20:  dp_i = dw_i / s - sum_j dw_j p_j / s^2
    double s = 1e-20, dot = 0.0;
    for (int64_t j = 0; j < k; ++j) s += probs[t * E + ex[j]];
    for (int64_t j = 0; j < k; ++j) dot += static_cast<double>(dw[j]) * probs[t * E + ex[j]];
    for (int64_t j = 0; j < k; ++j) dp[ex[j]] += static_cast<float>(dw[j] / s - dot / (s * s));
  }
}

void softmax_backward_rows(const float* probs, const float* dprobs, float* dlogits, int64_t T, int64_t E) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* p = probs + t * E;
    const float* dp = dprobs + t * E;
    double dot = 0.0;
    for (int64_t e = 0; e < E; ++e) dot += static_cast<double>(p[e]) * dp[e];
    for (int64_t e = 0; e < E; ++e) dlogits[t * E + e] = p[e] * static_cast<float>(dp[e] - dot);
  }
}

BalanceLoss balance_loss(const ModelConfig& c, const float* probs, const RoutingPlan& plan, int64_t B, int64_t S,
                         float* dprobs, const BatchReduce* reduce) {
  const int64_t E = plan.E, k = plan.k;
  const int64_t T_local = plan.T;
  BalanceLoss loss;
  // Sequences and tokens of the global batch (every rank's together).
  double sizes[2] = {static_cast<double>(B), static_cast<double>(T_local)};
  batch_sum(reduce, sizes, 2);
  const double B_all = sizes[0], T = sizes[1];

  // Mean gate probability per expert over all T tokens, and f over all T tokens: f_i = E * count_i / (T k).
  auto batch_stats = [&](std::vector<double>& P, std::vector<double>& f) {
    std::vector<double> sums(static_cast<size_t>(2 * E), 0.0);  // [P sums | selection counts]
    for (int64_t t = 0; t < T_local; ++t)
      for (int64_t e = 0; e < E; ++e) sums[e] += probs[t * E + e];
    for (int64_t e = 0; e < E; ++e) sums[E + e] = static_cast<double>(plan.selected_count[e]);
    batch_sum(reduce, sums.data(), 2 * E);
    P.assign(E, 0.0);
    f.assign(E, 0.0);
    for (int64_t e = 0; e < E; ++e) {
      P[e] = sums[e] / T;
      f[e] = static_cast<double>(E) * sums[E + e] / (T * k);
    }
  };

  if (c.aux_loss_alpha > 0) {
    const double alpha = c.aux_loss_alpha;
    if (c.seq_aux) {
      // Per sequence b: f_bi = count_bi / (S k / E), P_bi = mean over its S tokens; loss = alpha mean_b sum_i f P.
      std::vector<double> f(E), P(E);
      for (int64_t b = 0; b < B; ++b) {
        std::fill(f.begin(), f.end(), 0.0);
        std::fill(P.begin(), P.end(), 0.0);
        for (int64_t s = 0; s < S; ++s) {
          const int64_t t = b * S + s;
          for (int64_t j = 0; j < k; ++j) f[plan.topk_expert[t * k + j]] += 1.0;
          for (int64_t e = 0; e < E; ++e) P[e] += probs[t * E + e];
        }
        double seq = 0.0;
        for (int64_t e = 0; e < E; ++e) {
          f[e] /= static_cast<double>(S) * k / E;
          seq += f[e] * P[e] / S;
        }
        loss.expert += alpha * seq / B_all;
        if (dprobs != nullptr) {
          for (int64_t s = 0; s < S; ++s)
            for (int64_t e = 0; e < E; ++e)
              dprobs[(b * S + s) * E + e] += static_cast<float>(alpha * f[e] / (static_cast<double>(S) * B_all));
        }
      }
      batch_sum(reduce, &loss.expert, 1);  // every rank's sequences
    } else {
      std::vector<double> P, f;
      batch_stats(P, f);
      for (int64_t e = 0; e < E; ++e) loss.expert += alpha * f[e] * P[e];
      if (dprobs != nullptr) {
        for (int64_t t = 0; t < T_local; ++t)
          for (int64_t e = 0; e < E; ++e) dprobs[t * E + e] += static_cast<float>(alpha * f[e] / T);
      }
    }
  }

  if (c.device_aux_loss_alpha > 0) {
    const double alpha2 = c.device_aux_loss_alpha;
    const int64_t D = c.n_expert_groups, per_group = E / D;
    std::vector<double> P, f;
    batch_stats(P, f);
    std::vector<double> f_group(D, 0.0), P_group(D, 0.0);
    for (int64_t e = 0; e < E; ++e) {
      f_group[e / per_group] += f[e] / per_group;
      P_group[e / per_group] += P[e];
    }
    for (int64_t g = 0; g < D; ++g) loss.device += alpha2 * f_group[g] * P_group[g];
    if (dprobs != nullptr) {
      for (int64_t t = 0; t < T_local; ++t)
        for (int64_t e = 0; e < E; ++e) dprobs[t * E + e] += static_cast<float>(alpha2 * f_group[e / per_group] / T);
    }
  }
  return loss;
}

}  // namespace dsmoe
