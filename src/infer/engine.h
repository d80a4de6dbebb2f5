// Inference with a KV cache: prefill a prompt in one batched pass (GEMMs over all its tokens, MoE tokens grouped
// per expert), then decode one token at a time against the cache. Logits are computed only where asked for.
// The math is the training forward's (RMSNorm, RoPE, GQA attention, SwiGLU, softmax gate -> top-k, dropless), run
// on an InferModel whose matrices may be quantized (see qmatmul.h for the product paths); tests check that cached
// decoding of an F32 model reproduces model_forward's logits.
//
// Dimension legend: n = tokens in this call, P = positions already cached, d hidden, H/KVH heads, hd head dim,
// E routed experts, k experts per token, A = n*k expert rows.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/buffer.h"
#include "core/quant.h"
#include "infer/infer_model.h"
#include "model/attention.h"

namespace dsmoe {

// KV cache of one sequence: per layer K and V [KVH, capacity, hd] (K after RoPE), stored as F32 or F16.
struct KvCache {
  QuantType type = QuantType::F32;  // F32 or F16
  int64_t capacity = 0;             // positions
  int64_t length = 0;               // positions filled
  int64_t row_elems = 0;            // hd
  std::vector<std::vector<uint8_t>> k, v;
  void init(const ModelConfig& config, int64_t capacity, QuantType type);
  void clear() { length = 0; }
  size_t bytes() const;
  static size_t bytes_for(const ModelConfig& config, int64_t capacity, QuantType type);
  // Row (head h, position p) of layer l.
  uint8_t* k_row(int64_t l, int64_t h, int64_t p) { return k[l].data() + row_offset(h, p); }
  uint8_t* v_row(int64_t l, int64_t h, int64_t p) { return v[l].data() + row_offset(h, p); }
  size_t row_offset(int64_t h, int64_t p) const { return (static_cast<size_t>(h) * capacity + p) * row_bytes(); }
  size_t row_bytes() const { return quant_row_bytes(type, row_elems); }
};

class InferenceSession {
 public:
  // capacity: longest context this session will hold (<= max_position_embeddings).
  InferenceSession(const InferModel& model, int64_t capacity, QuantType kv_type = QuantType::F32);
  // Convenience for F32 models (views into `model`, which must outlive the session).
  InferenceSession(const Model& model, int64_t capacity, QuantType kv_type = QuantType::F32);
  // Run tokens [n] at positions length..length+n-1, appending to the cache; returns the logits [V] of the last one.
  const std::vector<float>& forward(const int32_t* tokens, int64_t n);
  // Same, filling logits [n, V] for every position (perplexity).
  void forward_all(const int32_t* tokens, int64_t n, std::vector<float>& logits);
  int64_t length() const { return cache_.length; }
  int64_t capacity() const { return cache_.capacity; }
  void reset() { cache_.clear(); }
  // Forget every position from `length` on (keeps a shared prefix, e.g. the earlier turns of a chat).
  void truncate(int64_t length);
  const KvCache& cache() const { return cache_; }
  const InferModel& model() const { return model_; }

 private:
  void init(int64_t capacity, QuantType kv_type);
  void run_layers(const int32_t* tokens, int64_t n, float* h);  // h [n, d]: residual stream after the last layer
  void attention(int64_t layer, const float* x, int64_t n, float* y);
  void swiglu(const QMatrix& gate, const QMatrix& up, const QMatrix& down, const float* x, int64_t n, float* y,
              const char* tag);
  void moe(const InferLayer& w, const float* x, int64_t n, float* y);
  void rope(float* x, int64_t pos) const;

  std::unique_ptr<InferModel> owned_view_;  // set by the Model constructor
  const InferModel& model_;
  KvCache cache_;
  RopeTables rope_;
  Workspace ws_;
  std::vector<float> logits_;
};

}  // namespace dsmoe
