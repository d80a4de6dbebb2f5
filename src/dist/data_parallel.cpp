#include "dist/data_parallel.h"

#include <algorithm>
#include <vector>

#include "core/profile.h"
#include "model/params.h"

namespace dsmoe::dist {

void MpiDataParallel::count(bool expert, int64_t floats, int group) const {
  const double bytes = 2.0 * (group - 1) / group * static_cast<double>(floats) * sizeof(float);
  (expert ? counters_.expert_bytes : counters_.dense_bytes) += bytes;
  counters_.reductions += 1;
}

void MpiDataParallel::sum_gradients(ParamSet& grads) const {
  PROFILE_SCOPE("step.allreduce");
  if (edp_ == nullptr) {  // every rank holds every tensor: one reduction over the whole arena
    comm_.allreduce_sum(grads.arena.data(), static_cast<int64_t>(grads.arena.size()));
    count(false, static_cast<int64_t>(grads.arena.size()), comm_.size());
    return;
  }
  // Runs of consecutive tensors of one kind (the arena follows the registry): dense over the world, expert slices
  // over the ranks holding the same slice. Every rank walks the same registry, so the collectives match.
  const std::vector<TensorSpec>& reg = grads.registry;
  for (size_t i = 0; i < reg.size();) {
    const bool expert = reg[i].n_stacked > 0;
    size_t j = i;
    int64_t n = 0;
    while (j < reg.size() && (reg[j].n_stacked > 0) == expert) n += reg[j++].numel();
    const Comm& group = expert ? *edp_ : comm_;
    group.allreduce_sum(grads.ptr(reg[i]), n);
    count(expert, n, group.size());
    i = j;
  }
}

void MpiDataParallel::gather_expert_slices(const float* local, int64_t n, float* whole) const {
  if (ep_ == nullptr) {
    std::copy(local, local + n, whole);
    return;
  }
  std::vector<float> unused;  // the first rank of another EP group receives its group's copy and drops it
  if (whole == nullptr && ep_->rank() == 0) {
    unused.resize(static_cast<size_t>(n * ep_->size()));
    whole = unused.data();
  }
  ep_->gather_to_first(local, n, whole);
}

}  // namespace dsmoe::dist
