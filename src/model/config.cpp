#include "model/config.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/flops.h"

namespace dsmoe {
namespace {

using json = nlohmann::json;

// Keys of HF's generic PretrainedConfig / DeepseekConfig that carry no meaning for the computation here.
// They are accepted so that configs written by transformers load; anything else is an error (a typo such as
// "n_routed_expert" must not silently become a dense model).
const std::set<std::string>& ignorable_hf_keys() {
  static const std::set<std::string> keys = {"architectures",
                                             "model_type",
                                             "auto_map",
                                             "torch_dtype",
                                             "transformers_version",
                                             "_name_or_path",
                                             "use_cache",
                                             "pad_token_id",
                                             "pretraining_tp",
                                             "output_attentions",
                                             "output_hidden_states",
                                             "return_dict",
                                             "is_encoder_decoder",
                                             "is_decoder",
                                             "add_cross_attention",
                                             "tie_encoder_decoder",
                                             "chunk_size_feed_forward",
                                             "tokenizer_class",
                                             "prefix",
                                             "sep_token_id",
                                             "decoder_start_token_id",
                                             "task_specific_params",
                                             "problem_type",
                                             "id2label",
                                             "label2id",
                                             "quantization_config",
                                             "_attn_implementation",
                                             "_attn_implementation_autoset",
                                             "torchscript",
                                             "use_bfloat16",
                                             "pruned_heads",
                                             "finetuning_task",
                                             "bad_words_ids",
                                             "num_beams",
                                             "max_length",
                                             "min_length",
                                             "do_sample",
                                             "temperature",
                                             "top_k",
                                             "top_p"};
  return keys;
}

// Keys that are accepted only with the value our computation implements.
void check_fixed_key(const json& j, const std::string& key, const json& expected, const std::string& source) {
  if (!j.contains(key)) return;
  const json& value = j.at(key);
  bool ok = value == expected || (expected.is_null() && value.is_null());
  if (expected.is_number() && value.is_number()) ok = value.get<double>() == expected.get<double>();
  check(ok, "{}: config field '{}' = {} is not supported (only {})", source, key, value.dump(), expected.dump());
}

struct Parser {
  const json& j;
  const std::string& source;
  std::set<std::string> seen;

  template <typename T>
  void operator()(const char* name, T& member, FieldNeed need, const char* /*help*/) {
    seen.insert(name);
    auto it = j.find(name);
    if (it == j.end()) {
      check(need != FieldNeed::required, "{}: missing required config field '{}'", source, name);
      return;
    }
    const json& value = *it;
    if (value.is_null()) {
      check(need == FieldNeed::nullable || need == FieldNeed::token_id, "{}: config field '{}' must not be null",
            source, name);
      if constexpr (std::is_same_v<T, int64_t>) member = need == FieldNeed::token_id ? -1 : 0;
      return;
    }
    if constexpr (std::is_same_v<T, bool>) {
      check(value.is_boolean(), "{}: config field '{}' must be true or false, got {}", source, name, value.dump());
      member = value.get<bool>();
    } else if constexpr (std::is_same_v<T, int64_t>) {
      // 1.0 is tolerated as an integer (some writers emit floats), 1.5 is not.
      bool integral = value.is_number_integer() ||
                      (value.is_number_float() && std::floor(value.get<double>()) == value.get<double>());
      check(integral, "{}: config field '{}' must be an integer, got {}", source, name, value.dump());
      member = value.is_number_integer() ? value.get<int64_t>() : static_cast<int64_t>(value.get<double>());
    } else if constexpr (std::is_same_v<T, double>) {
      check(value.is_number(), "{}: config field '{}' must be a number, got {}", source, name, value.dump());
      member = value.get<double>();
    } else {
      check(value.is_string(), "{}: config field '{}' must be a string, got {}", source, name, value.dump());
      member = value.get<std::string>();
    }
  }
};

}  // namespace

ModelConfig config_from_json(const json& j, const std::string& source) {
  check(j.is_object(), "{}: config must be a JSON object", source);
  ModelConfig c;
  Parser parser{j, source, {}};
  c.visit_fields(parser);
  if (!j.contains("num_key_value_heads") || j.at("num_key_value_heads").is_null()) {
    c.num_key_value_heads = c.num_attention_heads;
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (parser.seen.count(it.key()) || ignorable_hf_keys().count(it.key())) continue;
    if (it.key() == "attention_bias" || it.key() == "attention_dropout" || it.key() == "rope_scaling" ||
        it.key() == "mlp_bias")
      continue;  // checked below
    fail("{}: unknown config key '{}'", source, it.key());
  }
  check_fixed_key(j, "attention_bias", false, source);
  check_fixed_key(j, "mlp_bias", false, source);
  check_fixed_key(j, "attention_dropout", 0.0, source);
  check_fixed_key(j, "rope_scaling", nullptr, source);
  if (j.contains("model_type")) {
    check(j.at("model_type") == "deepseek", "{}: model_type must be \"deepseek\", got {}", source,
          j.at("model_type").dump());
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", source, e.what());
  }
  return c;
}

ModelConfig config_from_file(const std::string& path) {
  std::ifstream in(path);
  check(in.good(), "cannot open config {}", path);
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
  return config_from_json(j, path);
}

void ModelConfig::validate() const {
  auto positive = [](const char* name, int64_t v) { check(v > 0, "config field '{}' must be > 0, got {}", name, v); };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("moe_layer_freq", moe_layer_freq);
  positive("max_position_embeddings", max_position_embeddings);
  check(hidden_size % num_attention_heads == 0,
        "config field 'num_attention_heads' = {} does not divide hidden_size = {}", num_attention_heads, hidden_size);
  check(head_dim() % 2 == 0, "config field 'hidden_size': head_dim {} must be even for RoPE", head_dim());
  check(num_attention_heads % num_key_value_heads == 0,
        "config field 'num_key_value_heads' = {} does not divide num_attention_heads = {}", num_key_value_heads,
        num_attention_heads);
  check(n_routed_experts >= 0, "config field 'n_routed_experts' must be >= 0, got {}", n_routed_experts);
  check(n_shared_experts >= 0, "config field 'n_shared_experts' must be >= 0, got {}", n_shared_experts);
  check(first_k_dense_replace >= 0, "config field 'first_k_dense_replace' must be >= 0");
  check(scoring_func == "softmax", "config field 'scoring_func' = \"{}\" is not supported (only softmax)",
        scoring_func);
  check(hidden_act == "silu", "config field 'hidden_act' = \"{}\" is not supported (only silu)", hidden_act);
  check(rms_norm_eps > 0, "config field 'rms_norm_eps' must be > 0");
  check(rope_theta > 0, "config field 'rope_theta' must be > 0");
  check(aux_loss_alpha >= 0, "config field 'aux_loss_alpha' must be >= 0");
  check(device_aux_loss_alpha >= 0, "config field 'device_aux_loss_alpha' must be >= 0");
  check(capacity_factor >= 0, "config field 'capacity_factor' must be >= 0 (0 = dropless)");
  check(paper_expert_width >= 0, "config field 'paper_expert_width' must be >= 0 (0 = nominal width)");
  check(initializer_range >= 0, "config field 'initializer_range' must be >= 0");
  positive("n_expert_groups", n_expert_groups);
  if (n_routed_experts > 0) {
    positive("moe_intermediate_size", moe_intermediate_size);
    check(num_experts_per_tok > 0, "config field 'num_experts_per_tok' must be > 0 for a MoE model");
    check(num_experts_per_tok <= n_routed_experts,
          "config field 'num_experts_per_tok' = {} exceeds n_routed_experts = {}", num_experts_per_tok,
          n_routed_experts);
    check(n_routed_experts % n_expert_groups == 0,
          "config field 'n_expert_groups' = {} does not divide n_routed_experts = {}", n_expert_groups,
          n_routed_experts);
  } else {
    check(n_shared_experts == 0, "config field 'n_shared_experts' needs n_routed_experts (a dense model has none)");
  }
}

int64_t ModelConfig::n_moe_layers() const {
  int64_t n = 0;
  for (int64_t i = 0; i < num_hidden_layers; ++i) n += is_moe_layer(i);
  return n;
}

int64_t ModelConfig::n_params() const { return param_breakdown(*this).total(); }
int64_t ModelConfig::n_active_params() const { return param_breakdown(*this).activated_no_embedding(); }

bool ModelConfig::operator==(const ModelConfig& other) const { return config_to_json(*this) == config_to_json(other); }

json config_to_json(const ModelConfig& c) {
  json j;
  j["architectures"] = {"DeepseekForCausalLM"};
  j["model_type"] = "deepseek";
  c.visit_fields([&](const char* name, const auto& member, FieldNeed need, const char*) {
    using T = std::decay_t<decltype(member)>;
    if constexpr (std::is_same_v<T, int64_t>) {
      if (need == FieldNeed::nullable && member == 0 &&
          (std::string(name) == "n_routed_experts" || std::string(name) == "n_shared_experts")) {
        j[name] = nullptr;  // HF spells "none" as null
        return;
      }
      if (need == FieldNeed::token_id && member < 0) {
        j[name] = nullptr;
        return;
      }
    }
    // An accounting-only field is written only when set, so that configs of ordinary models stay HF's keys plus
    // the training extensions the computation uses.
    if constexpr (std::is_same_v<T, double>) {
      if (std::string(name) == "paper_expert_width" && member == 0.0) return;
    }
    j[name] = member;
  });
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["rope_scaling"] = nullptr;
  j["torch_dtype"] = "float32";
  return j;
}

void config_write_file(const ModelConfig& c, const std::string& path) {
  std::ofstream out(path);
  check(out.good(), "cannot write {}", path);
  out << config_to_json(c).dump(2) << "\n";
  out.flush();
  check(out.good(), "write failed for {} (disk full?)", path);
}

std::string config_summary(const ModelConfig& c) {
  std::string s = fmt::format("layers {} (dense {}, MoE {}), hidden {}, heads {} (kv {}, dim {}), vocab {}\n",
                              c.num_hidden_layers, c.num_hidden_layers - c.n_moe_layers(), c.n_moe_layers(),
                              c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim(), c.vocab_size);
  if (c.n_routed_experts > 0) {
    s += fmt::format("experts: {} shared + {} routed (top-{}), expert width {}, dense width {}\n", c.n_shared_experts,
                     c.n_routed_experts, c.num_experts_per_tok, c.moe_intermediate_size, c.intermediate_size);
  } else {
    s += fmt::format("dense model, MLP width {}\n", c.intermediate_size);
  }
  s += fmt::format("params {:.2f}M total, {:.2f}M active per token", c.n_params() / 1e6, c.n_active_params() / 1e6);
  return s;
}

}  // namespace dsmoe
