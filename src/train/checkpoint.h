// Training checkpoints: crash-safe save / resume of the model, the AdamW state and the caller's run state.
//
// A checkpoint directory is an HF model directory (config.json + model.safetensors in F32, so `dsmoe eval --model`
// and model_load work on it) plus
//   optimizer.safetensors  AdamW moments, one F32 tensor per registry tensor: "m.<registry name>", "v.<registry name>"
//                          (stacked expert tensors stay stacked); __metadata__ "step" = AdamW::step (int64, exact);
//   state.json             the caller's JSON (step, RNG state, data position, resolved run config, ...);
//   COMPLETE               written last: a directory without it is never loaded.
// Layout: RUN/checkpoints/step-00000123/, and RUN/latest, a relative symlink "checkpoints/step-00000123".
//
// Crash safety: everything is written into RUN/checkpoints/.tmp-step-00000123/ and fsynced, COMPLETE last, then the
// directory is renamed into place and RUN/latest is re-pointed by renaming a fresh symlink over it. A kill -9 at any
// moment leaves RUN/latest at a complete checkpoint (or absent), and a failed write (disk full) leaves the previous
// checkpoints untouched. One writer per run directory is assumed.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "model/model.h"
#include "train/adamw.h"

namespace dsmoe {

// Save checkpoint `step` of a run, then delete older complete checkpoints so that `keep` (>= 1) remain: the one just
// saved plus the keep-1 newest others. Re-saving an existing step replaces it atomically. Throws
// "checkpoint step N: ..." on failure, after removing its temporary directory.
void checkpoint_save(const std::string& run_dir, int64_t step, const Model& model, const AdamW& optimizer,
                     const nlohmann::json& state, int keep);

// The newest complete checkpoint directory of a run, "" if none: RUN/latest when it resolves to a complete
// checkpoint, otherwise the highest complete step under RUN/checkpoints (a kill before re-linking is harmless).
std::string checkpoint_latest(const std::string& run_dir);

// Load a checkpoint into a model of the same config (config.json must match exactly) and its optimizer; returns
// state.json. Parameters, moments and step come back bit-identical. Refuses a directory without COMPLETE. On error
// the model and optimizer contents are unspecified (the caller is expected to stop).
nlohmann::json checkpoint_load(const std::string& checkpoint_dir, Model& model, AdamW& optimizer);

}  // namespace dsmoe
