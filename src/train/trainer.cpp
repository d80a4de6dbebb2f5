#include "train/trainer.h"

#include <cmath>

#include "core/error.h"
#include "core/profile.h"

namespace dsmoe {

Trainer::Trainer(Model& m, AdamWOptions options, double clip)
    : model(m), grads(m), optimizer(m.params, options), grad_clip(clip) {}

StepResult Trainer::step(const int32_t* inputs, const int32_t* targets, int64_t B, int64_t S, double lr) {
  StepResult r;
  {
    PROFILE_SCOPE("step.zero_grads");
    grads.zero();
  }
  r.loss = model_step(model, inputs, targets, B, S, acts, &grads);
  check(std::isfinite(r.loss.total()), "step {}: loss is not finite ({}); parameters left unchanged", optimizer.step,
        r.loss.total());
  {
    PROFILE_SCOPE("step.clip");
    r.grad_norm = clip_grad_norm(grads.params, grad_clip);
  }
  check(std::isfinite(r.grad_norm), "step {}: gradient norm is not finite; parameters left unchanged", optimizer.step);
  r.lr = lr;
  PROFILE_SCOPE("step.adamw");
  optimizer.update(model.params, grads.params, lr);
  return r;
}

}  // namespace dsmoe
