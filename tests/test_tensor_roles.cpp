// The tensor-role table (model/registry.h): one row per role, unique names, and registry names that resolve back
// to their role, layer and expert on both the HF and the GGUF side.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

#include "model/gguf_model.h"
#include "model/presets.h"
#include "model/registry.h"

namespace {

using namespace dsmoe;

ModelConfig small_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.moe_intermediate_size = 8;
  c.num_hidden_layers = 12;  // two-digit layer indices
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.n_shared_experts = 1;
  c.n_routed_experts = 11;  // two-digit expert indices
  c.num_experts_per_tok = 2;
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 2;  // dense layers between MoE ones
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = true;
  c.validate();
  return c;
}

TEST(TensorRoles, OneRowPerRoleInRoleOrder) {
  const auto table = tensor_role_table();
  ASSERT_EQ(table.size(), kTensorRoleCount);
  for (size_t i = 0; i < kTensorRoleCount; ++i) {
    const TensorRole role = static_cast<TensorRole>(i);
    int rows = 0;
    for (const TensorRoleInfo& info : table) rows += info.role == role;
    EXPECT_EQ(rows, 1) << "role " << i;
    EXPECT_EQ(&role_info(role), &table[i]);
    EXPECT_STREQ(tensor_role_name(role), table[i].name);
  }
}

TEST(TensorRoles, NamesAndPatternsAreUnique) {
  std::set<std::string> names, hf, gguf;
  for (const TensorRoleInfo& info : tensor_role_table()) {
    EXPECT_TRUE(names.insert(info.name).second) << info.name;
    EXPECT_TRUE(hf.insert(info.hf_pattern).second) << info.hf_pattern;
    EXPECT_TRUE(gguf.insert(info.gguf_pattern).second) << info.gguf_pattern;
    // Placeholders: "{i}" exactly for per-layer roles, "{e}" (HF only) exactly for stacked ones.
    const std::string h = info.hf_pattern, g = info.gguf_pattern;
    EXPECT_EQ(h.find("{i}") != std::string::npos, info.per_layer()) << h;
    EXPECT_EQ(g.find("{i}") != std::string::npos, info.per_layer()) << g;
    EXPECT_EQ(h.find("{e}") != std::string::npos, info.stacked) << h;
    EXPECT_EQ(g.find("{e}"), std::string::npos) << g;
    if (info.stacked) {
      EXPECT_EQ(info.rank(), 3) << info.name;
    }
    EXPECT_GE(info.rank(), 1) << info.name;
  }
}

// Every registry tensor's names resolve to its own role, layer and expert, and back to the same names.
void expect_round_trip(const ModelConfig& c, ExpertSlice slice = {}) {
  const std::vector<TensorSpec> registry = build_registry(c, slice);
  std::set<std::string> hf_seen, gguf_seen;
  for (const TensorSpec& spec : registry) {
    const std::string gguf = gguf_tensor_name(spec);
    EXPECT_TRUE(gguf_seen.insert(gguf).second) << gguf;
    const auto g = role_from_gguf_name(gguf);
    ASSERT_TRUE(g.has_value()) << gguf;
    EXPECT_EQ(g->role, spec.role) << gguf;
    EXPECT_EQ(g->layer, spec.layer) << gguf;
    EXPECT_EQ(g->expert, -1) << gguf;
    EXPECT_EQ(gguf_tensor_name(g->role, g->layer), gguf);

    EXPECT_EQ(spec.name, hf_tensor_name(spec.role, spec.layer));
    for (int64_t e = 0; e < std::max<int64_t>(1, spec.n_stacked); ++e) {
      const std::string hf = spec.n_stacked ? spec.hf_name(e) : spec.hf_name();
      EXPECT_TRUE(hf_seen.insert(hf).second) << hf;
      const auto h = role_from_hf_name(hf);
      ASSERT_TRUE(h.has_value()) << hf;
      EXPECT_EQ(h->role, spec.role) << hf;
      EXPECT_EQ(h->layer, spec.layer) << hf;
      EXPECT_EQ(h->expert, spec.n_stacked ? spec.first_expert + e : -1) << hf;
      EXPECT_EQ(hf_tensor_name(h->role, h->layer, h->expert), hf);
    }
    // The shape rule: stacked experts lead with the experts held, HF tensors are one expert each.
    EXPECT_EQ(static_cast<int>(spec.shape.size()), role_info(spec.role).rank()) << spec.name;
    EXPECT_EQ(spec.hf_shape().size() + (spec.n_stacked ? 1 : 0), spec.shape.size()) << spec.name;
  }
}

TEST(TensorRoles, SmallConfigNamesRoundTrip) {
  const ModelConfig c = small_config();
  expect_round_trip(c);
  expect_round_trip(c, ExpertSlice{3, 8});  // expert parallelism: experts 3..10, two-digit indices
  ModelConfig untied = c;
  untied.tie_word_embeddings = false;
  untied.n_shared_experts = 0;
  expect_round_trip(untied);
}

TEST(TensorRoles, Preset16BNamesRoundTrip) {
  const ModelConfig c = model_preset("deepseek-moe-16b");
  expect_round_trip(c);
  const std::vector<TensorSpec> registry = build_registry(c);
  // Parameters: the registry's tensors sum to the config's count (the registry's shapes are the table's rules).
  int64_t total = 0;
  for (const TensorSpec& spec : registry) total += spec.numel();
  EXPECT_EQ(total, c.n_params());
  // Order: embedding first, then layer 0 (dense) in role order, ..., final_norm and lm_head last.
  ASSERT_GE(registry.size(), 10u);
  EXPECT_EQ(registry.front().role, TensorRole::embedding);
  EXPECT_EQ(registry[1].name, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(registry[7].name, "model.layers.0.mlp.gate_proj.weight");
  EXPECT_EQ(registry[10].name, "model.layers.1.input_layernorm.weight");
  EXPECT_EQ(registry[registry.size() - 2].role, TensorRole::final_norm);
  EXPECT_EQ(registry.back().role, TensorRole::lm_head);
}

TEST(TensorRoles, KnownNamesAndNonMatches) {
  auto g = role_from_gguf_name("blk.27.ffn_down_exps.weight");
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->role, TensorRole::expert_down);
  EXPECT_EQ(g->layer, 27);
  g = role_from_gguf_name("output.weight");
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->role, TensorRole::lm_head);
  auto h = role_from_hf_name("model.layers.5.mlp.experts.63.up_proj.weight");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->role, TensorRole::expert_up);
  EXPECT_EQ(h->layer, 5);
  EXPECT_EQ(h->expert, 63);
  h = role_from_hf_name("model.layers.5.mlp.gate.weight");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->role, TensorRole::router);
  for (const char* bad : {"blk.01.attn_q.weight", "blk..attn_q.weight", "blk.x.attn_q.weight", "blk.1.attn_q",
                          "blk.1.attn_q.weightx", "token_embd", "output.bias", "rope_freqs.weight"})
    EXPECT_FALSE(role_from_gguf_name(bad).has_value()) << bad;
  for (const char* bad : {"model.layers.1.mlp.experts.01.up_proj.weight", "model.layers.1.mlp.experts.up_proj.weight",
                          "model.layers.1.self_attn.rotary_emb.inv_freq", "lm_head.weight.extra", ""})
    EXPECT_FALSE(role_from_hf_name(bad).has_value()) << bad;
}

TEST(TensorRoles, FactsOfTheRoles) {
  // The facts the GGUF writer and the inference model read (they used to be spelled out per file).
  for (const TensorRoleInfo& info : tensor_role_table()) {
    const bool norm_or_router = info.rank() == 1 || info.role == TensorRole::router;
    EXPECT_EQ(info.always_f32, norm_or_router) << info.name;
    EXPECT_EQ(info.qk_permuted, info.role == TensorRole::attn_q || info.role == TensorRole::attn_k) << info.name;
    EXPECT_EQ(info.token_read == TokenRead::top_k, info.stacked) << info.name;
    EXPECT_EQ(info.token_read == TokenRead::one_row, info.role == TensorRole::embedding) << info.name;
  }
  const std::set<TensorRole> keep_8bit = {TensorRole::embedding, TensorRole::lm_head, TensorRole::shared_gate,
                                          TensorRole::shared_up, TensorRole::shared_down};
  for (const TensorRoleInfo& info : tensor_role_table())
    EXPECT_EQ(info.keep_8bit, keep_8bit.count(info.role) > 0) << info.name;
}

}  // namespace
