// The tensor registry: one table that names every parameter of a DeepSeekMoE model, gives its HF name, its
// in-memory shape (derived from ModelConfig) and its role. Loaders, writers, the optimizer (weight decay) and the
// weight binding all read this table, so names and shapes live in exactly one place.
//
// Routed experts are stacked: one tensor [E, rows, cols] per projection and layer. HF stores one tensor per expert
// (model.layers.{i}.mlp.experts.{e}.gate_proj.weight); `n_stacked` = E says the HF side is split that way.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace dsmoe {

enum class TensorRole {
  embedding,      // [V, d]
  attn_norm,      // [d]
  attn_q,         // [H*hd, d]
  attn_k,         // [KVH*hd, d]
  attn_v,         // [KVH*hd, d]
  attn_o,         // [d, H*hd]
  ffn_norm,       // [d]
  mlp_gate,       // [F, d]   dense SwiGLU
  mlp_up,         // [F, d]
  mlp_down,       // [d, F]
  router,         // [E, d]   MoE gate (centroids)
  expert_gate,    // [E, Fe, d]
  expert_up,      // [E, Fe, d]
  expert_down,    // [E, d, Fe]
  shared_gate,    // [Fs, d]  all shared experts fused: Fs = n_shared * Fe
  shared_up,      // [Fs, d]
  shared_down,    // [d, Fs]
  final_norm,     // [d]
  lm_head,        // [V, d]
};
const char* tensor_role_name(TensorRole role);

struct TensorSpec {
  std::string name;             // HF name; stacked experts carry "{e}" where the expert index goes
  TensorRole role;
  int64_t layer = -1;           // -1 for model-level tensors
  std::vector<int64_t> shape;   // in memory (stacked experts lead with E)
  int64_t n_stacked = 0;        // 0: one HF tensor; E: HF holds E tensors of shape[1:]
  size_t offset = 0;            // float offset of this tensor in a ParamSet arena
  int64_t first_expert = 0;     // stacked experts held: [first_expert, first_expert + n_stacked) (expert parallelism)

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
