// One training step = zero grads, forward + backward over one or more micro-batches (gradient accumulation),
// average, clip, AdamW update. Shared by `dsmoe train`/`sft` and the training benchmark so all measure the same thing.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "train/adamw.h"

namespace dsmoe {

struct MicroBatch {
  const int32_t* inputs;   // [B, S]
  const int32_t* targets;  // [B, S]; < 0 = ignored
  int64_t B, S;
};

struct StepResult {
  LossReport loss;         // averaged over the micro-batches (tokens summed)
  double grad_norm = 0.0;  // before clipping
  double lr = 0.0;
};

struct Trainer {
  Model& model;
  Gradients grads;
  AdamW optimizer;
  Activations acts;
  double grad_clip = 1.0;  // <= 0: off
  // Data parallelism (dist/): this rank's micro-batches are its share of every rank's; losses are the global
  // batch's and gradients are summed over the ranks before clipping. nullptr: one process.
  const DataParallel* parallel = nullptr;
  // Expert parallelism (with `parallel`): this rank computes only its experts, for its EP group's rows.
  const ExpertExchange* experts = nullptr;

  Trainer(Model& model, AdamWOptions options, double grad_clip);
  // Exclude the MoE routers (gate weights) from training: no gradient, no update, no weight decay.
  void freeze_router();
  // Throws dsmoe::Error naming the step, layer and tensor (and leaves the parameters untouched) when the loss or a
  // gradient is not finite.
  StepResult step(const std::vector<MicroBatch>& micro_batches, double lr);
  StepResult step(const int32_t* inputs, const int32_t* targets, int64_t B, int64_t S, double lr) {
    return step(std::vector<MicroBatch>{{inputs, targets, B, S}}, lr);
  }
};

// The first tensor of a parameter or gradient set holding NaN/Inf ("" if none), as "name (layer L)".
std::string first_non_finite(const ParamSet& set);

}  // namespace dsmoe
