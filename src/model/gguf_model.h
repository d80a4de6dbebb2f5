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
#include <memory>
#include <string>

#include "core/quant.h"
#include "model/model.h"

namespace dsmoe {

// llama.cpp tensor name (with ".weight") of a registry tensor.
std::string gguf_tensor_name(const TensorSpec& spec);

// Q/K row permutation for a [n_head * hd, cols] matrix: HF rotate-half order -> llama.cpp adjacent pairs, and back.
void gguf_permute_qk(const float* src, float* dst, int64_t n_head, int64_t head_dim, int64_t cols);
void gguf_unpermute_qk(const float* src, float* dst, int64_t n_head, int64_t head_dim, int64_t cols);

// Write the model as a GGUF file. `type` applies to the weight matrices (norms and router stay F32).
// Throws for configs llama.cpp's deepseek graph cannot represent (moe_layer_freq != 1, norm_topk_prob).
void model_save_gguf(const Model& model, const std::string& path, QuantType type = QuantType::F32,
                     const std::string& name = "dsmoe");

namespace io {
class GgufFile;
}
// The model config a deepseek GGUF describes (deepseek.* keys, cross-checked with dsmoe.config when present).
ModelConfig gguf_read_config(const io::GgufFile& file);
// Every tensor the config needs is present with its shape, and no other tensor is: errors name the tensor.
void gguf_check_tensors(const io::GgufFile& file, const ModelConfig& config);

// Read a deepseek GGUF (any mix of F32/F16/BF16/Q8_0/Q4_0 tensors) into an F32 model.
std::unique_ptr<Model> model_load_gguf(const std::string& path);

}  // namespace dsmoe
