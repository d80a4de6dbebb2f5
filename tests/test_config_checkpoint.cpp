// Config parsing and validation, the tensor registry, and HF checkpoint loading/saving with their error paths.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "check.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model/presets.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace dsmoe;
using namespace dsmoe::testing;
using json = nlohmann::json;

namespace {

// The released deepseek-moe-16b-base config (reference §2.1).
json config_16b() {
  return json::parse(R"({"architectures": ["DeepseekForCausalLM"], "model_type": "deepseek",
    "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408,
    "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16, "n_shared_experts": 2,
    "n_routed_experts": 64, "num_experts_per_tok": 6, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "norm_topk_prob": false, "scoring_func": "softmax", "hidden_act": "silu", "rms_norm_eps": 1e-06,
    "rope_theta": 10000, "rope_scaling": null, "max_position_embeddings": 4096, "attention_bias": false,
    "attention_dropout": 0.0, "initializer_range": 0.02, "pretraining_tp": 1, "bos_token_id": 100000,
    "eos_token_id": 100001, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0", "use_cache": true,
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekConfig"}})");
}

// The file above is the released config as HF ships it (extra keys included); the presets hold it once, and the
// two must agree.
TEST(Config, The16BPresetsAreTheReleasedConfig) {
  const ModelConfig released = config_from_json(config_16b(), "16b");
  EXPECT_EQ(model_preset("deepseek-moe-16b-base"), released);
  EXPECT_EQ(model_preset("deepseek-moe-16b-chat"), released);
}

std::string error_of(const json& j) {
  try {
    config_from_json(j, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("dsmoe_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string load_error(const fs::path& dir) {
  try {
    model_load(dir.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Config, Released16BParsesWithHFDefaults) {
  ModelConfig c = config_from_json(config_16b(), "16b");
  EXPECT_EQ(c.n_moe_layers(), 27);
  EXPECT_DOUBLE_EQ(c.aux_loss_alpha, 0.001);  // absent in the base config: class default
  EXPECT_TRUE(c.seq_aux);
  // Reference §1.9: 16,375,728,128 parameters; 2,828,650,496 active per token when the embedding is counted
  // (n_active_params leaves the embedding lookup out: it is not a matmul).
  EXPECT_EQ(c.n_params(), 16375728128ll);
  EXPECT_EQ(c.n_active_params() + c.vocab_size * c.hidden_size, 2828650496ll);
  size_t hf_tensors = 0;
  for (const TensorSpec& s : build_registry(c)) hf_tensors += s.n_stacked ? s.n_stacked : 1;
  EXPECT_EQ(hf_tensors, 5466u);
}

TEST(Config, RoundTripsThroughJson) {
  ModelConfig c = tiny_config();
  c.device_aux_loss_alpha = 0.05;
  c.n_expert_groups = 2;
  c.capacity_factor = 1.25;
  ModelConfig back = config_from_json(config_to_json(c), "roundtrip");
  EXPECT_TRUE(back == c);
  EXPECT_EQ(config_to_json(c).at("n_expert_groups"), 2);
}

TEST(Config, NullExpertsMeansDenseAndAbsentKvHeadsMeansMHA) {
  json j = config_16b();
  j["n_routed_experts"] = nullptr;
  j["n_shared_experts"] = nullptr;
  j.erase("num_key_value_heads");
  ModelConfig c = config_from_json(j, "dense");
  EXPECT_EQ(c.n_moe_layers(), 0);
  EXPECT_EQ(c.num_key_value_heads, 16);
}

TEST(Config, ErrorsNameTheField) {
  struct Case {
    const char* key;
    json value;
    const char* expect;
  };
  const Case cases[] = {
      {"num_attention_heads", 15, "num_attention_heads"},
      {"num_key_value_heads", 5, "num_key_value_heads"},
      {"num_experts_per_tok", 65, "num_experts_per_tok"},
      {"n_expert_groups", 3, "n_expert_groups"},
      {"hidden_size", "2048", "hidden_size"},
      {"norm_topk_prob", 1, "norm_topk_prob"},
      {"scoring_func", "sigmoid", "scoring_func"},
      {"rope_scaling", json{{"type", "linear"}}, "rope_scaling"},
      {"n_routed_expert", 64, "unknown config key 'n_routed_expert'"},
      {"capacity_factor", -1, "capacity_factor"},
      {"intermediate_size", 1.5, "intermediate_size"},
      {"model_type", "llama", "model_type"},
  };
  for (const Case& c : cases) {
    json j = config_16b();
    j[c.key] = c.value;
    EXPECT_NE(error_of(j).find(c.expect), std::string::npos) << c.key << ": " << error_of(j);
  }
  json missing = config_16b();
  missing.erase("vocab_size");
  EXPECT_NE(error_of(missing).find("missing required config field 'vocab_size'"), std::string::npos);
  EXPECT_NE(error_of(json::array()).find("JSON object"), std::string::npos);
}

TEST(Config, BadJsonFileIsAClearError) {
  fs::path dir = temp_dir("badjson");
  std::ofstream(dir / "config.json") << "{\"vocab_size\": 12,";
  try {
    config_from_file((dir / "config.json").string());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid JSON"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, SaveLoadRoundTripF32ExactAndBf16Close) {
  ModelConfig c = tiny_config();
  auto m = random_model(c, 5);
  fs::path dir = temp_dir("roundtrip");
  model_save(*m, (dir / "f32").string());
  auto back = model_load((dir / "f32").string());
  EXPECT_EQ(0, std::memcmp(back->params.arena.data(), m->params.arena.data(), m->params.arena.size() * 4));
  model_save(*m, (dir / "bf16").string(), io::DType::BF16);
  auto bf = model_load((dir / "bf16").string());
  DSMOE_EXPECT_CLOSE("bf16 weights", bf->params.arena.data(), m->params.arena.data(), m->params.arena.size(), 4e-3);
  // Sharded with an index, f16.
  model_save(*m, (dir / "sharded").string(), io::DType::F16, 4096);
  EXPECT_TRUE(fs::exists(dir / "sharded" / "model.safetensors.index.json"));
  auto sh = model_load((dir / "sharded").string());
  DSMOE_EXPECT_CLOSE("f16 sharded weights", sh->params.arena.data(), m->params.arena.data(), m->params.arena.size(),
                     1e-3);
  // Experts are stored one HF tensor per expert.
  io::SafetensorsArchive a = io::SafetensorsArchive::open((dir / "f32").string());
  EXPECT_NE(a.find("model.layers.1.mlp.experts.5.down_proj.weight"), nullptr);
  EXPECT_NE(a.find("model.layers.1.mlp.gate.weight"), nullptr);
  EXPECT_EQ(a.metadata().at("format"), "pt");
}

TEST(Checkpoint, LoaderErrorsNameTheTensor) {
  ModelConfig c = tiny_config();
  auto m = random_model(c, 6);
  fs::path dir = temp_dir("errors");
  model_save(*m, (dir / "good").string());

  // Wrong shape: the config says wider experts than the file holds.
  fs::copy(dir / "good", dir / "shape", fs::copy_options::recursive);
  ModelConfig wide = c;
  wide.moe_intermediate_size = 9;
  config_write_file(wide, (dir / "shape" / "config.json").string());
  EXPECT_NE(load_error(dir / "shape").find("mlp.experts.0.gate_proj.weight has shape [8, 16]"), std::string::npos)
      << load_error(dir / "shape");

  // Missing tensor: the config has a shared expert the file lacks -> and unexpected tensor: the reverse.
  ModelConfig no_shared = c;
  no_shared.n_shared_experts = 0;
  Model ns(no_shared);
  model_save(ns, (dir / "missing").string());
  config_write_file(c, (dir / "missing" / "config.json").string());
  EXPECT_NE(load_error(dir / "missing").find("missing tensor model.layers.1.mlp.shared_experts"), std::string::npos)
      << load_error(dir / "missing");
  fs::copy(dir / "good", dir / "unexpected", fs::copy_options::recursive);
  config_write_file(no_shared, (dir / "unexpected" / "config.json").string());
  EXPECT_NE(load_error(dir / "unexpected").find("unexpected tensor model.layers.1.mlp.shared_experts"),
            std::string::npos)
      << load_error(dir / "unexpected");

  // Truncated file.
  fs::copy(dir / "good", dir / "truncated", fs::copy_options::recursive);
  fs::resize_file(dir / "truncated" / "model.safetensors", fs::file_size(dir / "good" / "model.safetensors") - 100);
  EXPECT_NE(load_error(dir / "truncated").find("truncated"), std::string::npos) << load_error(dir / "truncated");

  // No weights at all, and no config.
  fs::create_directories(dir / "empty");
  EXPECT_NE(load_error(dir / "empty").find("config.json"), std::string::npos);
  fs::create_directories(dir / "noweights");
  config_write_file(c, (dir / "noweights" / "config.json").string());
  EXPECT_FALSE(load_error(dir / "noweights").empty());
  fs::remove_all(dir);
}
