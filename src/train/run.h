// A training run: resolves a RunConfig into a model, data and tokenizer (preparing text on the fly, cached in the
// run directory), trains with periodic evaluation, MoE telemetry, metrics and atomic checkpoints, and resumes
// bit-identically from the newest checkpoint.
//
// Run directory layout:
//   RUN/config.json          the resolved run config (data paths point at the prepared files)
//   RUN/metrics.jsonl        one JSON record per line: train steps, evals, MoE telemetry per layer
//   RUN/tokenizer/, RUN/data/  tokenizer and token files made on the fly
//   RUN/checkpoints/step-N/  HF model dir + optimizer + state;  RUN/latest -> the newest complete checkpoint
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/parallel.h"
#include "train/run_config.h"

namespace dsmoe {

struct RunRequest {
  RunConfig config;     // resolved (defaults <- preset <- file <- overrides)
  std::string run_dir;  // "" = no run directory (no checkpoints or metrics; --out still saves)
  bool resume = false;  // continue RUN from its newest checkpoint
  // Data parallelism (mpirun): every rank runs train_run with its own DataParallel; each trains on its share of
  // every batch (sequences [r B/W, (r+1) B/W)), rank 0 alone writes the run directory, metrics and checkpoints.
  const DataParallel* parallel = nullptr;
  // Expert parallelism (`--ep`): called once with the model's routed expert count; empty = none.
  std::function<const ExpertExchange*(int64_t n_routed_experts)> expert_parallel;
};

struct RunSummary {
  int64_t steps_done = 0;
  double final_loss = 0, val_loss = -1;
  std::string model_dir;  // where the final model is (checkpoint or --out)
  std::string tokenizer_dir;
  std::string val_data;
};

RunSummary train_run(RunRequest request);

// A JSON file written whole or not at all (a temporary file renamed over it).
void write_json_atomic(const std::string& path, const nlohmann::json& j);
// Token files are flat uint32 arrays named *.bin; anything else given as data is text.
bool is_token_file(const std::string& path);
// "a,b,,c" -> {"a", "b", "c"}: the comma-separated path lists of --data and the run config.
std::vector<std::string> split_paths(const std::string& s);

// Text data -> a tokenizer (c.tokenizer, or one of c.tokenizer_vocab tokens trained on the text) -> token files,
// cached under work_dir (reused when already there). c.data "synth" writes the built-in corpus first. Afterwards
// c.data, c.val_data (unless given) and c.tokenizer name the prepared files.
void prepare_text_data(RunConfig& c, const std::string& work_dir);

// Resolve a run config: preset, then a config file, then overrides (pairs of key, value).
RunConfig resolve_run_config(const std::string& preset, const std::string& config_file,
                             const std::vector<std::pair<std::string, std::string>>& overrides);

}  // namespace dsmoe
