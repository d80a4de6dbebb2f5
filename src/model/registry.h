// The tensor registry: one table that names every parameter of a DeepSeekMoE model, gives its HF name, its
// in-memory shape (derived from ModelConfig) and its role. Loaders, writers, the optimizer (weight decay) and the
// weight binding all read this table, so names and shapes live in exactly one place.
//
// What a role is (its HF and GGUF name patterns, where the model has it, its shape rule, whether GGUF keeps it F32,
// how much of it a decoded token reads, ...) is one row of the role table (role_info), the way llama.cpp keeps one
// tensor-name table per architecture (LLM_TENSOR_NAMES): the registry, the GGUF reader and writer, the quantization
// recipe, the training weights and the inference model all decide by it.
//
// Routed experts are stacked: one tensor [E, rows, cols] per projection and layer. HF stores one tensor per expert
// (model.layers.{i}.mlp.experts.{e}.gate_proj.weight); `n_stacked` = E says the HF side is split that way.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"

namespace dsmoe {

enum class TensorRole {
  embedding,    // [V, d]
  attn_norm,    // [d]
  attn_q,       // [H*hd, d]
  attn_k,       // [KVH*hd, d]
  attn_v,       // [KVH*hd, d]
  attn_o,       // [d, H*hd]
  ffn_norm,     // [d]
  mlp_gate,     // [F, d]   dense SwiGLU
  mlp_up,       // [F, d]
  mlp_down,     // [d, F]
  router,       // [E, d]   MoE gate (centroids)
  expert_gate,  // [E, Fe, d]
  expert_up,    // [E, Fe, d]
  expert_down,  // [E, d, Fe]
  shared_gate,  // [Fs, d]  all shared experts fused: Fs = n_shared * Fe
  shared_up,    // [Fs, d]
  shared_down,  // [d, Fs]
  final_norm,   // [d]
  lm_head,      // [V, d]
};
inline constexpr size_t kTensorRoleCount = static_cast<size_t>(TensorRole::lm_head) + 1;

// Where a model has a role's tensor.
enum class RolePlace {
  model,           // once per model
  untied_model,    // once per model unless tie_word_embeddings (lm_head)
  every_layer,     // in every decoder layer
  dense_layer,     // in every dense (SwiGLU) layer
  moe_layer,       // in every MoE layer
  shared_experts,  // in every MoE layer when it has shared experts (n_shared_experts > 0)
};

// One dimension of a role's in-memory shape, in terms of the config.
enum class Dim {
  none,          // past the last dimension
  vocab,         // V = vocab_size
  hidden,        // d = hidden_size
  q_dim,         // H * hd
  kv_dim,        // KVH * hd
  dense_ffn,     // F = intermediate_size
  experts,       // E = n_routed_experts
  experts_held,  // El: E, or the experts an expert-parallel slice holds
  expert_ffn,    // Fe = moe_intermediate_size
  shared_ffn,    // Fs = n_shared_experts * Fe
};

// How much of a tensor decoding one token reads.
enum class TokenRead {
  all,      // the whole tensor
  one_row,  // one row (the embedding lookup)
  top_k,    // the k of E routed experts selected (stacked experts)
};

// Everything a role is: one row per role, in role order (which is also the registry's order within a layer).
struct TensorRoleInfo {
  TensorRole role;
  const char* name;          // "attn_q": logs and errors
  const char* hf_pattern;    // HF (safetensors) name: "{i}" the layer, "{e}" the expert of a stacked tensor
  const char* gguf_pattern;  // llama.cpp `deepseek` name: "{i}" the layer (blk.{i}.attn_q.weight)
  RolePlace place;
  Dim shape[3];          // in-memory shape (stacked experts lead with El); Dim::none past the last dimension
  bool stacked;          // routed experts: shape [El, rows, cols]; HF holds one tensor per expert (shape[1:])
  bool qk_permuted;      // GGUF holds the rows permuted within each head (llama.cpp's RoPE pairs): attn_q, attn_k
  bool always_f32;       // GGUF stores it F32 under every file type (llama-quantize never quantizes norms and the
                         // router, ffn_gate_inp)
  bool keep_8bit;        // Q8_0 instead of Q4_0 by dsmoe's policy (GgufWriteOptions::keep_8bit): tensors every
                         // token reads, a small share of a fine-grained MoE's bytes (embedding, lm_head, shared)
  TokenRead token_read;  // how much of it one decoded token reads

  bool per_layer() const { return place != RolePlace::model && place != RolePlace::untied_model; }
  int rank() const;  // dimensions before Dim::none
};

// The role table, in role order (one row per TensorRole).
std::span<const TensorRoleInfo> tensor_role_table();
const TensorRoleInfo& role_info(TensorRole role);
const char* tensor_role_name(TensorRole role);  // role_info(role).name

// A role's tensor names: `layer` fills "{i}" (model-level roles have none); `expert` fills the HF "{e}" of a
// stacked role (-1 keeps "{e}", as TensorSpec::name does).
std::string hf_tensor_name(TensorRole role, int64_t layer = -1, int64_t expert = -1);
std::string gguf_tensor_name(TensorRole role, int64_t layer = -1);

// A tensor name resolved by the role table. layer: -1 for model-level roles; expert: the HF expert index of a
// stacked role, else -1. Names are matched exactly (decimal indices without leading zeros): hf_tensor_name /
// gguf_tensor_name of the match give the name back.
struct TensorNameMatch {
  TensorRole role;
  int64_t layer = -1;
  int64_t expert = -1;
};
std::optional<TensorNameMatch> role_from_hf_name(const std::string& name);
std::optional<TensorNameMatch> role_from_gguf_name(const std::string& name);

struct TensorSpec {
  std::string name;  // HF name; stacked experts carry "{e}" where the expert index goes
  TensorRole role;
  int64_t layer = -1;          // -1 for model-level tensors
  std::vector<int64_t> shape;  // in memory (stacked experts lead with E)
  int64_t n_stacked = 0;       // 0: one HF tensor; E: HF holds E tensors of shape[1:]
  size_t offset = 0;           // float offset of this tensor in a ParamSet arena
  int64_t first_expert = 0;    // stacked experts held: [first_expert, first_expert + n_stacked) (expert parallelism)

  int64_t numel() const;
  // HF tensor name; for stacked experts, the name of the e-th expert held (expert first_expert + e).
  std::string hf_name(int64_t expert = -1) const;
  // Shape of one HF tensor (shape without the leading E for stacked experts).
  std::vector<int64_t> hf_shape() const;
  // Decoupled weight decay applies to tensors that are matrices in PyTorch's view (>= 2 dims); never to norms.
  bool weight_decay() const { return hf_shape().size() >= 2; }
};

// The routed experts a rank holds under expert parallelism: [first, first + count); count < 0 = all of them.
struct ExpertSlice {
  int64_t first = 0, count = -1;
  bool all() const { return count < 0; }
};

// All parameters of the model described by `config`, in a fixed order, with arena offsets filled in. With a slice,
// the stacked expert tensors hold only its experts (same names: hf_name(e) is expert first + e).
std::vector<TensorSpec> build_registry(const ModelConfig& config, ExpertSlice slice = {});
// Total floats of the registry's arena.
size_t registry_numel(const std::vector<TensorSpec>& registry);
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace dsmoe
