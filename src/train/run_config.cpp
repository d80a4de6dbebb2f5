#include "train/run_config.h"

#include <algorithm>
#include <type_traits>

#include <fmt/format.h>

#include "core/error.h"

namespace dsmoe {

namespace {

using json = nlohmann::json;

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> field_names() {
  std::vector<std::string> names;
  RunConfig c;
  c.visit_fields([&](const char* name, auto&, const char*) { names.push_back(name); });
  return names;
}

std::string unknown_key_message(const std::string& key, const std::string& source) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const std::string& name : field_names()) {
    size_t d = edit_distance(key, name);
    if (name.find(key) != std::string::npos || key.find(name) != std::string::npos) d = std::min<size_t>(d, 1);
    scored.push_back({d, name});
  }
  std::sort(scored.begin(), scored.end());
  std::string close;
  for (size_t i = 0; i < scored.size() && i < 3 && scored[i].first <= std::max<size_t>(3, key.size() / 2); ++i)
    close += (close.empty() ? "" : ", ") + scored[i].second;
  return fmt::format("{}: unknown run config key '{}'{}", source, key,
                     close.empty() ? " (see dsmoe train --help)" : " (did you mean " + close + "?)");
}

const char* type_name(const std::string&) { return "string"; }
const char* type_name(bool) { return "bool"; }
const char* type_name(int64_t) { return "integer"; }
const char* type_name(uint64_t) { return "unsigned integer"; }
const char* type_name(double) { return "number"; }

template <typename T>
void assign_from_json(T& member, const json& v, const std::string& key, const std::string& source) {
  auto bad = [&]() { fail("{}: run config key '{}' must be a {}, got {}", source, key, type_name(T{}), v.dump()); };
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) bad();
    member = v.get<bool>();
  } else if constexpr (std::is_same_v<T, int64_t>) {
    if (!v.is_number_integer()) bad();
    member = v.get<int64_t>();
  } else if constexpr (std::is_same_v<T, uint64_t>) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0) bad();
    member = v.get<uint64_t>();
  } else if constexpr (std::is_same_v<T, double>) {
    if (!v.is_number()) bad();
    member = v.get<double>();
  } else {
    if (!v.is_string()) bad();
    member = v.get<std::string>();
  }
}

template <typename T>
void assign_from_text(T& member, const std::string& text, const std::string& key) {
  auto bad = [&]() { fail("--{}={}: expected a {}", key, text, type_name(T{})); };
  if constexpr (std::is_same_v<T, bool>) {
    if (text == "true" || text == "1" || text.empty())
      member = true;
    else if (text == "false" || text == "0")
      member = false;
    else
      bad();
  } else if constexpr (std::is_same_v<T, std::string>) {
    member = text;
  } else {
    size_t pos = 0;
    try {
      if constexpr (std::is_same_v<T, double>)
        member = std::stod(text, &pos);
      else if constexpr (std::is_same_v<T, uint64_t>) {
        if (!text.empty() && text[0] == '-') bad();
        member = std::stoull(text, &pos);
      } else {
        member = std::stoll(text, &pos);
      }
    } catch (...) {
      bad();
    }
    if (pos != text.size()) bad();
  }
}

// ---- presets ----

const json& presets() {
  static const json p = json::parse(R"({
    "tiny": {"model": "tiny", "data": "synth", "synth_bytes": 400000, "tokenizer_vocab": 512, "seq_len": 64,
             "batch": 8, "steps": 40, "lr": 3e-3, "warmup": 4, "schedule": "cosine", "eval_every": 20,
             "eval_batches": 4, "checkpoint_every": 20, "log_every": 10},
    "demo": {"model": "demo", "data": "synth", "synth_bytes": 3000000, "tokenizer_vocab": 2048, "seq_len": 128,
             "batch": 16, "steps": 600, "lr": 3e-3, "warmup": 30, "schedule": "multistep", "eval_every": 100,
             "eval_batches": 8, "checkpoint_every": 100, "log_every": 50},
    "bench-train-s": {"model": "bench-train-s", "data": "synth", "synth_bytes": 12000000, "tokenizer_vocab": 8192,
             "seq_len": 512, "batch": 8, "steps": 6, "lr": 4.2e-4, "warmup": 0, "schedule": "constant",
             "eval_every": 0, "eval_batches": 2, "checkpoint_every": 0, "log_every": 1},
    "deepseek-moe-16b": {"model": "deepseek-moe-16b", "data": "synth", "tokenizer_vocab": 8192, "seq_len": 4096,
             "batch": 1, "steps": 1, "lr": 4.2e-4, "warmup": 2000, "schedule": "multistep"}
  })");
  return p;
}

}  // namespace

void RunConfig::validate() const {
  auto positive = [](const char* name, int64_t v) { check(v > 0, "run config '{}' must be > 0, got {}", name, v); };
  positive("seq_len", seq_len);
  positive("batch", batch);
  positive("grad_accum", grad_accum);
  check(steps >= 0, "run config 'steps' must be >= 0");
  positive("log_every", log_every);
  positive("eval_batches", eval_batches);
  positive("keep", keep);
  positive("tokenizer_vocab", tokenizer_vocab);
  positive("synth_bytes", synth_bytes);
  check(eval_every >= 0 && checkpoint_every >= 0 && warmup >= 0 && threads >= 0,
        "run config 'eval_every', 'checkpoint_every', 'warmup' and 'threads' must be >= 0");
  check(lr >= 0, "run config 'lr' must be >= 0");
  check(val_fraction >= 0 && val_fraction < 1, "run config 'val_fraction' must be in [0, 1)");
  check(schedule == "constant" || schedule == "multistep" || schedule == "cosine",
        "run config 'schedule' = '{}' (expected constant, multistep or cosine)", schedule);
  check(save_dtype == "f32" || save_dtype == "f16" || save_dtype == "bf16",
        "run config 'save_dtype' = '{}' (expected f32, f16 or bf16)", save_dtype);
  check(!model.empty(), "run config 'model' is empty");
  check(!data.empty(), "run config 'data' is empty");
}

json run_config_to_json(const RunConfig& c) {
  json j = json::object();
  const_cast<RunConfig&>(c).visit_fields([&](const char* name, auto& member, const char*) { j[name] = member; });
  return j;
}

void run_config_apply_json(RunConfig& c, const json& j, const std::string& source) {
  check(j.is_object(), "{}: a run config must be a JSON object", source);
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool found = false;
    c.visit_fields([&](const char* name, auto& member, const char*) {
      if (it.key() != name) return;
      found = true;
      assign_from_json(member, it.value(), it.key(), source);
    });
    check(found, "{}", unknown_key_message(it.key(), source));
  }
}

void run_config_apply_override(RunConfig& c, const std::string& raw_key, const std::string& value) {
  std::string key = raw_key;
  std::replace(key.begin(), key.end(), '-', '_');
  bool found = false;
  c.visit_fields([&](const char* name, auto& member, const char*) {
    if (key != name) return;
    found = true;
    assign_from_text(member, value, raw_key);
  });
  check(found, "{}", unknown_key_message(key, "command line"));
}

std::string run_config_help() {
  std::string s;
  RunConfig c;
  c.visit_fields([&](const char* name, auto& member, const char* help) {
    std::string key = name;
    std::replace(key.begin(), key.end(), '_', '-');
    s += fmt::format("  --{:<22} {} (default {})\n", key + "=" + type_name(member), help, json(member).dump());
  });
  return s;
}

const std::vector<std::string>& run_preset_names() {
  // The table's keys, smallest run first (a json object iterates its keys sorted).
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& [key, run] : presets().items()) n.push_back(key);
    std::sort(n.begin(), n.end(), [](const std::string& a, const std::string& b) {
      return model_preset(a).n_params() < model_preset(b).n_params();
    });
    return n;
  }();
  return names;
}

json run_preset(const std::string& name) {
  check(presets().contains(name), "unknown preset '{}' (presets: {})", name, fmt::join(run_preset_names(), ", "));
  return presets().at(name);
}

}  // namespace dsmoe
