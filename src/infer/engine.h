// Inference with a KV cache: prefill a prompt in one batched pass (GEMMs over all its tokens, MoE tokens grouped
// per expert), then decode one token at a time against the cache. Logits are computed only where asked for.
// The math is the training forward's (RMSNorm, RoPE, GQA attention, SwiGLU, softmax gate -> top-k, dropless), run
// on an InferModel whose matrices may be quantized (see qmatmul.h for the product paths); tests check that cached
// decoding of an F32 model reproduces model_forward's logits.
//
// Dimension legend: N = rows of this call (the tokens of all its sequences), n = one sequence's tokens in it,
// P = positions already cached, d hidden, H/KVH heads, hd head dim,
// E routed experts, k experts per token, A = n*k expert rows.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/buffer.h"
#include "core/quant.h"
#include "infer/infer_model.h"
#include "infer/qmatmul.h"
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
  // Forget every position from `len` on (keeps a shared prefix).
  void truncate(int64_t len);
  size_t bytes() const;
  static size_t bytes_for(const ModelConfig& config, int64_t capacity, QuantType type);
  // Row (head h, position p) of layer l.
  uint8_t* k_row(int64_t l, int64_t h, int64_t p) { return k[l].data() + row_offset(h, p); }
  uint8_t* v_row(int64_t l, int64_t h, int64_t p) { return v[l].data() + row_offset(h, p); }
  const uint8_t* k_row(int64_t l, int64_t h, int64_t p) const { return k[l].data() + row_offset(h, p); }
  const uint8_t* v_row(int64_t l, int64_t h, int64_t p) const { return v[l].data() + row_offset(h, p); }
  size_t row_offset(int64_t h, int64_t p) const { return (static_cast<size_t>(h) * capacity + p) * row_bytes(); }
  size_t row_bytes() const { return quant_row_bytes(type, row_elems); }
};

// One sequence's part of a batched forward: `n` tokens appended to `cache` at positions cache->length onwards.
// `logits` [V] receives the logits of its last token (nullptr: none wanted, e.g. a prompt chunk that is not the
// last one).
struct SeqBatch {
  KvCache* cache = nullptr;
  const int32_t* tokens = nullptr;
  int64_t n = 0;
  float* logits = nullptr;
};

// The forward pass over one model for any number of sequences at once (each with its own KV cache): the tokens of
// all of them run as one batch of rows through every product, so each weight matrix (and each chosen expert)
// streams once per call for all rows; attention reads each sequence's own cache. A call in which every sequence
// brings one token (a decode step of several streams) computes each row exactly as a lone decode would, bit for
// bit (block types are row-independent by construction; float products take per-row dot products, not sgemm), so
// batching never changes a stream's tokens.
class Engine {
 public:
  // max_positions: the longest context any cache given to it may hold (<= max_position_embeddings).
  Engine(const InferModel& model, int64_t max_positions);
  void forward(const SeqBatch* seqs, size_t count);
  // One sequence, logits [n, V] of every position (perplexity).
  void forward_all(KvCache& cache, const int32_t* tokens, int64_t n, std::vector<float>& logits);
  const InferModel& model() const { return model_; }
  int64_t max_positions() const { return max_positions_; }

 private:
  void index_rows(const SeqBatch* seqs, size_t count);                       // fills row_* and decode_rows_
  void run_layers(const SeqBatch* seqs, size_t count, int64_t N, float* h);  // h [N, d]: after the last layer
  void attention(int64_t layer, const SeqBatch* seqs, size_t count, const float* x, int64_t N, float* y);
  void swiglu(const QMatrix& gate, const QMatrix& up, const QMatrix& down, const float* x, int64_t n, float* y,
              const char* tag);
  void moe(const InferLayer& w, const float* x, int64_t n, float* y);
  void rope(float* x, int64_t pos) const;
  QProduct product(const QMatrix& w, const float* x, float* y, int64_t n) const {
    return {&w, x, y, n, 0, decode_rows_};
  }

  const InferModel& model_;
  int64_t max_positions_;
  RopeTables rope_;
  Workspace ws_;
  // Row r of this call's batch: token row_token_[r] of sequence row_seq_[r] at absolute position row_pos_[r].
  std::vector<int64_t> row_seq_, row_pos_;
  std::vector<int32_t> row_token_;
  bool decode_rows_ = false;  // this call is a decode step (every sequence one token): products row by row
};

// One sequence: an Engine and its KV cache.
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
  const InferModel& model() const { return engine_.model(); }

 private:
  std::unique_ptr<InferModel> owned_view_;  // set by the Model constructor
  Engine engine_;
  KvCache cache_;
  std::vector<float> logits_;
};

}  // namespace dsmoe
