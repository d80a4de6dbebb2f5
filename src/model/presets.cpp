#include "model/presets.h"

#include <utility>

#include "core/error.h"

namespace dsmoe {
namespace {

using json = nlohmann::json;

// base with some keys replaced (RFC 7386 merge patch): variants state only how they differ.
json derive(json base, const json& delta) {
  base.merge_patch(delta);
  return base;
}

using PresetTable = std::vector<std::pair<std::string, json>>;

const PresetTable& table() {
  static const PresetTable presets = [] {
    PresetTable t;
    // --- the engine's own models: tests, the demo, the benchmarks ---
    t.emplace_back("tiny", json::parse(R"({"model_type": "deepseek", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 176, "moe_intermediate_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 4, "n_shared_experts": 1, "n_routed_experts": 8, "num_experts_per_tok": 2,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "aux_loss_alpha": 0.01, "seq_aux": true,
        "max_position_embeddings": 256, "initializer_range": 0.02, "bos_token_id": 510, "eos_token_id": 511,
        "vocab_from_tokenizer": true})"));
    t.emplace_back("demo", json::parse(R"({"model_type": "deepseek", "vocab_size": 2048, "hidden_size": 128,
        "intermediate_size": 352, "moe_intermediate_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 4, "n_shared_experts": 1, "n_routed_experts": 15, "num_experts_per_tok": 3,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "aux_loss_alpha": 0.01, "seq_aux": true,
        "max_position_embeddings": 512, "initializer_range": 0.02, "bos_token_id": 2046, "eos_token_id": 2047,
        "vocab_from_tokenizer": true})"));
    const json bench_train_s = json::parse(R"({"model_type": "deepseek", "architectures": ["DeepseekForCausalLM"],
        "vocab_size": 8192, "hidden_size": 512, "intermediate_size": 1408, "moe_intermediate_size": 352,
        "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 8, "n_shared_experts": 1,
        "n_routed_experts": 63, "num_experts_per_tok": 7, "first_k_dense_replace": 1, "moe_layer_freq": 1,
        "norm_topk_prob": false, "scoring_func": "softmax", "aux_loss_alpha": 0.01, "seq_aux": true,
        "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "max_position_embeddings": 1024, "tie_word_embeddings": false,
        "hidden_act": "silu", "initializer_range": 0.006, "bos_token_id": 1, "eos_token_id": 2})");
    t.emplace_back("bench-train-s", bench_train_s);
    // 64 routed experts: an expert count that splits over 2, 4 and 8 ranks (the expert-parallel benchmark).
    t.emplace_back("bench-train-s-e64", derive(bench_train_s, {{"n_routed_experts", 64}}));
    t.emplace_back("bench-infer", json::parse(R"({"model_type": "deepseek", "architectures": ["DeepseekForCausalLM"],
        "vocab_size": 102400, "hidden_size": 1024, "intermediate_size": 2816, "moe_intermediate_size": 384,
        "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 16, "n_shared_experts": 2,
        "n_routed_experts": 32, "num_experts_per_tok": 4, "first_k_dense_replace": 1, "moe_layer_freq": 1,
        "norm_topk_prob": false, "scoring_func": "softmax", "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
        "max_position_embeddings": 4096, "tie_word_embeddings": false, "hidden_act": "silu",
        "initializer_range": 0.02, "bos_token_id": 100000, "eos_token_id": 100001})"));

    // --- DeepSeekMoE 16B: the released config (reference §2.1); chat has the base model's config. The run preset
    // "deepseek-moe-16b" trains with the paper's init std 0.006 instead of the config's 0.02. ---
    const json moe16b = json::parse(R"({"model_type": "deepseek", "architectures": ["DeepseekForCausalLM"],
        "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16, "n_shared_experts": 2,
        "n_routed_experts": 64, "num_experts_per_tok": 6, "first_k_dense_replace": 1, "moe_layer_freq": 1,
        "norm_topk_prob": false, "scoring_func": "softmax", "aux_loss_alpha": 0.001, "seq_aux": true,
        "hidden_act": "silu", "rms_norm_eps": 1e-06, "rope_theta": 10000, "max_position_embeddings": 4096,
        "initializer_range": 0.02, "bos_token_id": 100000, "eos_token_id": 100001, "tie_word_embeddings": false})");
    t.emplace_back("deepseek-moe-16b", derive(moe16b, {{"initializer_range", 0.006}}));
    t.emplace_back("deepseek-moe-16b-base", moe16b);
    t.emplace_back("deepseek-moe-16b-chat", moe16b);

    // --- the dense baselines of Tables 3 and 6: DeepSeek LLM 7B / 67B (the 16B's tokenizer; 67B uses GQA with 8
    // KV heads) and LLaMA2 7B (32K vocabulary, RMSNorm eps 1e-5, ids 1/2) ---
    const json llm7b = json::parse(R"({"model_type": "deepseek", "architectures": ["DeepseekForCausalLM"],
        "vocab_size": 102400, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 30,
        "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu", "rms_norm_eps": 1e-06,
        "rope_theta": 10000, "max_position_embeddings": 4096, "initializer_range": 0.02, "bos_token_id": 100000,
        "eos_token_id": 100001, "tie_word_embeddings": false})");
    t.emplace_back("deepseek-llm-7b", llm7b);
    t.emplace_back("llama2-7b", derive(llm7b, {{"vocab_size", 32000},
                                               {"num_hidden_layers", 32},
                                               {"rms_norm_eps", 1e-05},
                                               {"bos_token_id", 1},
                                               {"eos_token_id", 2}}));
    t.emplace_back("deepseek-llm-67b", derive(llm7b, {{"hidden_size", 8192},
                                                      {"intermediate_size", 22016},
                                                      {"num_hidden_layers", 95},
                                                      {"num_attention_heads", 64},
                                                      {"num_key_value_heads", 8}}));

    // --- the 2B validation models of Tables 1 and 2 (§4.1.3): 9 layers, d 1280, 10 heads x 128, 8K vocabulary,
    // every FFN is MoE. A "standard FFN" has 8d² parameters: a SwiGLU of width 3413 ≈ 8d/3. Token ids of the
    // paper's 8K tokenizer are not given: none. ---
    const json dense2b = json::parse(R"({"model_type": "deepseek", "architectures": ["DeepseekForCausalLM"],
        "vocab_size": 8192, "hidden_size": 1280, "intermediate_size": 3413, "moe_intermediate_size": 3413,
        "num_hidden_layers": 9, "num_attention_heads": 10, "num_key_value_heads": 10, "first_k_dense_replace": 0,
        "moe_layer_freq": 1, "norm_topk_prob": false, "scoring_func": "softmax", "aux_loss_alpha": 0.01,
        "seq_aux": true, "hidden_act": "silu", "rms_norm_eps": 1e-06, "rope_theta": 10000,
        "max_position_embeddings": 2048, "initializer_range": 0.006, "bos_token_id": null, "eos_token_id": null,
        "tie_word_embeddings": false})");
    t.emplace_back("paper-2b-dense", dense2b);
    // 16 standard-FFN experts, top-1 (Switch; Hash Layer has the same shapes) and top-2 (GShard).
    t.emplace_back("paper-2b-switch", derive(dense2b, {{"n_routed_experts", 16}, {"num_experts_per_tok", 1}}));
    t.emplace_back("paper-2b-gshard", derive(dense2b, {{"n_routed_experts", 16}, {"num_experts_per_tok", 2}}));
    // Experts 1.5 standard FFNs wide: 1.5 x 3413 = 5119.5 -> 5120.
    t.emplace_back(
        "paper-2b-gshard-x1.5",
        derive(dense2b, {{"moe_intermediate_size", 5120}, {"n_routed_experts", 16}, {"num_experts_per_tok", 2}}));
    // 16 always-on standard FFNs sum to one SwiGLU of 16 x 3413 (their gate/up rows stack, their down columns
    // concatenate), so Dense x16 is a dense model of that width.
    t.emplace_back("paper-2b-dense-x16", derive(dense2b, {{"intermediate_size", 16 * 3413}}));
    // Fine-grained m = 4: experts of 3413 / 4 = 853.25 -> 853; 1 shared + 63 routed, top-7.
    t.emplace_back("paper-2b-deepseekmoe", derive(dense2b, {{"moe_intermediate_size", 853},
                                                            {"n_shared_experts", 1},
                                                            {"n_routed_experts", 63},
                                                            {"num_experts_per_tok", 7}}));

    // --- the 145B-scale models of Table 6 (§7.1): 62 layers, d 4096, 32 heads x 128, the 16B's tokenizer, a dense
    // first layer of 2 standard FFNs (2 x 10944 = 21888, widths aligned to multiples of 64), α1 0.003 and α2 0.05
    // over 4 device groups as stated for 145B (the paper states no other values for GShard 137B and 142B). ---
    const json moe145b = json::parse(R"({"model_type": "deepseek", "architectures": ["DeepseekForCausalLM"],
        "vocab_size": 102400, "hidden_size": 4096, "intermediate_size": 21888, "moe_intermediate_size": 1408,
        "num_hidden_layers": 62, "num_attention_heads": 32, "num_key_value_heads": 32, "n_shared_experts": 4,
        "n_routed_experts": 128, "num_experts_per_tok": 12, "first_k_dense_replace": 1, "moe_layer_freq": 1,
        "norm_topk_prob": false, "scoring_func": "softmax", "aux_loss_alpha": 0.003, "seq_aux": true,
        "hidden_act": "silu", "rms_norm_eps": 1e-06, "rope_theta": 10000, "max_position_embeddings": 4096,
        "initializer_range": 0.006, "bos_token_id": 100000, "eos_token_id": 100001, "tie_word_embeddings": false,
        "device_aux_loss_alpha": 0.05, "n_expert_groups": 4, "paper_expert_width": 1408})");
    // GShard: 16 standard-FFN experts (10944), top-2, no shared experts; its FLOPs use the nominal size (null
    // removes the key).
    t.emplace_back("paper-gshard-137b", derive(moe145b, {{"moe_intermediate_size", 10944},
                                                         {"n_shared_experts", 0},
                                                         {"n_routed_experts", 16},
                                                         {"num_experts_per_tok", 2},
                                                         {"paper_expert_width", nullptr}}));
    // Experts of 1/8 standard FFN (1365.3 aligned up to 1408; the paper counts FLOPs at 1408, reference §4).
    t.emplace_back("paper-deepseekmoe-145b", moe145b);
    // "Half activated": 2 shared, top-6 of the same 128.
    t.emplace_back("paper-deepseekmoe-142b", derive(moe145b, {{"n_shared_experts", 2}, {"num_experts_per_tok", 6}}));
    return t;
  }();
  return presets;
}

const json* find(const std::string& name) {
  for (const auto& [n, j] : table())
    if (n == name) return &j;
  return nullptr;
}

}  // namespace

const std::vector<std::string>& model_preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& entry : table()) v.push_back(entry.first);
    return v;
  }();
  return names;
}

bool model_preset_exists(const std::string& name) { return find(name) != nullptr; }

json model_preset_config(const std::string& name) {
  const json* j = find(name);
  if (j == nullptr) {
    std::string names;
    for (const std::string& n : model_preset_names()) names += (names.empty() ? "" : ", ") + n;
    fail("unknown model preset '{}' (model presets: {})", name, names);
  }
  return *j;
}

ModelConfig model_preset(const std::string& name) {
  json j = model_preset_config(name);
  j.erase("vocab_from_tokenizer");
  return config_from_json(j, "model preset " + name);
}

}  // namespace dsmoe
