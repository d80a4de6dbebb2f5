#include "model/params.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"

namespace dsmoe {

ParamSet::ParamSet(std::vector<TensorSpec> reg) : registry(std::move(reg)), arena(registry_numel(registry)) {}

const TensorSpec* ParamSet::find(const std::string& name) const {
  for (const TensorSpec& spec : registry)
    if (spec.name == name) return &spec;
  return nullptr;
}

namespace {
// The view each role binds to. What a role is (model-level or per layer, stacked experts) is the role table's
// (model/registry.h); these only name the fields.
struct ModelSlot {
  TensorRole role;
  float* Weights::*field;
};
struct LayerSlot {
  TensorRole role;
  float* LayerWeights::*field;
};
constexpr ModelSlot kModelSlots[] = {
    {TensorRole::embedding, &Weights::embedding},
    {TensorRole::final_norm, &Weights::final_norm},
    {TensorRole::lm_head, &Weights::lm_head},
};
constexpr LayerSlot kLayerSlots[] = {
    {TensorRole::attn_norm, &LayerWeights::attn_norm},
    {TensorRole::attn_q, &LayerWeights::wq},
    {TensorRole::attn_k, &LayerWeights::wk},
    {TensorRole::attn_v, &LayerWeights::wv},
    {TensorRole::attn_o, &LayerWeights::wo},
    {TensorRole::ffn_norm, &LayerWeights::ffn_norm},
    {TensorRole::mlp_gate, &LayerWeights::mlp_gate},
    {TensorRole::mlp_up, &LayerWeights::mlp_up},
    {TensorRole::mlp_down, &LayerWeights::mlp_down},
    {TensorRole::router, &LayerWeights::router},
    {TensorRole::expert_gate, &LayerWeights::expert_gate},
    {TensorRole::expert_up, &LayerWeights::expert_up},
    {TensorRole::expert_down, &LayerWeights::expert_down},
    {TensorRole::shared_gate, &LayerWeights::shared_gate},
    {TensorRole::shared_up, &LayerWeights::shared_up},
    {TensorRole::shared_down, &LayerWeights::shared_down},
};

template <typename Slot, size_t N>
auto field_of(const Slot (&slots)[N], TensorRole role) {
  for (const Slot& slot : slots)
    if (slot.role == role) return slot.field;
  fail("bind_weights: no view for tensor role {}", tensor_role_name(role));
}
}  // namespace

Weights bind_weights(ParamSet& params) {
  Weights w;
  int64_t n_layers = 0;
  for (const TensorSpec& spec : params.registry) n_layers = std::max(n_layers, spec.layer + 1);
  w.layers.resize(n_layers);
  for (const TensorSpec& spec : params.registry) {
    float* p = params.ptr(spec);
    const TensorRoleInfo& role = role_info(spec.role);
    if (!role.per_layer()) {
      w.*field_of(kModelSlots, spec.role) = p;
      continue;
    }
    LayerWeights& l = w.layers[spec.layer];
    l.*field_of(kLayerSlots, spec.role) = p;
    if (role.stacked) {  // the routed experts this ParamSet holds (the same for each stacked tensor of the layer)
      l.expert_first = spec.first_expert;
      l.expert_held = spec.n_stacked;
    }
  }
  if (w.lm_head == nullptr) w.lm_head = w.embedding;  // tie_word_embeddings
  return w;
}

void init_params(ParamSet& params, const ModelConfig& config, uint64_t seed) {
  // Each tensor draws from its own stream (seed mixed with its index) so adding a tensor does not reshuffle others.
  for (size_t i = 0; i < params.registry.size(); ++i) {
    const TensorSpec& spec = params.registry[i];
    float* p = params.ptr(spec);
    const int64_t n = spec.numel();
    if (spec.shape.size() == 1) {
      for (int64_t j = 0; j < n; ++j) p[j] = 1.0f;
      continue;
    }
    Rng rng(seed * 0x100000001B3ull + i);
    // A slice of stacked experts (expert parallelism) takes its part of the whole tensor's stream.
    const int64_t skip = spec.n_stacked > 0 ? spec.first_expert * (n / spec.n_stacked) : 0;
    for (int64_t j = 0; j < skip; ++j) rng.normal();
    for (int64_t j = 0; j < n; ++j) p[j] = static_cast<float>(rng.normal() * config.initializer_range);
  }
}

}  // namespace dsmoe
