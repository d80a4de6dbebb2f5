#include "train/trainer.h"

#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "core/profile.h"

namespace dsmoe {

Trainer::Trainer(Model& m, AdamWOptions options, double clip)
    : model(m), grads(m), optimizer(m.params, options), grad_clip(clip) {}

void Trainer::freeze_router() {
  for (size_t i = 0; i < model.params.registry.size(); ++i)
    if (model.params.registry[i].role == TensorRole::router) optimizer.frozen[i] = true;
}

std::string first_non_finite(const ParamSet& grads) {
  for (const TensorSpec& spec : grads.registry) {
    const float* g = grads.ptr(spec);
    for (int64_t i = 0; i < spec.numel(); ++i)
      if (!std::isfinite(g[i]))
        return spec.layer >= 0 ? fmt::format("{} (layer {})", spec.name, spec.layer) : spec.name;
  }
  return "";
}

// The first layer whose input (the residual stream) is not finite, for a non-finite loss.
static std::string first_non_finite_activation(const Activations& acts, int64_t T, int64_t d) {
  for (size_t l = 0; l < acts.layers.size(); ++l) {
    const float* x = acts.layers[l].x.data();
    for (int64_t i = 0; i < T * d; ++i)
      if (!std::isfinite(x[i])) return fmt::format("the input of layer {}", l == 0 ? 0 : l);
  }
  return "the final norm / lm_head";
}

StepResult Trainer::step(const std::vector<MicroBatch>& micro, double lr) {
  check(!micro.empty(), "a training step needs at least one micro-batch");
  StepResult r;
  {
    PROFILE_SCOPE("step.zero_grads");
    grads.zero();
  }
  double ce_sum = 0.0, balance_sum = 0.0;
  acts.parallel = {parallel, experts};
  for (const MicroBatch& mb : micro) {
    LossReport l = model_step(model, mb.inputs, mb.targets, mb.B, mb.S, acts, &grads);
    if (!std::isfinite(l.total())) {
      const std::string bad_param = first_non_finite(model.params);
      fail("step {}: loss is not finite ({}); {}; parameters left unchanged", optimizer.step + 1, l.total(),
           bad_param.empty() ? "first non-finite activation at " +
                                   first_non_finite_activation(acts, mb.B * mb.S, model.config.hidden_size)
                             : "parameter " + bad_param + " holds NaN/Inf");
    }
    ce_sum += l.ce;
    balance_sum += l.balance;
    r.loss.tokens += l.tokens;
    if (r.loss.per_layer.empty()) r.loss.per_layer = l.per_layer;
  }
  const double n = static_cast<double>(micro.size());
  r.loss.ce = ce_sum / n;
  r.loss.balance = balance_sum / n;
  if (parallel != nullptr) {  // every rank's share of the gradient: the global batch's
    parallel->sum_gradients(grads.params);
  }
  if (micro.size() > 1) {  // the step's loss is the mean of the micro-batch losses
    const float scale = static_cast<float>(1.0 / n);
    float* g = grads.params.arena.data();
    const int64_t count = static_cast<int64_t>(grads.params.arena.size());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) g[i] *= scale;
  }
  for (size_t i = 0; i < grads.params.registry.size(); ++i)  // frozen tensors take no part in the norm either
    if (optimizer.frozen[i]) {
      const TensorSpec& spec = grads.params.registry[i];
      std::fill(grads.params.ptr(spec), grads.params.ptr(spec) + spec.numel(), 0.0f);
    }
  {
    PROFILE_SCOPE("step.clip");
    r.grad_norm = clip_grad_norm(grads.params, grad_clip, parallel);
  }
  if (!std::isfinite(r.grad_norm))
    fail("step {}: gradient of {} is not finite; parameters left unchanged", optimizer.step + 1,
         first_non_finite(grads.params));
  r.lr = lr;
  PROFILE_SCOPE("step.adamw");
  optimizer.update(model.params, grads.params, lr);
  return r;
}

}  // namespace dsmoe
