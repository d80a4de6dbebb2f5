#include "model/registry.h"

#include <iterator>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace dsmoe {

namespace {

using enum Dim;
constexpr RolePlace kModel = RolePlace::model, kUntied = RolePlace::untied_model, kLayer = RolePlace::every_layer,
                    kDense = RolePlace::dense_layer, kMoe = RolePlace::moe_layer, kShared = RolePlace::shared_experts;
constexpr TokenRead kAll = TokenRead::all, kOneRow = TokenRead::one_row, kTopK = TokenRead::top_k;

// The role table. Columns: role, name, HF pattern, GGUF pattern, place, shape, stacked, qk_permuted, always_f32,
// keep_8bit, token_read.
// clang-format off
constexpr TensorRoleInfo kRoles[] = {
    {TensorRole::embedding, "embedding", "model.embed_tokens.weight", "token_embd.weight", kModel,
     {vocab, hidden, none}, false, false, false, true, kOneRow},
    {TensorRole::attn_norm, "attn_norm", "model.layers.{i}.input_layernorm.weight", "blk.{i}.attn_norm.weight", kLayer,
     {hidden, none, none}, false, false, true, false, kAll},
    {TensorRole::attn_q, "attn_q", "model.layers.{i}.self_attn.q_proj.weight", "blk.{i}.attn_q.weight", kLayer,
     {q_dim, hidden, none}, false, true, false, false, kAll},
    {TensorRole::attn_k, "attn_k", "model.layers.{i}.self_attn.k_proj.weight", "blk.{i}.attn_k.weight", kLayer,
     {kv_dim, hidden, none}, false, true, false, false, kAll},
    {TensorRole::attn_v, "attn_v", "model.layers.{i}.self_attn.v_proj.weight", "blk.{i}.attn_v.weight", kLayer,
     {kv_dim, hidden, none}, false, false, false, false, kAll},
    {TensorRole::attn_o, "attn_o", "model.layers.{i}.self_attn.o_proj.weight", "blk.{i}.attn_output.weight", kLayer,
     {hidden, q_dim, none}, false, false, false, false, kAll},
    {TensorRole::ffn_norm, "ffn_norm", "model.layers.{i}.post_attention_layernorm.weight", "blk.{i}.ffn_norm.weight",
     kLayer, {hidden, none, none}, false, false, true, false, kAll},
    {TensorRole::mlp_gate, "mlp_gate", "model.layers.{i}.mlp.gate_proj.weight", "blk.{i}.ffn_gate.weight", kDense,
     {dense_ffn, hidden, none}, false, false, false, false, kAll},
    {TensorRole::mlp_up, "mlp_up", "model.layers.{i}.mlp.up_proj.weight", "blk.{i}.ffn_up.weight", kDense,
     {dense_ffn, hidden, none}, false, false, false, false, kAll},
    {TensorRole::mlp_down, "mlp_down", "model.layers.{i}.mlp.down_proj.weight", "blk.{i}.ffn_down.weight", kDense,
     {hidden, dense_ffn, none}, false, false, false, false, kAll},
    {TensorRole::router, "router", "model.layers.{i}.mlp.gate.weight", "blk.{i}.ffn_gate_inp.weight", kMoe,
     {experts, hidden, none}, false, false, true, false, kAll},
    {TensorRole::expert_gate, "expert_gate", "model.layers.{i}.mlp.experts.{e}.gate_proj.weight",
     "blk.{i}.ffn_gate_exps.weight", kMoe, {experts_held, expert_ffn, hidden}, true, false, false, false, kTopK},
    {TensorRole::expert_up, "expert_up", "model.layers.{i}.mlp.experts.{e}.up_proj.weight",
     "blk.{i}.ffn_up_exps.weight", kMoe, {experts_held, expert_ffn, hidden}, true, false, false, false, kTopK},
    {TensorRole::expert_down, "expert_down", "model.layers.{i}.mlp.experts.{e}.down_proj.weight",
     "blk.{i}.ffn_down_exps.weight", kMoe, {experts_held, hidden, expert_ffn}, true, false, false, false, kTopK},
    {TensorRole::shared_gate, "shared_gate", "model.layers.{i}.mlp.shared_experts.gate_proj.weight",
     "blk.{i}.ffn_gate_shexp.weight", kShared, {shared_ffn, hidden, none}, false, false, false, true, kAll},
    {TensorRole::shared_up, "shared_up", "model.layers.{i}.mlp.shared_experts.up_proj.weight",
     "blk.{i}.ffn_up_shexp.weight", kShared, {shared_ffn, hidden, none}, false, false, false, true, kAll},
    {TensorRole::shared_down, "shared_down", "model.layers.{i}.mlp.shared_experts.down_proj.weight",
     "blk.{i}.ffn_down_shexp.weight", kShared, {hidden, shared_ffn, none}, false, false, false, true, kAll},
    {TensorRole::final_norm, "final_norm", "model.norm.weight", "output_norm.weight", kModel, {hidden, none, none},
     false, false, true, false, kAll},
    {TensorRole::lm_head, "lm_head", "lm_head.weight", "output.weight", kUntied, {vocab, hidden, none}, false, false,
     false, true, kAll},
};
// clang-format on

constexpr bool rows_in_role_order() {
  if (std::size(kRoles) != kTensorRoleCount) return false;
  for (size_t i = 0; i < std::size(kRoles); ++i)
    if (static_cast<size_t>(kRoles[i].role) != i) return false;
  return true;
}
static_assert(rows_in_role_order(), "the role table needs one row per TensorRole, in enum order");

// A name pattern with "{i}" / "{e}" filled in (a negative index keeps its placeholder).
std::string fill(const char* pattern, int64_t layer, int64_t expert) {
  std::string out = pattern;
  for (auto [slot, value] : {std::pair{"{i}", layer}, std::pair{"{e}", expert}})
    if (const size_t at = out.find(slot); at != std::string::npos && value >= 0)
      out.replace(at, 3, std::to_string(value));
  return out;
}

// Matches `name` against a pattern: placeholders take a decimal index without leading zeros (so that filling the
// pattern again gives the name back).
bool match(const char* pattern, const std::string& name, int64_t& layer, int64_t& expert) {
  layer = expert = -1;
  size_t n = 0;
  for (const char* p = pattern; *p != '\0';) {
    if (p[0] == '{' && (p[1] == 'i' || p[1] == 'e') && p[2] == '}') {
      const size_t begin = n;
      int64_t value = 0;
      while (n < name.size() && n - begin < 9 && name[n] >= '0' && name[n] <= '9')
        value = value * 10 + (name[n++] - '0');
      if (n == begin || (name[begin] == '0' && n - begin > 1)) return false;
      (p[1] == 'i' ? layer : expert) = value;
      p += 3;
      continue;
    }
    if (n >= name.size() || name[n] != *p) return false;
    ++n, ++p;
  }
  return n == name.size();
}

std::optional<TensorNameMatch> match_any(const std::string& name, const char* TensorRoleInfo::*pattern) {
  for (const TensorRoleInfo& info : kRoles) {
    TensorNameMatch m{info.role};
    if (match(info.*pattern, name, m.layer, m.expert)) return m;
  }
  return std::nullopt;
}

}  // namespace

int TensorRoleInfo::rank() const {
  int r = 0;
  while (r < 3 && shape[r] != Dim::none) ++r;
  return r;
}

std::span<const TensorRoleInfo> tensor_role_table() { return kRoles; }

const TensorRoleInfo& role_info(TensorRole role) {
  const size_t i = static_cast<size_t>(role);
  check(i < kTensorRoleCount, "unknown tensor role {}", i);
  return kRoles[i];
}

const char* tensor_role_name(TensorRole role) { return role_info(role).name; }

std::string hf_tensor_name(TensorRole role, int64_t layer, int64_t expert) {
  return fill(role_info(role).hf_pattern, layer, expert);
}

std::string gguf_tensor_name(TensorRole role, int64_t layer) { return fill(role_info(role).gguf_pattern, layer, -1); }

std::optional<TensorNameMatch> role_from_hf_name(const std::string& name) {
  return match_any(name, &TensorRoleInfo::hf_pattern);
}

std::optional<TensorNameMatch> role_from_gguf_name(const std::string& name) {
  return match_any(name, &TensorRoleInfo::gguf_pattern);
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
  const int64_t E = c.n_routed_experts;
  check(slice.all() || (slice.first >= 0 && slice.count >= 1 && slice.first + slice.count <= E),
        "expert slice [{}, {}) outside the model's {} routed experts", slice.first, slice.first + slice.count, E);
  const int64_t held = slice.all() ? E : slice.count, first = slice.all() ? 0 : slice.first;
  auto size_of = [&](Dim dim) -> int64_t {
    switch (dim) {
      case Dim::vocab: return c.vocab_size;
      case Dim::hidden: return c.hidden_size;
      case Dim::q_dim: return c.num_attention_heads * c.head_dim();
      case Dim::kv_dim: return c.kv_dim();
      case Dim::dense_ffn: return c.intermediate_size;
      case Dim::experts: return E;
      case Dim::experts_held: return held;
      case Dim::expert_ffn: return c.moe_intermediate_size;
      case Dim::shared_ffn: return c.shared_width();
      case Dim::none: break;
    }
    fail("registry: no size for dimension {}", static_cast<int>(dim));
  };
  auto present = [&](RolePlace place, int64_t layer) {
    switch (place) {
      case RolePlace::model: return true;
      case RolePlace::untied_model: return !c.tie_word_embeddings;
      case RolePlace::every_layer: return true;
      case RolePlace::dense_layer: return !c.is_moe_layer(layer);
      case RolePlace::moe_layer: return c.is_moe_layer(layer);
      case RolePlace::shared_experts: return c.is_moe_layer(layer) && c.shared_width() > 0;
    }
    return false;
  };
  std::vector<TensorSpec> r;
  auto add = [&](const TensorRoleInfo& info, int64_t layer) {
    if (!present(info.place, layer)) return;
    std::vector<int64_t> shape;
    for (int k = 0; k < info.rank(); ++k) shape.push_back(size_of(info.shape[k]));
    const int64_t stacked = info.stacked ? held : 0;
    r.push_back(TensorSpec{hf_tensor_name(info.role, layer), info.role, layer, std::move(shape), stacked, 0,
                           stacked > 0 ? first : 0});
  };
  // Table order is registry order: a model-level role where its row stands, each run of per-layer rows once per
  // layer (embedding; layer 0's tensors, layer 1's, ...; final_norm, lm_head).
  const std::span<const TensorRoleInfo> table = tensor_role_table();
  for (size_t i = 0; i < table.size();) {
    if (!table[i].per_layer()) {
      add(table[i++], -1);
      continue;
    }
    size_t end = i;
    while (end < table.size() && table[end].per_layer()) ++end;
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer)
      for (size_t k = i; k < end; ++k) add(table[k], layer);
    i = end;
  }

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
