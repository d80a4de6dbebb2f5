// ParamSet — one arena of floats laid out by the tensor registry, and Weights — named per-layer views into it.
//
// Parameters, gradients and the AdamW moments all use the same layout (llm.c's single-allocation plan), so the
// optimizer and gradient clipping are single loops over flat arrays, and views are generated from the registry
// so sizes and names cannot drift.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/rng.h"  // Rng: init_params draws from it
#include "model/config.h"
#include "model/registry.h"

namespace dsmoe {

struct ParamSet {
  std::vector<TensorSpec> registry;
  FloatBuffer arena;

  ParamSet() = default;
  explicit ParamSet(std::vector<TensorSpec> registry);  // zero-filled
  float* ptr(const TensorSpec& spec) { return arena.data() + spec.offset; }
  const float* ptr(const TensorSpec& spec) const { return arena.data() + spec.offset; }
  const TensorSpec* find(const std::string& hf_name) const;  // by registry name (stacked names keep "{e}")
};

// Views of one decoder layer. Pointers are null where the layer does not have the tensor (dense vs MoE).
struct LayerWeights {
  float* attn_norm = nullptr;    // [d]
  float* wq = nullptr;           // [H*hd, d]
  float* wk = nullptr;           // [KVH*hd, d]
  float* wv = nullptr;           // [KVH*hd, d]
  float* wo = nullptr;           // [d, H*hd]
  float* ffn_norm = nullptr;     // [d]
  float* mlp_gate = nullptr;     // [F, d]
  float* mlp_up = nullptr;       // [F, d]
  float* mlp_down = nullptr;     // [d, F]
  float* router = nullptr;       // [E, d]
  int64_t expert_first = 0;      // the routed experts held are [expert_first, expert_first + expert_held)
  int64_t expert_held = 0;       // El: E unless expert parallelism slices them
  float* expert_gate = nullptr;  // [El, Fe, d]
  float* expert_up = nullptr;    // [El, Fe, d]
  float* expert_down = nullptr;  // [El, d, Fe]
  float* shared_gate = nullptr;  // [Fs, d]
  float* shared_up = nullptr;    // [Fs, d]
  float* shared_down = nullptr;  // [d, Fs]
};

struct Weights {
  float* embedding = nullptr;   // [V, d]
  float* final_norm = nullptr;  // [d]
  float* lm_head = nullptr;     // [V, d]; equals `embedding` when tied
  std::vector<LayerWeights> layers;
};

// Bind named views into a ParamSet (used for parameters and, with the same layout, for gradients).
Weights bind_weights(ParamSet& params);

// Fresh model: normal(0, initializer_range) matrices, norms = 1. Deterministic for a given seed on every platform
// (own Box-Muller over a 64-bit mixer, not std::normal_distribution whose algorithm is implementation-defined).
void init_params(ParamSet& params, const ModelConfig& config, uint64_t seed);

}  // namespace dsmoe
