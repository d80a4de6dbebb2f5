// RunConfig — everything a training run needs, as one field list (like ModelConfig): the list drives defaults,
// presets, config files, --key=value overrides (type-checked, unknown keys answered with close matches), help text
// and the resolved RUN/config.json. Resolution order: defaults <- preset <- config file <- overrides.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/presets.h"

namespace dsmoe {

struct RunConfig {
  // --- what to train ---
  std::string model = "tiny";  // preset model name, a config.json, or an HF model directory to start from
  uint64_t init_seed = 0;      // initialisation seed for a fresh model
  std::string data =
      "synth";            // "synth" (built-in corpus), a token file (.bin), text/JSONL files or dirs (comma-separated)
  std::string val_data;   // token file for evaluation ("" = the prepared/val split)
  std::string tokenizer;  // tokenizer dir for text data ("" = train one on the data, cached in the run)
  int64_t tokenizer_vocab = 2048;  // vocabulary of a tokenizer trained on the fly
  int64_t synth_bytes = 4000000;   // size of the built-in corpus
  double val_fraction = 0.01;      // share of documents held out when text is prepared on the fly
  bool sft = false;                // data is JSONL conversations; loss only on assistant tokens
  // --- optimisation ---
  int64_t seq_len = 128;
  int64_t batch = 8;       // sequences per micro-batch
  int64_t grad_accum = 1;  // micro-batches per step
  int64_t steps = 100;
  int64_t stop_after = 0;  // stop (as if interrupted) after this step; 0 = run to the end
  double lr = 1e-3;
  int64_t warmup = 0;
  std::string schedule = "multistep";  // constant | multistep | cosine
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;
  bool shuffle = true;  // false: step s uses windows s*B.. in order (--no-shuffle)
  uint64_t seed = 0;    // data order
  bool freeze_router = false;
  double aux_loss_alpha = -1;         // override of the model's alpha1 (-1 = keep)
  double device_aux_loss_alpha = -1;  // override of alpha2 (-1 = keep)
  // --- cadence and output ---
  int64_t threads = 0;  // 0 = all cores
  int64_t log_every = 1;
  int64_t eval_every = 0;  // 0 = only at the end
  int64_t eval_batches = 8;
  int64_t checkpoint_every = 0;  // 0 = only at the end (with a run directory)
  int64_t keep = 2;              // checkpoints kept
  std::string out;               // also save the final model as an HF directory here
  std::string save_dtype = "f32";

  template <typename Visitor>
  void visit_fields(Visitor&& v) {
    v("model", model, "preset model name, config.json, or HF model directory to start from");
    v("init_seed", init_seed, "seed of a freshly initialised model");
    v("data", data, "synth | token file (.bin) | text/JSONL files or directories, comma-separated");
    v("val_data", val_data, "token file for evaluation (default: the held-out split)");
    v("tokenizer", tokenizer, "tokenizer directory for text data (default: train one, cached in the run)");
    v("tokenizer_vocab", tokenizer_vocab, "vocabulary size of a tokenizer trained on the fly");
    v("synth_bytes", synth_bytes, "size of the built-in synthetic corpus");
    v("val_fraction", val_fraction, "share of documents held out when text is prepared on the fly");
    v("sft", sft, "supervised fine-tuning on JSONL conversations (loss on assistant tokens only)");
    v("seq_len", seq_len, "sequence length");
    v("batch", batch, "sequences per micro-batch");
    v("grad_accum", grad_accum, "micro-batches per optimizer step");
    v("steps", steps, "optimizer steps");
    v("stop_after", stop_after, "stop after this step as if interrupted (resume continues); 0 = off");
    v("lr", lr, "peak learning rate");
    v("warmup", warmup, "linear warmup steps");
    v("schedule", schedule, "constant | multistep | cosine");
    v("weight_decay", weight_decay, "AdamW decoupled weight decay (matrices only)");
    v("beta1", beta1, "AdamW beta1");
    v("beta2", beta2, "AdamW beta2");
    v("eps", eps, "AdamW epsilon");
    v("grad_clip", grad_clip, "global gradient-norm clip (0 = off)");
    v("shuffle", shuffle, "shuffle windows each epoch (false = consecutive)");
    v("seed", seed, "data order seed");
    v("freeze_router", freeze_router, "do not train the MoE gates");
    v("aux_loss_alpha", aux_loss_alpha, "expert-level balance loss weight (-1 = the model's)");
    v("device_aux_loss_alpha", device_aux_loss_alpha, "device-level balance loss weight (-1 = the model's)");
    v("threads", threads, "threads (0 = all cores)");
    v("log_every", log_every, "print every N-th step");
    v("eval_every", eval_every, "evaluate every N steps (0 = at the end)");
    v("eval_batches", eval_batches, "batches per evaluation");
    v("checkpoint_every", checkpoint_every, "checkpoint every N steps (0 = at the end)");
    v("keep", keep, "checkpoints kept");
    v("out", out, "also save the final model as an HF directory here");
    v("save_dtype", save_dtype, "f32 | f16 | bf16 for --out");
  }

  void validate() const;  // throws naming the field
};

nlohmann::json run_config_to_json(const RunConfig& c);
// Apply the keys of a JSON object (a preset or a config file); `source` names it in errors.
void run_config_apply_json(RunConfig& c, const nlohmann::json& j, const std::string& source);
// Apply one --key=value override (key with '-' or '_'); type-checked; unknown keys list close matches.
void run_config_apply_override(RunConfig& c, const std::string& key, const std::string& value);
// Help lines "  --key (type, default): help".
std::string run_config_help();

// Built-in presets: tiny, demo, bench-train-s, deepseek-moe-16b. Each sets run fields; the model presets of the same
// names (model/presets.h, re-exported here with model_preset_exists / model_preset_config) give their models
// (vocab_size is taken from the tokenizer when one is trained on the fly).
const std::vector<std::string>& run_preset_names();
nlohmann::json run_preset(const std::string& name);  // run fields (throws for unknown names)

}  // namespace dsmoe
