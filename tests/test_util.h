// Small builders shared by the tests: tiny configs and randomly initialised models.
#pragma once
#include <memory>
#include <vector>

#include "model/model.h"

namespace dsmoe::testing {

// A tiny MoE config; tests flip individual fields.
inline ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.moe_intermediate_size = 8;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.n_shared_experts = 1;
  c.n_routed_experts = 6;
  c.num_experts_per_tok = 2;
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 1;
  c.aux_loss_alpha = 0.05;
  c.max_position_embeddings = 64;
  c.initializer_range = 0.3;
  c.validate();
  return c;
}

// tiny_config with every width a multiple of 32, so every matrix can be block-quantized (Q8_0/Q4_0).
inline ModelConfig block_quant_config() {
  ModelConfig c = tiny_config();
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.moe_intermediate_size = 32;
  c.initializer_range = 0.1;
  c.validate();
  return c;
}

// block_quant_config with a third layer (two MoE layers) and 128 positions: the inference tests' model.
inline ModelConfig block_quant_config_3layers() {
  ModelConfig c = block_quant_config();
  c.num_hidden_layers = 3;
  c.max_position_embeddings = 128;
  c.validate();
  return c;
}

inline std::unique_ptr<Model> random_model(const ModelConfig& c, uint64_t seed) {
  auto m = std::make_unique<Model>(c);
  init_params(m->params, c, seed);
  // Norm weights away from 1 so their gradients are exercised.
  Rng rng(seed + 7);
  for (const TensorSpec& spec : m->params.registry)
    if (spec.shape.size() == 1)
      for (int64_t i = 0; i < spec.numel(); ++i) m->params.ptr(spec)[i] = 1.0f + 0.2f * (rng.uniform() - 0.5f);
  return m;
}

inline std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng.next_u64() % vocab);
  return t;
}

inline std::vector<float> random_vector(int64_t n, float scale, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal() * scale);
  return v;
}

}  // namespace dsmoe::testing
