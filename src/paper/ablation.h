// The paper's Figure 3 ablation ladder at CPU scale (reference §3.5): with the same total and activated parameters,
//   gshard  0 shared + top-2 of 16 routed experts of width W            (GShard)
//   shared  1 shared + top-1 of 15, width W                             (+ shared-expert isolation)
//   m2      1 shared + top-3 of 31, width W/2                           (+ fine-grained segmentation, m = 2)
//   m4      1 shared + top-7 of 63, width W/4                           (+ finer segmentation, m = 4)
// plus `dense` (one SwiGLU of width 2W: the same activated parameters) and optionally `gshard-x1.5` (16 experts of
// width 1.5W, top-2). W is a "standard FFN" (≈ 8d/3, a multiple of 4 so W/2 and W/4 are whole). Every FFN is MoE
// (the 2B validation models have no dense first layer). Only the routers differ in size (E·d per layer).
//
// Every variant trains on the same token files, with the same schedule, data order and initialisation seeds (one
// run per seed), in the project's run format (resumable: rerunning the command continues where it stopped).
// Output in DIR:
//   DIR/settings.json             the ladder's settings (a rerun with other settings is refused)
//   DIR/data/                     tokenizer and token files prepared from --data once
//   DIR/configs/NAME.json         each variant's model config
//   DIR/runs/NAME-seedS/          one training run per variant and seed (metrics.jsonl, checkpoints, result.json)
//   DIR/ablation.json             {"variants": [{name, n_shared_experts, n_routed_experts, num_experts_per_tok,
//                                  moe_intermediate_size, total_params, activated_params, val_loss: [per seed]}],
//                                  "ordering_holds": bool, ...}
//   DIR/report.md, DIR/plots/     the validation-loss table, the gaps against the seed spread, the loss curves
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"

namespace dsmoe::paper {

// The scale of the ladder: model shape, data and schedule shared by every variant.
struct AblationScale {
  int64_t hidden = 128, layers = 4, heads = 4;
  int64_t vocab = 4096;                                          // BPE vocabulary trained on the data
  int64_t seq_len = 128, batch = 16, steps = 1400, warmup = 70;  // 2.9M tokens per run: ~1.8 epochs of Brown
  double lr = 3e-3;
  int64_t evals = 10;            // validation evaluations along each run (for the curves)
  int64_t data_bytes = 0;        // 0 = all of --data; else its first N bytes (whole lines)
  double val_fraction = 0.05;    // share of documents held out for validation
  double aux_loss_alpha = 0.01;  // the paper's alpha1 for the 2B models
  // Expert-level balance over the whole batch (the paper's formula with T = the batch's tokens), not per sequence:
  // per-sequence balance over 128-token sequences pushes every sequence onto every expert, which hurts the
  // fine-grained variants most at this scale (measured at 700 steps: m4 val loss 5.046 per sequence, 4.959 per batch).
  bool seq_aux = false;
  double initializer_range = 0.02;

  static AblationScale full();
  static AblationScale quick();  // about a minute on 2 cores, for CI
  nlohmann::json to_json() const;
};

struct AblationVariant {
  std::string name;   // gshard, shared, m2, m4, dense, gshard-x1.5
  std::string label;  // what it is, for tables
  ModelConfig config;
};

// The ladder's model configs for a vocabulary (bos/eos -1 = none), in the order above.
std::vector<AblationVariant> ablation_variants(const AblationScale& scale, int64_t vocab_size, int64_t bos_id,
                                               int64_t eos_id, bool with_gshard_x15);

// The standard FFN width W for model width d: 8d/3 rounded to a multiple of 4.
int64_t standard_ffn_width(int64_t hidden);

struct AblationOptions {
  std::string out_dir;
  std::vector<std::string> data;  // text/JSONL files or dirs, or token files (.bin); empty = the Brown corpus
  std::string val_data;           // token file for validation when data are token files
  int64_t seeds = 2;
  bool quick = false;
  bool gshard_x15 = false;
  int64_t threads = 0;       // 0 = all cores
  std::string command_line;  // recorded in the report
  AblationScale scale;       // filled from quick/full, then the caller's overrides
};

struct VariantResult {
  AblationVariant variant;
  std::vector<double> val_loss;         // one per seed
  double mean = 0, sd = 0, spread = 0;  // over seeds: mean, sample standard deviation, max - min
};

struct AblationResult {
  std::vector<VariantResult> variants;
  bool ordering_holds = false;  // mean val loss gshard > shared > m2 > m4
  nlohmann::json json;          // what ablation.json holds
  std::string report_path;
};

// Where the default real-English corpus is looked for, in order: $DSMOE_BROWN, ./brown.txt, ./data/brown.txt,
// ../shared/data/brown.txt, and ../../shared/data/brown.txt beside the executable's directory.
std::string find_brown_corpus(const std::string& exe_dir);

// Run (or continue) the ladder; writes everything listed above. Prints progress to stdout.
AblationResult run_ablation(const AblationOptions& options);

}  // namespace dsmoe::paper
