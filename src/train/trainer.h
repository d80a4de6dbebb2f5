// One training step = zero grads, forward, loss, backward, clip, AdamW update. Shared by `dsmoe train` and the
// training benchmark so both measure the same thing.
#pragma once
#include <cstdint>

#include "model/model.h"
#include "train/adamw.h"

namespace dsmoe {

struct StepResult {
  LossReport loss;
  double grad_norm = 0.0;  // before clipping
  double lr = 0.0;
};

struct Trainer {
  Model& model;
  Gradients grads;
  AdamW optimizer;
  Activations acts;
  double grad_clip = 1.0;  // <= 0: off

  Trainer(Model& model, AdamWOptions options, double grad_clip);
  // Throws dsmoe::Error (and leaves the parameters untouched) if the loss or the gradient norm is not finite.
  StepResult step(const int32_t* inputs, const int32_t* targets, int64_t B, int64_t S, double lr);
};

}  // namespace dsmoe
