// Parameter and FLOPs accounting (model/flops.h) against hand-computed values and the paper's arithmetic
// (reference deepseekmoe.md §4), and the model presets (model/presets.h).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "model/config.h"
#include "model/flops.h"
#include "model/model.h"
#include "model/presets.h"

using namespace dsmoe;
using json = nlohmann::json;

namespace {

// Dense: d 8, V 16, 2 layers, 2 heads x 4 (MHA), SwiGLU width 21 (8d/3 = 21.3: nominally 1 standard FFN).
ModelConfig tiny_dense() {
  ModelConfig c;
  c.vocab_size = 16;
  c.hidden_size = 8;
  c.intermediate_size = 21;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.validate();
  return c;
}

// MoE: as tiny_dense but GQA with 1 KV head (kv_dim 4), layer 0 dense of width 42 (nominally 2 standard FFNs),
// layer 1 MoE with 1 shared + 4 routed experts of width 6 (3·6/8 = 2.25 eighths -> nominally 1/4), top-2.
ModelConfig tiny_moe() {
  ModelConfig c = tiny_dense();
  c.num_key_value_heads = 1;
  c.intermediate_size = 42;
  c.moe_intermediate_size = 6;
  c.n_shared_experts = 1;
  c.n_routed_experts = 4;
  c.num_experts_per_tok = 2;
  c.first_k_dense_replace = 1;
  c.validate();
  return c;
}

// The printed value's precision: "74.4T" -> the value in T with one decimal.
std::string as_printed(double v, double unit, int decimals, const char* suffix) {
  return fmt::format("{:.{}f}{}", v / unit, decimals, suffix);
}

}  // namespace

TEST(Flops, TinyDenseByHand) {
  const ModelConfig c = tiny_dense();
  const ParamBreakdown p = param_breakdown(c);
  // embed_tokens and lm_head [16, 8] = 128 each; attention 2 x (q, o 8x8 + k, v 8x8) = 2 x 256 = 512;
  // norms 8 x (2·2 + 1) = 40; FFN 2 x 3·8·21 = 2 x 504 = 1008.
  EXPECT_EQ(p.embedding, 128);
  EXPECT_EQ(p.lm_head, 128);
  EXPECT_EQ(p.attention, 512);
  EXPECT_EQ(p.norms, 40);
  EXPECT_EQ(p.router, 0);
  EXPECT_EQ(p.ffn, 1008);
  EXPECT_EQ(p.total(), 1816);
  EXPECT_EQ(p.activated(), 1816);  // a dense model uses every parameter
  EXPECT_EQ(p.total_no_embedding(), 1688);
  EXPECT_EQ(p.activated_no_embedding(), 1688);
  EXPECT_EQ(c.n_params(), 1816);
  EXPECT_EQ(c.n_active_params(), 1688);
  // Paper, l = 4: 6·2·(4·64 + 1·8·64) + 12·2·8·4 + 6·8·16 = 9216 + 768 + 768.
  EXPECT_DOUBLE_EQ(paper_ffn(c).dense_size, 1.0);
  EXPECT_DOUBLE_EQ(paper_flops_per_token(c, 4), 10752.0);
  // Exact, l = 4: 6·(lm_head 128 + attention 512 + FFN 1008) = 9888, + 12·2·4·(2·4) = 768 -> 10656; causal
  // halves the 768.
  EXPECT_DOUBLE_EQ(exact_flops_per_token(c, 4, false), 10656.0);
  EXPECT_DOUBLE_EQ(exact_flops_per_token(c, 4, true), 10272.0);
}

TEST(Flops, TinyMoEByHand) {
  const ModelConfig c = tiny_moe();
  const ParamBreakdown p = param_breakdown(c);
  // attention 2 x (q, o 8x8 + k, v [4, 8]) = 2 x 192 = 384; layer 0 FFN 3·8·42 = 1008; layer 1: router [4, 8] = 32,
  // experts (1 + 4) x 3·8·6 = 5 x 144 = 720, activated (1 + 2) x 144 = 432.
  EXPECT_EQ(p.attention, 384);
  EXPECT_EQ(p.router, 32);
  EXPECT_EQ(p.ffn, 1008 + 720);
  EXPECT_EQ(p.ffn_activated, 1008 + 432);
  EXPECT_EQ(p.total(), 128 + 128 + 384 + 40 + 32 + 1728);      // 2440
  EXPECT_EQ(p.activated(), 128 + 128 + 384 + 40 + 32 + 1440);  // 2152
  EXPECT_EQ(p.total_no_embedding(), 2312);
  EXPECT_EQ(p.activated_no_embedding(), 2024);
  EXPECT_EQ(c.n_params(), 2440);
  EXPECT_EQ(c.n_active_params(), 2024);
  // Paper: nominal dense 3·42/8 = 15.75 -> 16 eighths = 2; expert 1/4; A_ffn = (1 + 2) x 1/4 x 8d² = 384, on both
  // layers (the dense one too): 6·2·(256 + 384) + 768 + 768 = 9216.
  const PaperFfn f = paper_ffn(c);
  EXPECT_DOUBLE_EQ(f.dense_size, 2.0);
  EXPECT_DOUBLE_EQ(f.expert_size, 0.25);
  EXPECT_DOUBLE_EQ(f.activated, 0.75);
  EXPECT_DOUBLE_EQ(paper_flops_per_token(c, 4), 9216.0);
  // Exact: 6·(lm_head 128 + attention 384 + router 32 + FFN 1440) = 11904, + 768 attention (causal: 384).
  EXPECT_DOUBLE_EQ(exact_flops_per_token(c, 4, false), 12672.0);
  EXPECT_DOUBLE_EQ(exact_flops_per_token(c, 4, true), 12288.0);
  // N tokens multiply the per-token count; the attention term stays at l.
  const FlopsReport r = flops_report(c, 4, 10);
  EXPECT_DOUBLE_EQ(r.paper_flops, 92160.0);
  EXPECT_DOUBLE_EQ(r.exact_flops, 126720.0);
  EXPECT_DOUBLE_EQ(r.exact_flops_causal, 122880.0);
}

TEST(Flops, PaperExpertWidthCountsTheRealWidth) {
  ModelConfig c = tiny_moe();
  c.paper_expert_width = 6;
  // Expert = 3·d·6 = 144 params = 144 / 8d² = 0.28125 standard FFNs; A_ffn = 3 x 144 = 432:
  // 6·2·(256 + 432) + 768 + 768 = 9792.
  EXPECT_DOUBLE_EQ(paper_ffn(c).expert_size, 0.28125);
  EXPECT_DOUBLE_EQ(paper_flops_per_token(c, 4), 9792.0);
  // The exact count does not use it.
  EXPECT_DOUBLE_EQ(exact_flops_per_token(c, 4, false), 12672.0);
}

TEST(Flops, CausalHalvesOnlyTheAttentionTerm) {
  const ModelConfig c = config_from_json(model_preset_config("deepseek-moe-16b-base"), "16b");
  for (int64_t l : {1, 512, 4096}) {
    const double full = exact_flops_per_token(c, l, false), causal = exact_flops_per_token(c, l, true);
    const double attention = 12.0 * 28 * 2048 * static_cast<double>(l);
    EXPECT_DOUBLE_EQ(full - causal, attention / 2) << l;
  }
}

TEST(Flops, NominalSizesRoundToEighthsOfAStandardFFN) {
  EXPECT_DOUBLE_EQ(nominal_ffn_size(1408, 2048), 0.25);   // 16B expert (aligned up from 1365.3)
  EXPECT_DOUBLE_EQ(nominal_ffn_size(10944, 2048), 2.0);   // 16B dense layer
  EXPECT_DOUBLE_EQ(nominal_ffn_size(1408, 4096), 0.125);  // 145B expert
  EXPECT_DOUBLE_EQ(nominal_ffn_size(21888, 4096), 2.0);   // 145B / 137B dense layer
  EXPECT_DOUBLE_EQ(nominal_ffn_size(10944, 4096), 1.0);   // GShard 137B expert
  EXPECT_DOUBLE_EQ(nominal_ffn_size(11008, 4096), 1.0);   // DeepSeek 7B, LLaMA2 7B
  EXPECT_DOUBLE_EQ(nominal_ffn_size(22016, 8192), 1.0);   // DeepSeek 67B
  EXPECT_DOUBLE_EQ(nominal_ffn_size(3413, 1280), 1.0);    // 2B standard FFN
  EXPECT_DOUBLE_EQ(nominal_ffn_size(5120, 1280), 1.5);    // GShard x1.5
  EXPECT_DOUBLE_EQ(nominal_ffn_size(853, 1280), 0.25);    // DeepSeekMoE 2B
  EXPECT_DOUBLE_EQ(nominal_ffn_size(54608, 1280), 16.0);  // Dense x16
}

// Reference §4's per-token arithmetic, exactly, and the printed table value at its precision.
TEST(Flops, PaperCountReproducesTheReferenceArithmetic) {
  struct Row {
    const char* preset;
    int64_t l;
    double f_tok;
    const char* printed;
  };
  const Row rows[] = {
      {"deepseek-llm-7b", 4096, 44795166720.0, "183.5T"},
      {"llama2-7b", 4096, 45883588608.0, "187.9T"},
      {"deepseek-moe-16b-base", 4096, 18169724928.0, "74.4T"},
      {"deepseek-moe-16b", 4096, 18169724928.0, "74.4T"},
      {"deepseek-llm-67b", 4096, 502309847040.0, "2057.5T"},
      {"paper-gshard-137b", 4096, 139821318144.0, "572.7T"},
      // Reference §4 prints 6·L·(4d² + A_ffn) = 76,454,510,592 (F_tok 91,453,341,696) for 142B, which is not a
      // multiple of 6·62 = 372: an arithmetic slip. 372·(4 + 8.25)·4096² = 76,453,773,312; both give 374.6T.
      {"paper-deepseekmoe-142b", 4096, 91452604416.0, "374.6T"},
      {"paper-2b-dense", 2048, 1407713280.0, "2.9T"},
      {"paper-2b-switch", 2048, 1407713280.0, "2.9T"},
      {"paper-2b-gshard", 2048, 2115502080.0, "4.3T"},
      {"paper-2b-deepseekmoe", 2048, 2115502080.0, "4.3T"},
      {"paper-2b-gshard-x1.5", 2048, 2823290880.0, "5.8T"},
      {"paper-2b-dense-x16", 2048, 12024545280.0, "24.6T"},
  };
  for (const Row& r : rows) {
    const ModelConfig c = model_preset(r.preset);
    EXPECT_DOUBLE_EQ(paper_flops_per_token(c, r.l), r.f_tok) << r.preset;
    const FlopsReport rep = flops_report(c, r.l, r.l);  // the tables quote FLOPs per l tokens
    EXPECT_DOUBLE_EQ(rep.paper_flops, r.f_tok * static_cast<double>(r.l)) << r.preset;
    EXPECT_EQ(as_printed(rep.paper_flops, 1e12, 1, "T"), r.printed) << r.preset;
  }
  // 145B: the real-width count gives 585.49T; the paper prints 585.6T (0.02% off, reference §4: not reproduced).
  const ModelConfig m145 = model_preset("paper-deepseekmoe-145b");
  EXPECT_DOUBLE_EQ(paper_flops_per_token(m145, 4096), 142941880320.0);
  EXPECT_DOUBLE_EQ(flops_report(m145, 4096, 4096).paper_flops, 585489941790720.0);
  EXPECT_EQ(as_printed(585489941790720.0, 1e12, 1, "T"), "585.5T");
  // Without the width override, 145B would count 1/8 experts: 16 x 1/8 = 2 standard FFNs, GShard 137B's 572.7T.
  ModelConfig nominal145 = m145;
  nominal145.paper_expert_width = 0;
  EXPECT_DOUBLE_EQ(paper_flops_per_token(nominal145, 4096), 139821318144.0);
}

TEST(Flops, ParamsOfTheReleasedAndPaperModels) {
  const ParamBreakdown p16 = param_breakdown(model_preset("deepseek-moe-16b-base"));
  EXPECT_EQ(p16.total(), 16375728128ll);
  EXPECT_EQ(p16.activated(), 2828650496ll);  // with embed_tokens, as the paper's "2.8B"
  EXPECT_EQ(p16.activated_no_embedding(), 2828650496ll - 102400ll * 2048);
  auto billions = [](int64_t v, int decimals) { return as_printed(static_cast<double>(v), 1e9, decimals, "B"); };
  EXPECT_EQ(billions(p16.total(), 1), "16.4B");
  EXPECT_EQ(billions(p16.activated(), 1), "2.8B");
  const ParamBreakdown p145 = param_breakdown(model_preset("paper-deepseekmoe-145b"));
  EXPECT_EQ(billions(p145.total(), 1), "144.6B");
  EXPECT_EQ(billions(p145.activated(), 1), "22.2B");
  EXPECT_EQ(billions(param_breakdown(model_preset("deepseek-llm-7b")).total(), 1), "6.9B");
  EXPECT_EQ(billions(param_breakdown(model_preset("llama2-7b")).total(), 1), "6.7B");
  EXPECT_EQ(billions(param_breakdown(model_preset("deepseek-llm-67b")).total(), 1), "67.4B");
  // Table 2's expert parameters: 9 x 64 x 3·1280·853 and 9 x 8 x 3·1280·853.
  const ParamBreakdown p2b = param_breakdown(model_preset("paper-2b-deepseekmoe"));
  EXPECT_EQ(p2b.ffn, 9ll * 64 * 3 * 1280 * 853);
  EXPECT_EQ(billions(p2b.ffn, 2), "1.89B");
  EXPECT_EQ(billions(p2b.ffn_activated, 2), "0.24B");
  EXPECT_EQ(billions(param_breakdown(model_preset("paper-2b-gshard-x1.5")).ffn, 2), "2.83B");
}

TEST(Flops, TrainFlopsPerTokenIsTheExactFullLengthCount) {
  for (const char* name : {"tiny", "deepseek-moe-16b-base", "deepseek-llm-67b"}) {
    const ModelConfig c = model_preset(name);
    for (int64_t S : {64, 4096}) {
      EXPECT_DOUBLE_EQ(train_flops_per_token(c, S), exact_flops_per_token(c, S, false)) << name;
      // What it computed before the accounting module: 6 x (active params - norms) + 12·L·S·heads·head_dim.
      const double before =
          6.0 * static_cast<double>(c.n_active_params() - c.hidden_size * (1 + 2 * c.num_hidden_layers)) +
          6.0 * c.num_hidden_layers * 2.0 * S * c.num_attention_heads * c.head_dim();
      EXPECT_DOUBLE_EQ(train_flops_per_token(c, S), before) << name;
    }
  }
}

TEST(Flops, BadLengthsAreErrors) {
  const ModelConfig c = tiny_dense();
  expect_error([&] { flops_report(c, 0, 4); }, {"sequence length", "> 0"});
  expect_error([&] { flops_report(c, 4, -1); }, {"token count", "> 0"});
}

TEST(Config, PaperExpertWidthIsAnOptionalValidatedField) {
  json j = model_preset_config("deepseek-moe-16b-base");
  EXPECT_DOUBLE_EQ(config_from_json(j, "absent").paper_expert_width, 0.0);
  // Written only when set: an ordinary model's config.json keeps its keys.
  EXPECT_FALSE(config_to_json(config_from_json(j, "absent")).contains("paper_expert_width"));
  j["paper_expert_width"] = 1408;
  const ModelConfig c = config_from_json(j, "set");
  EXPECT_DOUBLE_EQ(c.paper_expert_width, 1408.0);
  EXPECT_EQ(config_to_json(c).at("paper_expert_width"), 1408.0);
  EXPECT_TRUE(config_from_json(config_to_json(c), "roundtrip") == c);
  EXPECT_FALSE(c == config_from_json(model_preset_config("deepseek-moe-16b-base"), "absent"));
  j["paper_expert_width"] = -1;
  expect_error([&] { config_from_json(j, "neg"); }, {"neg", "paper_expert_width", ">= 0"});
  j["paper_expert_width"] = "wide";
  expect_error([&] { config_from_json(j, "str"); }, {"paper_expert_width", "number"});
}

TEST(Presets, EveryPresetLoadsAndValidates) {
  ASSERT_GE(model_preset_names().size(), 19u);
  for (const std::string& name : model_preset_names()) {
    EXPECT_TRUE(model_preset_exists(name)) << name;
    ModelConfig c;
    EXPECT_NO_THROW(c = model_preset(name)) << name;
    EXPECT_NO_THROW(c.validate()) << name;
    EXPECT_GT(paper_flops_per_token(c, 128), 0.0) << name;
  }
  EXPECT_FALSE(model_preset_exists("nope"));
  expect_error([] { model_preset_config("nope"); }, {"unknown model preset 'nope'", "paper-2b-gshard"});
}

// bench/configs/NAME.json are the presets NAME written out (the PyTorch peer and the shell benchmarks read files):
// each must equal its preset key for key, so a preset change cannot leave a benchmark measuring a stale model.
TEST(Presets, BenchConfigFilesAreThePresets) {
  const std::filesystem::path dir = DSMOE_BENCH_CONFIG_DIR;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    ++files;
    const std::string name = entry.path().stem().string();
    ASSERT_TRUE(model_preset_exists(name)) << entry.path() << " has no preset of its name (src/model/presets.cpp)";
    std::ifstream in(entry.path());
    const json file = json::parse(in);
    json preset = model_preset_config(name);
    preset.erase("vocab_from_tokenizer");
    EXPECT_EQ(file, preset) << entry.path() << " differs from preset " << name << "; regenerate it:\n"
                            << preset.dump() << "\n";
  }
  EXPECT_GE(files, 3) << "bench configs not found in " << dir;
}

TEST(Presets, The16BVariantsDifferOnlyInInitStd) {
  json a = model_preset_config("deepseek-moe-16b"), b = model_preset_config("deepseek-moe-16b-base");
  EXPECT_DOUBLE_EQ(a.at("initializer_range").get<double>(), 0.006);  // the paper's init std
  EXPECT_DOUBLE_EQ(b.at("initializer_range").get<double>(), 0.02);   // the released config
  a.erase("initializer_range");
  b.erase("initializer_range");
  EXPECT_EQ(a, b);
  EXPECT_EQ(model_preset_config("deepseek-moe-16b-chat"), model_preset_config("deepseek-moe-16b-base"));
}

TEST(Presets, PaperModelsHaveThePaperShapes) {
  const ModelConfig m2b = model_preset("paper-2b-deepseekmoe");
  EXPECT_EQ(m2b.num_hidden_layers, 9);
  EXPECT_EQ(m2b.hidden_size, 1280);
  EXPECT_EQ(m2b.head_dim(), 128);
  EXPECT_EQ(m2b.n_moe_layers(), 9);  // every FFN is MoE
  EXPECT_EQ(m2b.n_shared_experts + m2b.n_routed_experts, 64);
  EXPECT_EQ(m2b.n_shared_experts + m2b.num_experts_per_tok, 8);
  const ModelConfig m145 = model_preset("paper-deepseekmoe-145b"), m142 = model_preset("paper-deepseekmoe-142b");
  EXPECT_EQ(m145.n_moe_layers(), 61);
  EXPECT_DOUBLE_EQ(m145.paper_expert_width, 1408.0);
  EXPECT_DOUBLE_EQ(m142.paper_expert_width, 1408.0);
  EXPECT_EQ(m142.n_shared_experts, 2);
  EXPECT_EQ(m142.num_experts_per_tok, 6);
  EXPECT_DOUBLE_EQ(model_preset("paper-gshard-137b").paper_expert_width, 0.0);
  EXPECT_EQ(model_preset("deepseek-llm-67b").num_key_value_heads, 8);
  EXPECT_EQ(model_preset("paper-2b-dense-x16").intermediate_size, 16 * 3413);
}
