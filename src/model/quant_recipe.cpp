// llama-quantize's per-tensor type recipes for the deepseek architecture; see quant_recipe.h.
#include "model/quant_recipe.h"

#include <cctype>
#include <optional>

#include <fmt/format.h>

#include "core/error.h"
#include "model/registry.h"

namespace dsmoe {

namespace {

struct FileTypeInfo {
  FileType ftype;
  const char* name;
  QuantType base;  // llama_model_quantize_impl's default_type
};
constexpr FileTypeInfo kFileTypes[] = {
    {FileType::F32, "f32", QuantType::F32},          {FileType::F16, "f16", QuantType::F16},
    {FileType::BF16, "bf16", QuantType::BF16},       {FileType::Q8_0, "q8_0", QuantType::Q8_0},
    {FileType::Q4_0, "q4_0", QuantType::Q4_0},       {FileType::Q4_1, "q4_1", QuantType::Q4_1},
    {FileType::Q5_0, "q5_0", QuantType::Q5_0},       {FileType::Q5_1, "q5_1", QuantType::Q5_1},
    {FileType::IQ4_NL, "iq4_nl", QuantType::IQ4_NL}, {FileType::Q2_K, "q2_k", QuantType::Q2_K},
    {FileType::Q3_K_S, "q3_k_s", QuantType::Q3_K},   {FileType::Q3_K_M, "q3_k_m", QuantType::Q3_K},
    {FileType::Q3_K_L, "q3_k_l", QuantType::Q3_K},   {FileType::Q4_K_S, "q4_k_s", QuantType::Q4_K},
    {FileType::Q4_K_M, "q4_k_m", QuantType::Q4_K},   {FileType::Q5_K_S, "q5_k_s", QuantType::Q5_K},
    {FileType::Q5_K_M, "q5_k_m", QuantType::Q5_K},   {FileType::Q6_K, "q6_k", QuantType::Q6_K},
};

const FileTypeInfo& info_of(FileType f) {
  for (const FileTypeInfo& i : kFileTypes)
    if (i.ftype == f) return i;
  fail("unknown file type id {}", static_cast<uint32_t>(f));
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third layer between them.
bool use_more_bits(int64_t i_layer, int64_t n_layer) {
  return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

// The role and `blk.N.` layer of a deepseek tensor, by the role table (model/registry.h). llama.cpp matches the
// name's parts ("attn_v.weight", "ffn_down", ...), which single out the same tensors of this architecture; it parses
// the layer from the name for MoE models and counts tensors of the kind otherwise (i_attention_wv, i_ffn_down in
// the loader's layer-sorted order); in a deepseek file every layer has one attn_v and, in a dense model, one
// ffn_down, so the count equals the index too.
TensorNameMatch role_of(const std::string& name) {
  const std::optional<TensorNameMatch> m = role_from_gguf_name(name);
  check(m.has_value(), "tensor {} is not a tensor of a deepseek model", name);
  return *m;
}

int64_t layer_of(const std::string& name, const TensorNameMatch& m, int64_t n_layer) {
  check(m.layer >= 0, "cannot determine the layer of tensor {}", name);
  check(m.layer < n_layer, "tensor {}: layer {} is outside [0, {})", name, m.layer, n_layer);
  return m.layer;
}

}  // namespace

const char* file_type_name(FileType f) { return info_of(f).name; }

std::string file_type_names() {
  std::string out;
  for (const FileTypeInfo& i : kFileTypes) out += fmt::format("{}{}", out.empty() ? "" : " | ", i.name);
  return out;
}

FileType file_type_from_name(const std::string& name) {
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // llama-quantize's aliases
  if (lower == "q3_k") return FileType::Q3_K_M;
  if (lower == "q4_k") return FileType::Q4_K_M;
  if (lower == "q5_k") return FileType::Q5_K_M;
  for (const FileTypeInfo& i : kFileTypes)
    if (lower == i.name) return i.ftype;
  fail("unknown type '{}' (expected {})", name, file_type_names());
}

QuantType file_type_base(FileType f) { return info_of(f).base; }

FileType file_type_of(QuantType t) {
  switch (t) {
    case QuantType::Q3_K: return FileType::Q3_K_S;
    case QuantType::Q4_K: return FileType::Q4_K_S;
    case QuantType::Q5_K: return FileType::Q5_K_S;
    default: break;
  }
  for (const FileTypeInfo& i : kFileTypes)
    if (i.base == t) return i.ftype;
  fail("no file type for weight type {}", quant_type_name(t));
}

bool recipe_quantizes(const std::string& name, size_t n_dims) {
  // llama_model_quantize_impl: `quantize` is true for names ending in "weight", 2-D and 3-D (stacked experts)
  // tensors, not "_norm.weight", not the router "ffn_gate_inp.weight": of a deepseek model's tensors (all named
  // "*.weight"), the matrices the role table does not mark always_f32 (the other exclusions are tensors of other
  // architectures: pos_embd, token_types, ssm_conv1d, time_mix_*, attn_rel_b).
  const std::optional<TensorNameMatch> m = role_from_gguf_name(name);
  return m.has_value() && n_dims >= 2 && !role_info(m->role).always_f32;
}

QuantType row_width_fallback(QuantType t, int64_t row_width) {
  if (row_width % quant_block_size(t) == 0) return t;
  QuantType fallback = QuantType::F16;
  switch (t) {  // llama_tensor_get_type, convert_incompatible_tensor
    case QuantType::Q2_K:
    case QuantType::Q3_K: fallback = QuantType::IQ4_NL; break;
    case QuantType::Q4_K: fallback = QuantType::Q5_0; break;
    case QuantType::Q5_K: fallback = QuantType::Q5_1; break;
    case QuantType::Q6_K: fallback = QuantType::Q8_0; break;
    default: break;  // 32-weight types: llama-quantize throws "Unsupported tensor size"; the converter writes F16
  }
  return row_width % quant_block_size(fallback) == 0 ? fallback : QuantType::F16;
}

QuantType recipe_tensor_type(FileType f, const std::string& name, const std::vector<int64_t>& ne,
                             const ModelConfig& config, bool pure) {
  check(!ne.empty(), "tensor {} has no dimensions", name);
  if (!recipe_quantizes(name, ne.size())) return QuantType::F32;
  const TensorNameMatch m = role_of(name);
  const QuantType base = file_type_base(f);
  if (pure || !quant_is_block(base)) return row_width_fallback(base, ne[0]);  // F16/BF16/F32: no recipe

  // llama_tensor_get_type, branch by branch, for the tensors of a deepseek model and the file types of FileType.
  // Facts it uses: n_expert = routed experts; n_gqa = query heads per KV head; llama.cpp's 70B rule (model type
  // LLM_TYPE_70B) never applies: a deepseek model is 20B (28 layers) or unknown.
  const int64_t n_layer = config.num_hidden_layers;
  const int64_t n_expert = config.n_routed_experts;
  const int64_t n_gqa = config.num_key_value_heads > 0 ? config.num_attention_heads / config.num_key_value_heads : 0;
  const bool eight_experts = n_expert == 8;  // Mixtral-8x7B's rules, taken for any model with 8 experts
  auto is = [&](FileType g) { return f == g; };
  QuantType t = base;

  switch (m.role) {
    case TensorRole::lm_head:
      // "output": Q8_0 if its rows do not fit the base type's blocks, else Q6_K unless the base is Q8_0.
      if (ne[0] % quant_block_size(base) != 0)
        t = QuantType::Q8_0;
      else if (base != QuantType::Q8_0)
        t = QuantType::Q6_K;
      break;
    case TensorRole::embedding:
      // "token_embd": changes only for the IQ1/IQ2/IQ3/TQ mixes (not offered here). With an `output` tensor present
      // the embedding is not treated as the output (that branch is for files without one).
      break;
    case TensorRole::attn_v: {
      // "attn_v": i_attention_wv counts attn_v tensors in layer order, i.e. it is the layer index.
      const int64_t i = layer_of(name, m, n_layer);
      if (is(FileType::Q2_K))
        t = n_gqa >= 4 ? QuantType::Q4_K : QuantType::Q3_K;
      else if (is(FileType::Q3_K_M))
        t = i < 2 ? QuantType::Q5_K : QuantType::Q4_K;
      else if (is(FileType::Q3_K_L))
        t = QuantType::Q5_K;
      else if (is(FileType::IQ4_NL) && n_gqa >= 4)
        t = QuantType::Q5_K;
      else if ((is(FileType::Q4_K_M) || is(FileType::Q5_K_M)) && use_more_bits(i, n_layer))
        t = QuantType::Q6_K;
      else if (is(FileType::Q4_K_S) && i < 4)
        t = QuantType::Q5_K;
      if (eight_experts) t = QuantType::Q8_0;  // "bumping this to Q8_0 trades just ~128MB"
      break;
    }
    case TensorRole::attn_k:
      // "attn_k": Q8_0 with 8 experts; the other rules are IQ3 mixes.
      if (eight_experts) t = QuantType::Q8_0;
      break;
    case TensorRole::attn_q:
      // "attn_q": IQ3 mixes only.
      break;
    case TensorRole::mlp_down:
    case TensorRole::expert_down:
    case TensorRole::shared_down: {
      // "ffn_down": every ffn_down tensor (dense ffn_down, ffn_down_exps, ffn_down_shexp) by its layer index
      // i_layer = blk.N (parsed from the name for MoE models) out of n_layer = all layers.
      const int64_t i = layer_of(name, m, n_layer);
      if (is(FileType::Q2_K))
        t = QuantType::Q3_K;
      else if (is(FileType::Q3_K_M))
        t = i < n_layer / 16 ? QuantType::Q5_K : QuantType::Q4_K;  // (not Falcon)
      else if (is(FileType::Q3_K_L))
        t = QuantType::Q5_K;
      else if (is(FileType::Q4_K_M)) {
        if (use_more_bits(i, n_layer)) t = QuantType::Q6_K;
      } else if (i < n_layer / 8 && is(FileType::IQ4_NL))
        t = QuantType::Q5_K;  // without an importance matrix
      else if (is(FileType::Q5_K_M) && use_more_bits(i, n_layer))
        t = QuantType::Q6_K;
      else if (is(FileType::Q4_K_S) && i < n_layer / 8)
        t = QuantType::Q5_K;
      // (Q4_0/Q5_0 -> Q4_1/Q5_1 in the first eighth applies only with an importance matrix.)
      break;
    }
    case TensorRole::attn_o:
      // "attn_output" (not Falcon): with 8 experts Q5_K for the listed mixes (not Q3_K_L), else per mix.
      if (eight_experts) {
        if (is(FileType::Q2_K) || is(FileType::Q3_K_S) || is(FileType::Q3_K_M) || is(FileType::IQ4_NL) ||
            is(FileType::Q4_K_S) || is(FileType::Q4_K_M))
          t = QuantType::Q5_K;
      } else {
        if (is(FileType::Q2_K))
          t = QuantType::Q3_K;
        else if (is(FileType::Q3_K_M))
          t = QuantType::Q4_K;
        else if (is(FileType::Q3_K_L))
          t = QuantType::Q5_K;
      }
      break;
    default:
      // "ffn_gate" / "ffn_up" (incl. _exps, _shexp): IQ3_XS only. "attn_qkv": not a deepseek tensor. Norms and the
      // router are not quantized (recipe_quantizes).
      break;
  }

  // "convert_incompatible_tensor": rows that are not whole blocks of the chosen type.
  return row_width_fallback(t, ne[0]);
}

}  // namespace dsmoe
