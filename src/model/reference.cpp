#include "model/reference.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dsmoe {
namespace {

using Vec = std::vector<double>;

Vec rmsnorm(const Vec& x, const float* w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * w[i];
  return y;
}

// y[out] = W[out, in] x[in]
Vec matvec(const float* W, const Vec& x, int64_t out) {
  Vec y(out, 0.0);
  for (int64_t o = 0; o < out; ++o)
    for (size_t i = 0; i < x.size(); ++i) y[o] += static_cast<double>(W[o * x.size() + i]) * x[i];
  return y;
}

Vec swiglu(const float* wg, const float* wu, const float* wd, const Vec& x, int64_t F) {
  Vec g = matvec(wg, x, F), u = matvec(wu, x, F);
  for (int64_t i = 0; i < F; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  // down: [d, F]
  Vec y(x.size(), 0.0);
  for (size_t o = 0; o < x.size(); ++o)
    for (int64_t i = 0; i < F; ++i) y[o] += static_cast<double>(wd[o * F + i]) * g[i];
  return y;
}

void rope(double* v, int64_t hd, int64_t pos, double theta) {
  for (int64_t i = 0; i < hd / 2; ++i) {
    const float inv_freq = static_cast<float>(1.0 / std::pow(theta, static_cast<double>(2 * i) / hd));
    const float angle = static_cast<float>(pos) * inv_freq;
    const double c = std::cos(angle), s = std::sin(angle), a = v[i], b = v[i + hd / 2];
    v[i] = a * c - b * s;
    v[i + hd / 2] = b * c + a * s;
  }
}

}  // namespace

std::vector<float> reference_forward(const Model& model, const int32_t* inputs, int64_t B, int64_t S,
                                     const RoutingOptions& routing) {
  const ModelConfig& c = model.config;
  const Weights& w = model.weights;
  routing.validate(c, false);
  const int64_t T = B * S, d = c.hidden_size, H = c.num_attention_heads, KVH = c.num_key_value_heads;
  const int64_t hd = c.head_dim(), V = c.vocab_size, E = c.n_routed_experts, k = routing.experts_per_token(c);
  const int64_t m = routing.mask_top;
  std::vector<Vec> h(T);
  for (int64_t t = 0; t < T; ++t) h[t] = Vec(w.embedding + inputs[t] * d, w.embedding + (inputs[t] + 1) * d);

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    // Attention, token by token.
    std::vector<Vec> q(T), kk(T), vv(T);
    for (int64_t t = 0; t < T; ++t) {
      Vec xn = rmsnorm(h[t], lw.attn_norm, c.rms_norm_eps);
      q[t] = matvec(lw.wq, xn, H * hd);
      kk[t] = matvec(lw.wk, xn, KVH * hd);
      vv[t] = matvec(lw.wv, xn, KVH * hd);
      for (int64_t hh = 0; hh < H; ++hh) rope(&q[t][hh * hd], hd, t % S, c.rope_theta);
      for (int64_t hh = 0; hh < KVH; ++hh) rope(&kk[t][hh * hd], hd, t % S, c.rope_theta);
    }
    std::vector<Vec> attn_out(T, Vec(H * hd, 0.0));
    for (int64_t t = 0; t < T; ++t) {
      const int64_t seq_start = t - t % S;
      for (int64_t hh = 0; hh < H; ++hh) {
        const int64_t kh = hh / (H / KVH);
        Vec score;
        for (int64_t u = seq_start; u <= t; ++u) {
          double dot = 0;
          for (int64_t i = 0; i < hd; ++i) dot += q[t][hh * hd + i] * kk[u][kh * hd + i];
          score.push_back(dot / std::sqrt(static_cast<double>(hd)));
        }
        const double mx = *std::max_element(score.begin(), score.end());
        double sum = 0;
        for (double& s : score) sum += (s = std::exp(s - mx));
        for (int64_t u = seq_start; u <= t; ++u)
          for (int64_t i = 0; i < hd; ++i) attn_out[t][hh * hd + i] += score[u - seq_start] / sum * vv[u][kh * hd + i];
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      Vec o = matvec(lw.wo, attn_out[t], d);
      for (int64_t i = 0; i < d; ++i) h[t][i] += o[i];
    }

    // Feed-forward. MoE: softmax gate, rank all experts, skip the m best (mask_top), take the next k, optional
    // renormalisation over those k, capacity in token order.
    std::vector<int64_t> used(std::max<int64_t>(E, 1), 0);
    const int64_t capacity = c.capacity_factor > 0 ? static_cast<int64_t>(std::ceil(c.capacity_factor * T * k / E)) : 0;
    for (int64_t t = 0; t < T; ++t) {
      Vec xn = rmsnorm(h[t], lw.ffn_norm, c.rms_norm_eps);
      Vec y(d, 0.0);
      if (!c.is_moe_layer(l)) {
        y = swiglu(lw.mlp_gate, lw.mlp_up, lw.mlp_down, xn, c.intermediate_size);
      } else {
        Vec p = matvec(lw.router, xn, E);
        const double mx = *std::max_element(p.begin(), p.end());
        double sum = 0;
        for (double& v : p) sum += (v = std::exp(v - mx));
        for (double& v : p) v /= sum;
        std::vector<int64_t> order(E);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
        double topk_sum = 0;
        for (int64_t j = m; j < m + k; ++j) topk_sum += p[order[j]];
        for (int64_t j = m; j < m + k; ++j) {
          const int64_t e = order[j];
          if (capacity > 0 && used[e]++ >= capacity) continue;
          const double weight = c.norm_topk_prob && k > 1 ? p[e] / (topk_sum + 1e-20) : p[e];
          const int64_t Fe = c.moe_intermediate_size;
          Vec ye = swiglu(lw.expert_gate + e * Fe * d, lw.expert_up + e * Fe * d, lw.expert_down + e * d * Fe, xn, Fe);
          for (int64_t i = 0; i < d; ++i) y[i] += weight * ye[i];
        }
        if (c.shared_width() > 0 && !routing.disable_shared) {
          Vec ys = swiglu(lw.shared_gate, lw.shared_up, lw.shared_down, xn, c.shared_width());
          for (int64_t i = 0; i < d; ++i) y[i] += ys[i];
        }
      }
      for (int64_t i = 0; i < d; ++i) h[t][i] += y[i];
    }
  }

  std::vector<float> logits(T * V);
  for (int64_t t = 0; t < T; ++t) {
    Vec xn = rmsnorm(h[t], w.final_norm, c.rms_norm_eps);
    Vec row = matvec(w.lm_head, xn, V);
    for (int64_t v = 0; v < V; ++v) logits[t * V + v] = static_cast<float>(row[v]);
  }
  return logits;
}

}  // namespace dsmoe
