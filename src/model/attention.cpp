#include "model/attention.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <omp.h>

#include "core/gemm.h"
#include "core/ops.h"
#include "core/vecmath.h"

namespace dsmoe {

void rope_tables_build(RopeTables& rope, int64_t S, int64_t hd, double theta) {
  if (rope.S == S && rope.hd == hd) return;
  rope.S = S;
  rope.hd = hd;
  rope.cos = FloatBuffer(S * hd / 2);
  rope.sin = FloatBuffer(S * hd / 2);
  rope_tables(S, hd, theta, rope.cos.data(), rope.sin.data());
}

namespace {

// [T, n_heads*hd] rows -> [B, n_heads, S, hd], rotating each head row by its position when `rope` is set.
void split_heads(const float* in, float* out, int64_t B, int64_t S, int64_t n_heads, int64_t hd,
                 const RopeTables* rope) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_heads; ++h)
      for (int64_t s = 0; s < S; ++s) {
        float* dst = out + ((b * n_heads + h) * S + s) * hd;
        std::memcpy(dst, in + (b * S + s) * n_heads * hd + h * hd, hd * sizeof(float));
        if (rope) rope_rotate(dst, hd, rope->cos.data() + s * hd / 2, rope->sin.data() + s * hd / 2, 1.0f);
      }
}

// The transpose of split_heads: [B, n_heads, S, hd] -> [T, n_heads*hd], un-rotating (RoPE^T) when `rope` is set.
void merge_heads(const float* in, float* out, int64_t B, int64_t S, int64_t n_heads, int64_t hd,
                 const RopeTables* rope) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < n_heads; ++h)
      for (int64_t s = 0; s < S; ++s) {
        float* dst = out + (b * S + s) * n_heads * hd + h * hd;
        std::memcpy(dst, in + ((b * n_heads + h) * S + s) * hd, hd * sizeof(float));
        if (rope) rope_rotate(dst, hd, rope->cos.data() + s * hd / 2, rope->sin.data() + s * hd / 2, -1.0f);
      }
}

}  // namespace

void attention_forward(const ModelConfig& c, const LayerWeights& w, const RopeTables& rope, const float* x, int64_t B,
                       int64_t S, AttentionActs& acts, float* y, Workspace& ws) {
  const int64_t T = B * S, d = c.hidden_size, H = c.num_attention_heads, KVH = c.num_key_value_heads;
  const int64_t hd = c.head_dim(), G = H / KVH, qd = H * hd, kvd = KVH * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  float* lin = ws.get("attn.lin", T * qd);
  acts.q.reserve(T * qd);
  acts.k.reserve(T * kvd);
  acts.v.reserve(T * kvd);
  acts.probs.reserve(B * H * S * S);
  acts.out.reserve(T * qd);
  linear_forward(x, w.wq, lin, T, d, qd);
  split_heads(lin, acts.q.data(), B, S, H, hd, &rope);
  linear_forward(x, w.wk, lin, T, d, kvd);
  split_heads(lin, acts.k.data(), B, S, KVH, hd, &rope);
  linear_forward(x, w.wv, lin, T, d, kvd);
  split_heads(lin, acts.v.data(), B, S, KVH, hd, nullptr);

  // Per (sequence, head): P = causal_softmax(Q K^T * scale) [S,S]; out = P V. Heads run in parallel.
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const float* q = acts.q.data() + (b * H + h) * S * hd;
      const float* kk = acts.k.data() + (b * KVH + h / G) * S * hd;
      const float* vv = acts.v.data() + (b * KVH + h / G) * S * hd;
      float* p = acts.probs.data() + (b * H + h) * S * S;
      gemm(false, true, S, S, hd, scale, q, hd, kk, hd, 0.0f, p, S);
      for (int64_t i = 0; i < S; ++i) {  // causal softmax: row i sees keys 0..i
        float* row = p + i * S;
        const float sum = exp_shift_sum(row, i + 1, max_of(row, i + 1));
        scale_in_place(row, i + 1, 1.0f / sum);
        std::fill(row + i + 1, row + S, 0.0f);
      }
      gemm(false, false, S, hd, S, 1.0f, p, S, vv, hd, 0.0f, acts.out.data() + b * S * qd + h * hd, qd);
    }
  }
  linear_forward(acts.out.data(), w.wo, y, T, qd, d);
}

void attention_backward(const ModelConfig& c, const LayerWeights& w, LayerWeights& grad, const RopeTables& rope,
                        const float* x, int64_t B, int64_t S, const AttentionActs& acts, const float* dy, float* dx,
                        Workspace& ws) {
  const int64_t T = B * S, d = c.hidden_size, H = c.num_attention_heads, KVH = c.num_key_value_heads;
  const int64_t hd = c.head_dim(), G = H / KVH, qd = H * hd, kvd = KVH * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  float* dout = ws.get("attn.dout", T * qd);  // [T, H*hd]
  linear_backward(acts.out.data(), w.wo, dy, dout, grad.wo, T, qd, d);

  float* dq = ws.get("attn.dq", T * qd);   // [B, H, S, hd]
  float* dk = ws.get("attn.dk", T * kvd);  // [B, KVH, S, hd]
  float* dv = ws.get("attn.dv", T * kvd);
  const int n_threads = omp_get_max_threads();
  float* dp_all = ws.get("attn.dp", static_cast<size_t>(n_threads) * S * S);

  // Per (sequence, KV head) so that the G query heads sharing a KV head accumulate into dK/dV without races.
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t kh = 0; kh < KVH; ++kh) {
      float* dp = dp_all + static_cast<size_t>(omp_get_thread_num()) * S * S;
      const float* kk = acts.k.data() + (b * KVH + kh) * S * hd;
      const float* vv = acts.v.data() + (b * KVH + kh) * S * hd;
      float* dkk = dk + (b * KVH + kh) * S * hd;
      float* dvv = dv + (b * KVH + kh) * S * hd;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t h = kh * G + g;
        const float* q = acts.q.data() + (b * H + h) * S * hd;
        const float* p = acts.probs.data() + (b * H + h) * S * S;
        const float* dob = dout + b * S * qd + h * hd;  // rows with stride qd
        const float beta = g == 0 ? 0.0f : 1.0f;
        // dV += P^T dO;  dP = dO V^T
        gemm(true, false, S, hd, S, 1.0f, p, S, dob, qd, beta, dvv, hd);
        gemm(false, true, S, S, hd, 1.0f, dob, qd, vv, hd, 0.0f, dp, S);
        // dS = P * (dP - rowsum(P * dP)) * scale   (causal: entries above the diagonal are zero in P)
        for (int64_t i = 0; i < S; ++i) {
          const float* pr = p + i * S;
          float* dr = dp + i * S;
          const float dot = dot_of(pr, dr, i + 1);
#pragma omp simd
          for (int64_t j = 0; j <= i; ++j) dr[j] = pr[j] * (dr[j] - dot) * scale;
          std::fill(dr + i + 1, dr + S, 0.0f);
        }
        // dQ = dS K;  dK += dS^T Q
        gemm(false, false, S, hd, S, 1.0f, dp, S, kk, hd, 0.0f, dq + (b * H + h) * S * hd, hd);
        gemm(true, false, S, hd, S, 1.0f, dp, S, q, hd, beta, dkk, hd);
      }
    }
  }

  // Undo the head split (and RoPE for q, k), then the projections: dx = dq Wq + dk Wk + dv Wv.
  float* lin = ws.get("attn.lin", T * qd);
  merge_heads(dq, lin, B, S, H, hd, &rope);
  linear_backward(x, w.wq, lin, dx, grad.wq, T, d, qd, 0.0f);
  merge_heads(dk, lin, B, S, KVH, hd, &rope);
  linear_backward(x, w.wk, lin, dx, grad.wk, T, d, kvd, 1.0f);
  merge_heads(dv, lin, B, S, KVH, hd, nullptr);
  linear_backward(x, w.wv, lin, dx, grad.wv, T, d, kvd, 1.0f);
}

}  // namespace dsmoe
