#include "train/adamw.h"

#include <cmath>

namespace dsmoe {

AdamW::AdamW(const ParamSet& params, AdamWOptions opts)
    : options(opts), m(params.arena.size()), v(params.arena.size()), frozen(params.registry.size(), false) {}

void AdamW::update(ParamSet& params, const ParamSet& grads, double lr) {
  ++step;
  const double bias1 = 1.0 - std::pow(options.beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(options.beta2, static_cast<double>(step));
  const float b1 = static_cast<float>(options.beta1), b2 = static_cast<float>(options.beta2);
  const float step_size = static_cast<float>(lr / bias1);
  const float inv_sqrt_bias2 = static_cast<float>(1.0 / std::sqrt(bias2));
  const float eps = static_cast<float>(options.eps);
  for (size_t t = 0; t < params.registry.size(); ++t) {
    if (frozen[t]) continue;
    const TensorSpec& spec = params.registry[t];
    const float decay = spec.weight_decay() ? static_cast<float>(1.0 - lr * options.weight_decay) : 1.0f;
    float* p = params.ptr(spec);
    const float* g = grads.ptr(spec);
    float* mm = m.data() + spec.offset;
    float* vv = v.data() + spec.offset;
    const int64_t n = spec.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) {
      p[i] *= decay;
      mm[i] = b1 * mm[i] + (1.0f - b1) * g[i];
      vv[i] = b2 * vv[i] + (1.0f - b2) * g[i] * g[i];
      p[i] -= step_size * mm[i] / (std::sqrt(vv[i]) * inv_sqrt_bias2 + eps);
    }
  }
}

double clip_grad_norm(ParamSet& grads, double max_norm, const DataParallel* parallel) {
  double sum_sq = 0.0, expert_sq = 0.0;
  for (const TensorSpec& spec : grads.registry) {
    const float* g = grads.ptr(spec);
    const int64_t n = spec.numel();
    double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : s) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(g[i]) * g[i];
    // One process keeps a single running sum (its order is part of the bit-exact resume contract).
    (parallel != nullptr && spec.n_stacked > 0 ? expert_sq : sum_sq) += s;
  }
  if (parallel != nullptr) sum_sq += parallel->expert_sq_norm(expert_sq);
  const double norm = std::sqrt(sum_sq);
  if (max_norm > 0) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
      const float c = static_cast<float>(coef);
      float* g = grads.arena.data();
      const int64_t n = static_cast<int64_t>(grads.arena.size());
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) g[i] *= c;
    }
  }
  return norm;
}

}  // namespace dsmoe
