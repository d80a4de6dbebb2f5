#include "infer/engine.h"

#include <cmath>
#include <cstring>

#include <omp.h>

#include "core/error.h"
#include "core/gemm.h"
#include "core/ops.h"
#include "core/vecmath.h"

namespace dsmoe {

void KvCache::init(const ModelConfig& c, int64_t cap) {
  capacity = cap;
  length = 0;
  const size_t per_layer = static_cast<size_t>(c.num_key_value_heads) * cap * c.head_dim();
  k.clear();
  v.clear();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    k.emplace_back(per_layer);
    v.emplace_back(per_layer);
  }
}

size_t KvCache::bytes() const {
  size_t total = 0;
  for (size_t l = 0; l < k.size(); ++l) total += (k[l].size() + v[l].size()) * sizeof(float);
  return total;
}

InferenceSession::InferenceSession(const Model& model, int64_t capacity) : model_(model), config_(model.config) {
  check(capacity > 0 && capacity <= config_.max_position_embeddings,
        "context {} must be in [1, max_position_embeddings = {}]", capacity, config_.max_position_embeddings);
  config_.capacity_factor = 0.0;
  cache_.init(config_, capacity);
  rope_tables_build(rope_, capacity, config_.head_dim(), config_.rope_theta);
}

void InferenceSession::truncate(int64_t length) {
  check(length >= 0 && length <= cache_.length, "cannot truncate a cache of {} positions to {}", cache_.length, length);
  cache_.length = length;
}

// y[n,d] = Attention(x[n,d]) for the n new positions, reading and extending the cache.
void InferenceSession::attention(int64_t layer, const float* x, int64_t n, float* y) {
  const ModelConfig& c = config_;
  const LayerWeights& w = model_.weights.layers[layer];
  const int64_t d = c.hidden_size, H = c.num_attention_heads, KVH = c.num_key_value_heads, hd = c.head_dim();
  const int64_t G = H / KVH, qd = H * hd, kvd = KVH * hd, P = cache_.length, total = P + n, cap = cache_.capacity;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  float* q = ws_.get("inf.q", n * qd);
  float* kn = ws_.get("inf.k", n * kvd);
  float* vn = ws_.get("inf.v", n * kvd);
  float* out = ws_.get("inf.attn", n * qd);
  linear_forward(x, w.wq, q, n, d, qd);
  linear_forward(x, w.wk, kn, n, d, kvd);
  linear_forward(x, w.wv, vn, n, d, kvd);
  // RoPE at absolute positions, and append K, V to the cache ([KVH, capacity, hd]).
  for (int64_t i = 0; i < n; ++i) {
    const float* cs = rope_.cos.data() + (P + i) * hd / 2;
    const float* sn = rope_.sin.data() + (P + i) * hd / 2;
    for (int64_t h = 0; h < H; ++h) rope_rotate(q + i * qd + h * hd, hd, cs, sn, 1.0f);
    for (int64_t h = 0; h < KVH; ++h) {
      rope_rotate(kn + i * kvd + h * hd, hd, cs, sn, 1.0f);
      std::memcpy(cache_.k[layer].data() + (h * cap + P + i) * hd, kn + i * kvd + h * hd, hd * sizeof(float));
      std::memcpy(cache_.v[layer].data() + (h * cap + P + i) * hd, vn + i * kvd + h * hd, hd * sizeof(float));
    }
  }
  // Per head: scores [n, total] = Q K^T * scale, causal (query i sees positions 0..P+i), softmax, out = scores V.
  const int n_threads = omp_get_max_threads();
  float* scores_all = ws_.get("inf.scores", static_cast<size_t>(n_threads) * n * total);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t h = 0; h < H; ++h) {
    float* scores = scores_all + static_cast<size_t>(omp_get_thread_num()) * n * total;
    const float* kc = cache_.k[layer].data() + (h / G) * cap * hd;
    const float* vc = cache_.v[layer].data() + (h / G) * cap * hd;
    gemm(false, true, n, total, hd, scale, q + h * hd, qd, kc, hd, 0.0f, scores, total);
    for (int64_t i = 0; i < n; ++i) {
      float* row = scores + i * total;
      const int64_t visible = P + i + 1;
      const float sum = exp_shift_sum(row, visible, max_of(row, visible));
      scale_in_place(row, visible, 1.0f / sum);
      std::fill(row + visible, row + total, 0.0f);
    }
    gemm(false, false, n, hd, total, 1.0f, scores, total, vc, hd, 0.0f, out + h * hd, qd);
  }
  linear_forward(out, w.wo, y, n, qd, d);
}

const std::vector<float>& InferenceSession::forward(const int32_t* tokens, int64_t n) {
  const ModelConfig& c = config_;
  const Weights& w = model_.weights;
  const int64_t d = c.hidden_size, V = c.vocab_size;
  check(n > 0, "nothing to run");
  check(cache_.length + n <= cache_.capacity, "context full: {} cached + {} new tokens > {}", cache_.length, n,
        cache_.capacity);
  for (int64_t i = 0; i < n; ++i)
    check(tokens[i] >= 0 && tokens[i] < V, "token id {} is outside the vocabulary [0, {})", tokens[i], V);
  float* h = ws_.get("inf.h", n * d);
  float* xn = ws_.get("inf.xn", n * d);
  float* y = ws_.get("inf.y", n * d);
  float* rstd = ws_.get("inf.rstd", n);
  for (int64_t i = 0; i < n; ++i) std::memcpy(h + i * d, w.embedding + static_cast<int64_t>(tokens[i]) * d, d * 4);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    rmsnorm_forward(h, lw.attn_norm, c.rms_norm_eps, xn, rstd, n, d);
    attention(l, xn, n, y);
    for (int64_t i = 0; i < n * d; ++i) h[i] += y[i];
    rmsnorm_forward(h, lw.ffn_norm, c.rms_norm_eps, xn, rstd, n, d);
    if (c.is_moe_layer(l)) {
      moe_forward(c, lw, xn, 1, n, moe_, y, ws_, false);
    } else {
      const int64_t F = c.intermediate_size;
      swiglu_mlp_forward(xn, lw.mlp_gate, lw.mlp_up, lw.mlp_down, n, d, F, ws_.get("inf.g", n * F),
                         ws_.get("inf.u", n * F), ws_.get("inf.act", n * F), y, 0.0f);
    }
    for (int64_t i = 0; i < n * d; ++i) h[i] += y[i];
  }
  cache_.length += n;
  // Logits only for the last position.
  const float* last = h + (n - 1) * d;
  rmsnorm_forward(last, w.final_norm, c.rms_norm_eps, xn, rstd, 1, d);
  logits_.resize(V);
  linear_forward(xn, w.lm_head, logits_.data(), 1, d, V);
  return logits_;
}

}  // namespace dsmoe
