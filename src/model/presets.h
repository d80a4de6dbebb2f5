// Model presets: named HF config.json objects, usable wherever a config path is (dsmoe info, ep-plan, flops, train
// --model NAME, bench). Besides the engine's own small models they hold the released DeepSeekMoE 16B configs and
// the models of the paper's tables (2B validation models, DeepSeek LLM 7B / 67B, LLaMA2 7B, GShard 137B,
// DeepSeekMoE 145B / 142B), each set from the paper's hyper-parameters (reference deepseekmoe.md §3.3–§3.4), never
// from its printed results.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"

namespace dsmoe {

// Every preset name, in table order.
const std::vector<std::string>& model_preset_names();
bool model_preset_exists(const std::string& name);
// HF config.json of a preset model. Small presets carry "vocab_from_tokenizer": true (their vocabulary is sized to
// a run's tokenizer); the others keep their vocabulary (a tokenizer may use fewer rows). Callers strip the key.
// Unknown names are an error listing the presets.
nlohmann::json model_preset_config(const std::string& name);
// The preset parsed and validated (vocab_from_tokenizer dropped: the preset's own vocabulary).
ModelConfig model_preset(const std::string& name);

}  // namespace dsmoe
