// File types (llama.cpp's llama_ftype) and the per-tensor type recipes llama-quantize applies to a `deepseek`
// (DeepSeekMoE) model: Q4_K_M is not "every matrix Q4_K" but Q4_K with Q6_K for output, some attn_v and ffn_down,
// and fallbacks where a row is not a whole number of 256-weight super-blocks. recipe_tensor_type reproduces
// llama.cpp's llama_tensor_get_type (src/llama-quant.cpp, commit c392e50) for the tensors of this architecture
// and the file types listed below; tests/data/recipes/ holds the per-tensor types llama-quantize itself chose.
//
// Dimension legend: ne = ggml dims of a tensor (ne[0] = row width, the contiguous one; ne[1] = rows; ne[2] = experts
// for the stacked *_exps tensors); n_layer = decoder layers (dense + MoE); i_layer = the `blk.N.` index of a name.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/quant.h"
#include "model/config.h"

namespace dsmoe {

// llama_ftype ids (llama.cpp include/llama.h): the value of general.file_type, for the file types dsmoe writes.
// llama.cpp's IQ1/IQ2/IQ3/IQ4_XS/TQ mixes and Q2_K_S are outside this set (they rely on importance-matrix
// quantization, which dsmoe does not do); `quantize --type` refuses them by name.
enum class FileType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 7,
  Q5_0 = 8,
  Q5_1 = 9,
  Q2_K = 10,
  Q3_K_S = 11,
  Q3_K_M = 12,
  Q3_K_L = 13,
  Q4_K_S = 14,
  Q4_K_M = 15,
  Q5_K_S = 16,
  Q5_K_M = 17,
  Q6_K = 18,
  IQ4_NL = 25,
  BF16 = 32,
};
// Every file type above, in id order.
inline constexpr FileType kAllFileTypes[] = {
    FileType::F32,    FileType::F16,    FileType::Q4_0,   FileType::Q4_1,   FileType::Q8_0,   FileType::Q5_0,
    FileType::Q5_1,   FileType::Q2_K,   FileType::Q3_K_S, FileType::Q3_K_M, FileType::Q3_K_L, FileType::Q4_K_S,
    FileType::Q4_K_M, FileType::Q5_K_S, FileType::Q5_K_M, FileType::Q6_K,   FileType::IQ4_NL, FileType::BF16};

const char* file_type_name(FileType f);  // the CLI spelling: "f32", "q8_0", "q4_k_m", ...
// Case-insensitive; also llama-quantize's aliases q3_k / q4_k / q5_k (= the _M mixes). Throws listing the names.
FileType file_type_from_name(const std::string& name);
std::string file_type_names();  // "f32 | f16 | ... | q6_k" for help texts and errors
// The type most tensors get (llama_model_quantize_impl's default_type): Q4_K for Q4_K_S and Q4_K_M, ...
QuantType file_type_base(FileType f);
// The file type of a file whose matrices all have one plain type (a K type maps to its mostly-that-type mix:
// Q3_K -> Q3_K_S, Q4_K -> Q4_K_S, Q5_K -> Q5_K_S).
FileType file_type_of(QuantType t);

// Whether llama-quantize converts this tensor at all: names ending in "weight" with >= 2 dims, except norms and
// the router (ffn_gate_inp): the deepseek tensors (role table, model/registry.h) with >= 2 dims that are not
// always_f32; names of other architectures' tensors are not converted here. The others keep their stored type
// (dsmoe writes them F32).
bool recipe_quantizes(const std::string& gguf_name, size_t n_dims);

// A type that can store rows of `row_width` weights: `t` itself when the width is a multiple of its block size,
// else llama.cpp's "fallback quantization" (Q2_K/Q3_K -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), and F16
// when that does not fit either. A 32-weight type that does not fit goes straight to F16 (llama-quantize throws
// there; llama.cpp's converter writes F16). Float types always fit.
QuantType row_width_fallback(QuantType t, int64_t row_width);

// The type llama-quantize (without --pure, --imatrix or type overrides) gives tensor `gguf_name` (ggml dims `ne`)
// of a deepseek model with this config under file type `f`, including the row-width fallback. Tensors it does not
// quantize (recipe_quantizes false) get F32. `pure` is llama-quantize's --pure (every matrix the base type),
// except that the row-width fallback still applies: it is a format constraint (llama-quantize would abort).
// Assumes the file holds an `output` tensor (dsmoe always writes one, also for tied embeddings).
QuantType recipe_tensor_type(FileType f, const std::string& gguf_name, const std::vector<int64_t>& ne,
                             const ModelConfig& config, bool pure = false);

}  // namespace dsmoe
