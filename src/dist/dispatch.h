// Expert-parallel token exchange of one MoE layer over an MPI communicator (model/parallel.h's ExpertExchange):
// the rows of a local RoutingPlan, already sorted by expert, go to the EP ranks that compute their experts; each
// rank runs its local experts over one contiguous block of rows per expert; combine sends the outputs back into the
// plan's row order. Dropless: counts are exchanged first (one all-to-all), then rows (all-to-all-v).
//
// Dimension legend: P = ranks of the EP group, E = routed experts, El = E / P, A = local plan rows, R = rows
// received, d = row width.
#pragma once
#include <cstdint>
#include <vector>

#include "dist/comm.h"
#include "model/parallel.h"
#include "model/routing.h"

namespace dsmoe::dist {

// Exchanges the per-expert counts (one all-to-all). E must be a multiple of the group size.
ExpertRows dispatch_plan(const Comm& ep, const int64_t* rows_per_expert, int64_t E);
inline ExpertRows dispatch_plan(const Comm& ep, const RoutingPlan& plan) {
  std::vector<int64_t> counts(static_cast<size_t>(plan.E));
  for (int64_t e = 0; e < plan.E; ++e) counts[e] = plan.rows_of(e);
  return dispatch_plan(ep, counts.data(), plan.E);
}

// rows [A, d] in plan order -> experts [R, d] in expert-major order (one all-to-all-v, then a re-sort).
void dispatch_rows(const Comm& ep, const ExpertRows& x, const float* rows, float* experts, int64_t d);
// The inverse: experts [R, d] in expert-major order -> rows [A, d] in plan order.
void combine_rows(const Comm& ep, const ExpertRows& x, const float* experts, float* rows, int64_t d);

// The groups of expert parallelism over `world`: EP group g = world ranks [g E, (g+1) E); the ranks holding the
// same expert slice (its expert-data-parallel group) are E apart. E must divide the world size.
struct ExpertGroups {
  Comm ep, edp;
};
ExpertGroups expert_groups(const Comm& world, int ep_size);

// Bytes of rows this rank sent to other ranks (its own rows stay local), counted by every exchange.
struct ExchangeCounters {
  int64_t alltoall_bytes = 0;
  int64_t exchanges = 0;
};

class MpiExpertExchange final : public ExpertExchange {
 public:
  MpiExpertExchange(Comm ep, int64_t n_routed_experts);
  int64_t first_expert() const override { return first_; }
  int64_t expert_count() const override { return count_; }
  ExpertRows exchange_counts(const int64_t* rows_per_expert, int64_t E) const override;
  void dispatch(const ExpertRows& x, const float* rows, float* received, int64_t d) const override;
  void combine(const ExpertRows& x, const float* received, float* rows, int64_t d) const override;
  const Comm& comm() const { return ep_; }
  const ExchangeCounters& counters() const { return counters_; }

 private:
  void count(const std::vector<int64_t>& sent_rows, int64_t d) const;
  Comm ep_;
  int64_t first_ = 0, count_ = 0;
  mutable ExchangeCounters counters_;
};

}  // namespace dsmoe::dist
