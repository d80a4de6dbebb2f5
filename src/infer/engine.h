// Inference with a KV cache: prefill a prompt in one batched pass (GEMMs over all its tokens, MoE tokens grouped per
// expert), then decode one token at a time against the cache. Logits are computed only for the positions asked for.
// The math is the training forward's (same blocks: RMSNorm, split-half RoPE, GQA attention, SwiGLU, routing plan);
// tests check that cached decoding reproduces model_forward's logits.
//
// Dimension legend: n = tokens in this call, P = positions already cached, d hidden, H/KVH heads, hd head dim.
#pragma once
#include <cstdint>
#include <vector>

#include "core/buffer.h"
#include "model/model.h"

namespace dsmoe {

// F32 KV cache of one sequence: per layer K and V [KVH, capacity, hd] (after RoPE for K).
struct KvCache {
  int64_t capacity = 0;  // positions
  int64_t length = 0;    // positions filled
  std::vector<FloatBuffer> k, v;
  void init(const ModelConfig& config, int64_t capacity);
  void clear() { length = 0; }
  size_t bytes() const;
};

class InferenceSession {
 public:
  // capacity: longest context this session will hold (<= max_position_embeddings).
  InferenceSession(const Model& model, int64_t capacity);
  // Run tokens [n] at positions length..length+n-1, appending to the cache; returns the logits [V] of the last one.
  // Capacity dropping (a training option) is not applied: inference is dropless, as in HF.
  const std::vector<float>& forward(const int32_t* tokens, int64_t n);
  int64_t length() const { return cache_.length; }
  void reset() { cache_.clear(); }
  // Forget every position from `length` on (keeps a shared prefix, e.g. the earlier turns of a chat).
  void truncate(int64_t length);
  const KvCache& cache() const { return cache_; }

 private:
  void attention(int64_t layer, const float* x, int64_t n, float* y);
  const Model& model_;
  ModelConfig config_;  // the model's, capacity_factor forced to 0
  KvCache cache_;
  RopeTables rope_;
  Workspace ws_;
  MoeActs moe_;
  std::vector<float> logits_;
};

}  // namespace dsmoe
