#include "model/registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace dsmoe {

const char* tensor_role_name(TensorRole role) {
  switch (role) {
    case TensorRole::embedding: return "embedding";
    case TensorRole::attn_norm: return "attn_norm";
    case TensorRole::attn_q: return "attn_q";
    case TensorRole::attn_k: return "attn_k";
    case TensorRole::attn_v: return "attn_v";
    case TensorRole::attn_o: return "attn_o";
    case TensorRole::ffn_norm: return "ffn_norm";
    case TensorRole::mlp_gate: return "mlp_gate";
    case TensorRole::mlp_up: return "mlp_up";
    case TensorRole::mlp_down: return "mlp_down";
    case TensorRole::router: return "router";
    case TensorRole::expert_gate: return "expert_gate";
    case TensorRole::expert_up: return "expert_up";
    case TensorRole::expert_down: return "expert_down";
    case TensorRole::shared_gate: return "shared_gate";
    case TensorRole::shared_up: return "shared_up";
    case TensorRole::shared_down: return "shared_down";
    case TensorRole::final_norm: return "final_norm";
    case TensorRole::lm_head: return "lm_head";
  }
  return "?";
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string TensorSpec::hf_name(int64_t expert) const {
  if (n_stacked == 0) return name;
  std::string out = name;
  out.replace(out.find("{e}"), 3, std::to_string(first_expert + expert));
  return out;
}

std::vector<int64_t> TensorSpec::hf_shape() const {
  if (n_stacked == 0) return shape;
  return std::vector<int64_t>(shape.begin() + 1, shape.end());
}

std::string shape_str(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::vector<TensorSpec> build_registry(const ModelConfig& c, ExpertSlice slice) {
  const int64_t d = c.hidden_size, q_dim = c.num_attention_heads * c.head_dim(), kv_dim = c.kv_dim();
  const int64_t E = c.n_routed_experts, Fe = c.moe_intermediate_size, Fs = c.shared_width();
  check(slice.all() || (slice.first >= 0 && slice.count >= 1 && slice.first + slice.count <= E),
        "expert slice [{}, {}) outside the model's {} routed experts", slice.first, slice.first + slice.count, E);
  const int64_t held = slice.all() ? E : slice.count, first = slice.all() ? 0 : slice.first;
  std::vector<TensorSpec> r;
  auto add = [&](std::string name, TensorRole role, int64_t layer, std::vector<int64_t> shape, int64_t stacked = 0) {
    r.push_back(TensorSpec{std::move(name), role, layer, std::move(shape), stacked, 0, stacked > 0 ? first : 0});
  };
  add("model.embed_tokens.weight", TensorRole::embedding, -1, {c.vocab_size, d});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    add(p + "input_layernorm.weight", TensorRole::attn_norm, i, {d});
    add(p + "self_attn.q_proj.weight", TensorRole::attn_q, i, {q_dim, d});
    add(p + "self_attn.k_proj.weight", TensorRole::attn_k, i, {kv_dim, d});
    add(p + "self_attn.v_proj.weight", TensorRole::attn_v, i, {kv_dim, d});
    add(p + "self_attn.o_proj.weight", TensorRole::attn_o, i, {d, q_dim});
    add(p + "post_attention_layernorm.weight", TensorRole::ffn_norm, i, {d});
    if (!c.is_moe_layer(i)) {
      add(p + "mlp.gate_proj.weight", TensorRole::mlp_gate, i, {c.intermediate_size, d});
      add(p + "mlp.up_proj.weight", TensorRole::mlp_up, i, {c.intermediate_size, d});
      add(p + "mlp.down_proj.weight", TensorRole::mlp_down, i, {d, c.intermediate_size});
      continue;
    }
    add(p + "mlp.gate.weight", TensorRole::router, i, {E, d});
    add(p + "mlp.experts.{e}.gate_proj.weight", TensorRole::expert_gate, i, {held, Fe, d}, held);
    add(p + "mlp.experts.{e}.up_proj.weight", TensorRole::expert_up, i, {held, Fe, d}, held);
    add(p + "mlp.experts.{e}.down_proj.weight", TensorRole::expert_down, i, {held, d, Fe}, held);
    if (Fs > 0) {
      add(p + "mlp.shared_experts.gate_proj.weight", TensorRole::shared_gate, i, {Fs, d});
      add(p + "mlp.shared_experts.up_proj.weight", TensorRole::shared_up, i, {Fs, d});
      add(p + "mlp.shared_experts.down_proj.weight", TensorRole::shared_down, i, {d, Fs});
    }
  }
  add("model.norm.weight", TensorRole::final_norm, -1, {d});
  if (!c.tie_word_embeddings) add("lm_head.weight", TensorRole::lm_head, -1, {c.vocab_size, d});

  // Arena offsets, each tensor aligned to 16 floats (64 bytes) so every view starts on a cache line.
  size_t offset = 0;
  for (TensorSpec& spec : r) {
    spec.offset = offset;
    offset += (static_cast<size_t>(spec.numel()) + 15) / 16 * 16;
  }
  return r;
}

size_t registry_numel(const std::vector<TensorSpec>& registry) {
  if (registry.empty()) return 0;
  const TensorSpec& last = registry.back();
  return last.offset + (static_cast<size_t>(last.numel()) + 15) / 16 * 16;
}

}  // namespace dsmoe
