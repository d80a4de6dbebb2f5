#include "model/params.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace dsmoe {

ParamSet::ParamSet(std::vector<TensorSpec> reg) : registry(std::move(reg)), arena(registry_numel(registry)) {}

const TensorSpec* ParamSet::find(const std::string& name) const {
  for (const TensorSpec& spec : registry)
    if (spec.name == name) return &spec;
  return nullptr;
}

Weights bind_weights(ParamSet& params) {
  Weights w;
  int64_t n_layers = 0;
  for (const TensorSpec& spec : params.registry) n_layers = std::max(n_layers, spec.layer + 1);
  w.layers.resize(n_layers);
  for (const TensorSpec& spec : params.registry) {
    float* p = params.ptr(spec);
    LayerWeights* l = spec.layer >= 0 ? &w.layers[spec.layer] : nullptr;
    switch (spec.role) {
      case TensorRole::embedding: w.embedding = p; break;
      case TensorRole::final_norm: w.final_norm = p; break;
      case TensorRole::lm_head: w.lm_head = p; break;
      case TensorRole::attn_norm: l->attn_norm = p; break;
      case TensorRole::attn_q: l->wq = p; break;
      case TensorRole::attn_k: l->wk = p; break;
      case TensorRole::attn_v: l->wv = p; break;
      case TensorRole::attn_o: l->wo = p; break;
      case TensorRole::ffn_norm: l->ffn_norm = p; break;
      case TensorRole::mlp_gate: l->mlp_gate = p; break;
      case TensorRole::mlp_up: l->mlp_up = p; break;
      case TensorRole::mlp_down: l->mlp_down = p; break;
      case TensorRole::router: l->router = p; break;
      case TensorRole::expert_gate:
        l->expert_gate = p;
        l->expert_first = spec.first_expert;
        l->expert_held = spec.n_stacked;
        break;
      case TensorRole::expert_up: l->expert_up = p; break;
      case TensorRole::expert_down: l->expert_down = p; break;
      case TensorRole::shared_gate: l->shared_gate = p; break;
      case TensorRole::shared_up: l->shared_up = p; break;
      case TensorRole::shared_down: l->shared_down = p; break;
    }
  }
  if (w.lm_head == nullptr) w.lm_head = w.embedding;  // tie_word_embeddings
  return w;
}

uint64_t Rng::next_u64() {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Rng::uniform() { return (next_u64() >> 11) * (1.0 / 9007199254740992.0); }

double Rng::normal() {
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
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
