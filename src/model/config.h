// ModelConfig — the single source of truth for a DeepSeekMoE model's shape and training-time options.
//
// One field list (visit_fields) drives parsing of HF config.json, validation messages, printing and writing
// back, so a field cannot be added in one place and forgotten in another (gemma.cpp's VisitFields idea).
// Field names are HF's (configuration_deepseek.py); defaults are that class's defaults, except where the
// released checkpoints rely on a value the class does not default to (noted per field).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace dsmoe {

// How a field may appear in config.json.
enum class FieldNeed {
  required,  // must be present
  optional,  // may be absent: the default applies
  nullable,  // may be absent or null: null means 0 ("none"), as HF uses None for "no experts"
  token_id,  // may be absent or null: null means -1 (no such token)
};

struct ModelConfig {
  // --- HF DeepseekConfig fields ---
  int64_t vocab_size = 102400;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;     // width of the dense SwiGLU layers
  int64_t moe_intermediate_size = 1407;  // width of one routed expert
  int64_t num_hidden_layers = 30;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 0;  // 0 after parsing never happens: absent means = num_attention_heads
  int64_t n_shared_experts = 0;     // null/0 = no shared experts
  int64_t n_routed_experts = 0;     // null/0 = dense model
  int64_t num_experts_per_tok = 0;  // top-k
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  bool norm_topk_prob = false;
  std::string scoring_func = "softmax";
  double aux_loss_alpha = 0.001;  // alpha1, expert-level balance loss
  bool seq_aux = true;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;
  int64_t bos_token_id = 100000;
  int64_t eos_token_id = 100001;
  std::string hidden_act = "silu";
  // --- dsmoe training extensions (written back into config.json) ---
  double device_aux_loss_alpha = 0.0;  // alpha2 of the paper's device-level balance loss
  int64_t n_expert_groups = 1;         // D: routed experts split into D contiguous equal groups
  double capacity_factor = 0.0;        // 0 = dropless; > 0 = per-expert capacity ceil(cf*T*k/E)
  // --- dsmoe accounting extension (written back only when set) ---
  double paper_expert_width = 0.0;  // expert width of the paper's FLOPs count (flops.h); 0 = nominal

  // The field list. v(name, member, need, help) is called once per field, in this order.
  template <typename Visitor>
  void visit_fields(Visitor&& v) {
    v("vocab_size", vocab_size, FieldNeed::required, "vocabulary size (rows of embed_tokens and lm_head)");
    v("hidden_size", hidden_size, FieldNeed::required, "model width d");
    v("intermediate_size", intermediate_size, FieldNeed::required, "width of dense SwiGLU layers");
    v("moe_intermediate_size", moe_intermediate_size, FieldNeed::optional, "width of one routed expert");
    v("num_hidden_layers", num_hidden_layers, FieldNeed::required, "number of decoder layers");
    v("num_attention_heads", num_attention_heads, FieldNeed::required, "query heads");
    v("num_key_value_heads", num_key_value_heads, FieldNeed::nullable, "key/value heads (GQA); absent = heads");
    v("n_shared_experts", n_shared_experts, FieldNeed::nullable, "always-on shared experts (null = none)");
    v("n_routed_experts", n_routed_experts, FieldNeed::nullable, "routed experts E (null = dense model)");
    v("num_experts_per_tok", num_experts_per_tok, FieldNeed::nullable, "routed experts per token (top-k)");
    v("first_k_dense_replace", first_k_dense_replace, FieldNeed::optional, "leading dense layers");
    v("moe_layer_freq", moe_layer_freq, FieldNeed::optional, "layer i is MoE iff i % freq == 0");
    v("norm_topk_prob", norm_topk_prob, FieldNeed::optional, "renormalise top-k weights to sum 1");
    v("scoring_func", scoring_func, FieldNeed::optional, "gate scoring (softmax only)");
    v("aux_loss_alpha", aux_loss_alpha, FieldNeed::optional, "expert-level balance loss weight alpha1");
    v("seq_aux", seq_aux, FieldNeed::optional, "expert-level loss per sequence (true) or per batch");
    v("rms_norm_eps", rms_norm_eps, FieldNeed::optional, "RMSNorm epsilon");
    v("rope_theta", rope_theta, FieldNeed::optional, "RoPE base");
    v("max_position_embeddings", max_position_embeddings, FieldNeed::optional, "longest context");
    v("tie_word_embeddings", tie_word_embeddings, FieldNeed::optional, "lm_head shares embed_tokens");
    v("initializer_range", initializer_range, FieldNeed::optional, "init std of weight matrices");
    v("bos_token_id", bos_token_id, FieldNeed::token_id, "begin-of-sequence token id");
    v("eos_token_id", eos_token_id, FieldNeed::token_id, "end-of-sequence token id");
    v("hidden_act", hidden_act, FieldNeed::optional, "MLP activation (silu only)");
    v("device_aux_loss_alpha", device_aux_loss_alpha, FieldNeed::optional, "device-level balance loss alpha2");
    v("n_expert_groups", n_expert_groups, FieldNeed::optional, "device groups D of routed experts");
    v("capacity_factor", capacity_factor, FieldNeed::optional, "expert capacity factor (0 = dropless)");
    v("paper_expert_width", paper_expert_width, FieldNeed::optional,
      "expert width the paper's FLOPs count uses; 0 = nominal, the nearest 1/8 of a standard FFN");
  }
  template <typename Visitor>
  void visit_fields(Visitor&& v) const {
    const_cast<ModelConfig*>(this)->visit_fields(std::forward<Visitor>(v));
  }

  // --- derived sizes (never stored) ---
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim(); }
  int64_t shared_width() const { return n_shared_experts * moe_intermediate_size; }
  int64_t experts_per_group() const { return n_routed_experts / n_expert_groups; }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  int64_t n_moe_layers() const;
  // Sums of param_breakdown (model/flops.h), the one place that counts parameters.
  int64_t n_params() const;         // all parameters
  int64_t n_active_params() const;  // used per token (embedding lookup excluded, lm_head included)

  // Throws dsmoe::Error naming the offending field.
  void validate() const;
  bool operator==(const ModelConfig&) const;
};

// Parse HF config.json text / file. `source` names the file in error messages.
ModelConfig config_from_json(const nlohmann::json& j, const std::string& source);
ModelConfig config_from_file(const std::string& path);
nlohmann::json config_to_json(const ModelConfig& c);
void config_write_file(const ModelConfig& c, const std::string& path);
std::string config_summary(const ModelConfig& c);  // multi-line human-readable description

}  // namespace dsmoe
