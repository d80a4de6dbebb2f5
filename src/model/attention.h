// Causal self-attention (HF DeepseekAttention): q/k/v projections, split-half RoPE, softmax(QK^T/sqrt(hd)) V per
// head with grouped KV heads, o projection.
//
// Dimension legend: B sequences, S positions, T = B*S tokens, d hidden, H query heads, KVH key/value heads,
// hd = d / H head dim, G = H / KVH query heads per KV head.
#pragma once
#include <cstdint>

#include "core/buffer.h"
#include "model/config.h"
#include "model/params.h"

namespace dsmoe {

struct AttentionActs {
  FloatBuffer q;      // [B, H, S, hd]   after RoPE
  FloatBuffer k;      // [B, KVH, S, hd] after RoPE
  FloatBuffer v;      // [B, KVH, S, hd]
  FloatBuffer probs;  // [B, H, S, S]    causal softmax (upper triangle zero)
  FloatBuffer out;    // [T, H*hd]       heads merged, before o_proj
};

// RoPE tables for positions 0..S-1: cos, sin [S, hd/2].
struct RopeTables {
  int64_t S = 0, hd = 0;
  FloatBuffer cos, sin;
};
void rope_tables_build(RopeTables& rope, int64_t S, int64_t hd, double theta);

// y[T,d] = Attention(x)  (= , not accumulated).
void attention_forward(const ModelConfig& c, const LayerWeights& w, const RopeTables& rope, const float* x, int64_t B,
                       int64_t S, AttentionActs& acts, float* y, Workspace& ws);
// dx[T,d] (=); wq/wk/wv/wo gradients (+=).
void attention_backward(const ModelConfig& c, const LayerWeights& w, LayerWeights& grad, const RopeTables& rope,
                        const float* x, int64_t B, int64_t S, const AttentionActs& acts, const float* dy, float* dx,
                        Workspace& ws);

}  // namespace dsmoe
