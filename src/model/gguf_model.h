// Model <-> GGUF in llama.cpp's `deepseek` architecture layout (reference: shared/reference/gguf-deepseek.md).
//
// Writing: every registry tensor under its llama.cpp name (token_embd, blk.N.attn_q, blk.N.ffn_gate_exps, ...,
// output_norm, output), with numpy shape = our in-memory shape (ggml ne reversed). The rows of attn_q / attn_k are
// permuted within each head as convert_hf_to_gguf.py's DeepseekModel.permute does (rotate-half RoPE -> adjacent
// pairs: new row 2i <- old i, new row 2i+1 <- old hd/2 + i). Norms and the router (ffn_gate_inp) are always F32;
// other tensors get the chosen type (a block type falls back to F16 for a tensor whose row length is not a
// multiple of 32, as llama.cpp's converter does). A tied lm_head is written out as `output` (llama.cpp's deepseek
// requires it). Metadata: general.*, every deepseek.* key the loader needs, tokenizer BOS/EOS ids, and
// `dsmoe.config` (the HF config.json text) so non-architecture fields round-trip.
//
// Reading: the config comes from the deepseek.* keys (cross-checked with dsmoe.config when present, which then
// supplies the training-only fields); tensors are dequantized to F32 and Q/K rows un-permuted.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/quant.h"
#include "io/gguf.h"
#include "model/model.h"

namespace dsmoe {

// llama.cpp tensor name (with ".weight") of a registry tensor.
std::string gguf_tensor_name(const TensorSpec& spec);

// Q/K row permutation for a [n_head * hd, cols] matrix: HF rotate-half order -> llama.cpp adjacent pairs, and back.
void gguf_permute_qk(const float* src, float* dst, int64_t n_head, int64_t head_dim, int64_t cols);
void gguf_unpermute_qk(const float* src, float* dst, int64_t n_head, int64_t head_dim, int64_t cols);

// Fills dst (spec.numel() floats) with registry tensor `spec` in HF layout (Q/K rows unpermuted unless the
// options say the source is already in GGUF layout). Called once per tensor, in file order: sources can stream.
using GgufTensorSource = std::function<void(const TensorSpec& spec, float* dst)>;

struct GgufWriteOptions {
  QuantType type = QuantType::F32;   // weight matrices; norms and the router are always F32
  bool keep_8bit = true;             // with a 4-bit type: embeddings, lm_head and shared experts get Q8_0
  std::string name = "dsmoe";        // general.name
  bool source_in_gguf_layout = false;  // the source's Q/K rows are already permuted (it is a GGUF file)
  std::vector<io::GgufKV> extra_kvs;   // e.g. tokenizer metadata (then BOS/EOS come from there)
  std::function<void(size_t done_bytes, size_t total_bytes)> progress;  // after each tensor
};

// The storage type a tensor gets under these options.
QuantType gguf_tensor_type(const TensorSpec& spec, const GgufWriteOptions& options);
// Stream a model into a GGUF file, one tensor in memory at a time (as f32, then its quantized bytes).
void gguf_write_model(const ModelConfig& config, const GgufTensorSource& source, const std::string& path,
                      const GgufWriteOptions& options);
// Random weights with the model's initializer_range (norms 1), reproducible from the seed: full-size models for
// speed and memory measurements without the real weights.
GgufTensorSource random_tensor_source(const ModelConfig& config, uint64_t seed);
// A source reading an in-memory model.
GgufTensorSource model_tensor_source(const Model& model);

// A model read tensor by tensor from an HF directory (safetensors, mmapped) or a GGUF file, for conversions that
// must not hold the whole model (pages are released from the resident set after each tensor).
struct StreamingModelSource {
  ModelConfig config;
  GgufTensorSource source;
  bool gguf_layout = false;                 // Q/K rows already permuted
  std::vector<io::GgufKV> tokenizer_kvs;    // a GGUF source's tokenizer.* keys
};
StreamingModelSource open_streaming_source(const std::string& path);

// Write the model as a GGUF file. `type` applies to the weight matrices (norms and router stay F32).
// Throws for configs llama.cpp's deepseek graph cannot represent (moe_layer_freq != 1, norm_topk_prob).
void model_save_gguf(const Model& model, const std::string& path, QuantType type = QuantType::F32,
                     const std::string& name = "dsmoe");

// The model config a deepseek GGUF describes (deepseek.* keys, cross-checked with dsmoe.config when present).
ModelConfig gguf_read_config(const io::GgufFile& file);
// Every tensor the config needs is present with its shape, and no other tensor is: errors name the tensor.
void gguf_check_tensors(const io::GgufFile& file, const ModelConfig& config);

// Read a deepseek GGUF (any mix of F32/F16/BF16/Q8_0/Q4_0 tensors) into an F32 model.
std::unique_ptr<Model> model_load_gguf(const std::string& path);

}  // namespace dsmoe
