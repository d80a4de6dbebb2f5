// AdamW with PyTorch's semantics (torch.optim.AdamW) and clip_grad_norm_.
// Moments share the parameters' arena layout, so an update is one loop per tensor.
#pragma once
#include <cstdint>
#include <vector>

#include "core/buffer.h"
#include "model/parallel.h"
#include "model/params.h"

namespace dsmoe {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  // decoupled; only on tensors with >= 2 dims (never norms)
};

struct AdamW {
  AdamWOptions options;
  FloatBuffer m, v;          // first / second moments, parameter layout
  int64_t step = 0;          // updates done
  std::vector<bool> frozen;  // per registry tensor: true = never updated (e.g. a frozen router)

  AdamW(const ParamSet& params, AdamWOptions options);
  // One update with learning rate lr (PyTorch order: decay, moments, bias-corrected step with eps after sqrt).
  void update(ParamSet& params, const ParamSet& grads, double lr);
};

// Global L2 norm of all gradients, then scale them by min(1, max_norm / (norm + 1e-6)) as
// torch.nn.utils.clip_grad_norm_ does. max_norm <= 0 disables clipping. Returns the norm before clipping.
// With `parallel` holding sliced experts, their part of the norm is summed over the EP group (each expert once).
double clip_grad_norm(ParamSet& grads, double max_norm, const DataParallel* parallel = nullptr);

}  // namespace dsmoe
