// Model <-> GGUF in llama.cpp's `deepseek` architecture layout (reference: shared/reference/gguf-deepseek.md).
//
// Writing: every registry tensor under its llama.cpp name (token_embd, blk.N.attn_q, blk.N.ffn_gate_exps, ...,
// output_norm, output), with numpy shape = our in-memory shape (ggml ne reversed). The rows of attn_q / attn_k are
// permuted within each head as convert_hf_to_gguf.py's DeepseekModel.permute does (rotate-half RoPE -> adjacent
// pairs: new row 2i <- old i, new row 2i+1 <- old hd/2 + i). Norms and the router (ffn_gate_inp) are always F32;
// other tensors get the type the file type chooses for them (GgufWriteOptions; a llama.cpp K-quant mix such as
// Q4_K_M picks per tensor as llama-quantize does, model/quant_recipe.h), with a fallback for rows that are not a
// whole number of the type's blocks (F16 for the 32-weight types, as llama.cpp's converter does). A tied lm_head is
// written out as `output` (llama.cpp's deepseek requires it). Metadata: general.*, every deepseek.* key the loader
// needs, tokenizer BOS/EOS ids, and `dsmoe.config` (the HF config.json text) so non-architecture fields round-trip.
//
// Reading: any deepseek GGUF llama.cpp writes or reads (single or split files, convert_hf_to_gguf.py's key set with
// optional keys absent, any tensor type of core/quant.h). The config comes from the deepseek.* keys with llama.cpp's
// defaults (dsmoe.config, when present, supplies the training-only fields); tensors are dequantized to F32 and Q/K
// rows un-permuted.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/quant.h"
#include "io/gguf.h"
#include "model/model.h"
#include "model/quant_recipe.h"

namespace dsmoe {

// llama.cpp tensor name (with ".weight") of a registry tensor: its role's GGUF pattern (role_info, model/registry.h).
std::string gguf_tensor_name(const TensorSpec& spec);

// Q/K row permutation for a [n_head * hd, cols] matrix: HF rotate-half order -> llama.cpp adjacent pairs, and back.
void gguf_permute_qk(const float* src, float* dst, int64_t n_head, int64_t head_dim, int64_t cols);
void gguf_unpermute_qk(const float* src, float* dst, int64_t n_head, int64_t head_dim, int64_t cols);

// Fills dst (spec.numel() floats) with registry tensor `spec` in HF layout (Q/K rows unpermuted unless the
// options say the source is already in GGUF layout). Called once per tensor, in file order: sources can stream.
using GgufTensorSource = std::function<void(const TensorSpec& spec, float* dst)>;

struct GgufWriteOptions {
  QuantType type = QuantType::F32;  // weight matrices, when no file type is given; norms and router always F32
  // A llama.cpp file type (general.file_type): when set, it chooses each matrix's type and `type` is ignored.
  // f32/f16/bf16/q8_0/q4_0 give every matrix that type (q4_0 with keep_8bit below); the other block types follow
  // llama-quantize's recipe for the deepseek architecture (recipe_tensor_type).
  std::optional<FileType> ftype;
  // true: under Q4_0, embeddings, lm_head and shared experts get Q8_0 (dsmoe's own policy: llama.cpp's recipe is
  // not applied to q4_0). false (--all-same-type): every matrix gets the base type, also under a llama.cpp recipe
  // (llama-quantize --pure; rows that do not fit the type's blocks still fall back).
  bool keep_8bit = true;
  std::string name = "dsmoe";          // general.name
  bool source_in_gguf_layout = false;  // the source's Q/K rows are already permuted (it is a GGUF file)
  std::vector<io::GgufKV> extra_kvs;   // e.g. tokenizer metadata (then BOS/EOS come from there)
  std::function<void(size_t done_bytes, size_t total_bytes)> progress;  // after each tensor
};

// The file type these options write (general.file_type): ftype, or the file type of the plain `type`.
FileType gguf_file_type(const GgufWriteOptions& options);
// The storage type a tensor gets under these options (spec.role lm_head = the `output` tensor).
QuantType gguf_tensor_type(const TensorSpec& spec, const ModelConfig& config, const GgufWriteOptions& options);
// Every tensor gguf_write_model writes, in file order (a tied lm_head included as `output`), with its type.
struct GgufTensorPlan {
  TensorSpec spec;          // the registry tensor (a tied `output` is the embedding with role lm_head)
  std::string name;         // llama.cpp name
  std::vector<int64_t> ne;  // ggml dims
  QuantType type;
  size_t bytes;  // stored bytes
};
std::vector<GgufTensorPlan> gguf_tensor_plan(const ModelConfig& config, const GgufWriteOptions& options);
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
  bool gguf_layout = false;               // Q/K rows already permuted
  std::vector<io::GgufKV> tokenizer_kvs;  // a GGUF source's tokenizer.* keys
  std::string name;                       // general.name to write: a GGUF source's own (as llama-quantize keeps
                                          // it), else the source's file or directory name
};
StreamingModelSource open_streaming_source(const std::string& path);

// Write the model as a GGUF file. `type` applies to the weight matrices (norms and router stay F32).
// Throws for configs llama.cpp's deepseek graph cannot represent (moe_layer_freq != 1, norm_topk_prob).
void model_save_gguf(const Model& model, const std::string& path, QuantType type = QuantType::F32,
                     const std::string& name = "dsmoe");

// The model config a deepseek GGUF describes. Keys llama.cpp's loader requires are required here too (one error
// naming the missing key), as are expert_count / expert_used_count with MoE layers, feed_forward_length with dense
// layers and attention.head_count; the others take llama.cpp's defaults (head_count_kv = head_count, rope.freq_base
// 10000, key/value_length = rope.dimension_count = embedding_length / head_count, vocab_size = the tokenizer's
// token count or token_embd's rows). Without dsmoe.config: untied `output`, top-k weights not renormalized.
ModelConfig gguf_read_config(const io::GgufFile& file);
// Every tensor the config needs is present with its shape, and no other tensor is; every block tensor's scales are
// finite (io::gguf_validate_block_scales; release_pages: as there). Errors name the file (the split) and the tensor.
void gguf_check_tensors(const io::GgufFile& file, const ModelConfig& config, bool release_pages = false);

// Read a deepseek GGUF (any tensor types of core/quant.h; split files given the first split) into an F32 model.
std::unique_ptr<Model> model_load_gguf(const std::string& path);

}  // namespace dsmoe
