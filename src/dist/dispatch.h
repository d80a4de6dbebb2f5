// Expert-parallel token exchange of one MoE layer, dropless (Megatron-Core's all-to-all dispatcher): the rows of a
// local RoutingPlan, already sorted by expert, go to the EP ranks that own their experts; the owners run each local
// expert over one contiguous block of rows; combine sends the outputs back into the plan's row order.
//
// Dimension legend: P = ranks of the EP group, E = routed experts, El = E / P experts per rank (rank r owns the
// contiguous experts [r El, (r+1) El)), A = local plan rows, R = rows received, d = row width.
#pragma once
#include <cstdint>
#include <vector>

#include "dist/comm.h"
#include "model/routing.h"

namespace dsmoe::dist {

struct ExpertDispatch {
  int64_t P = 1, E = 0, El = 0;
  std::vector<int64_t> send_rows;      // [P] local plan rows for each rank (contiguous in plan order)
  std::vector<int64_t> recv_counts;    // [P, El] rows from source s for local expert j
  std::vector<int64_t> recv_rows;      // [P] rows from each source
  std::vector<int64_t> local_offsets;  // [El + 1] rows of local expert j, expert-major ([expert][source])
  int64_t received() const { return local_offsets.empty() ? 0 : local_offsets.back(); }
  int64_t rows_of(int64_t j) const { return local_offsets[j + 1] - local_offsets[j]; }
};

// Exchanges the per-expert counts (one all-to-all). E must be a multiple of the group size.
ExpertDispatch dispatch_plan(const Comm& ep, const RoutingPlan& plan);

// rows [A, d] in plan order -> experts [R, d] in expert-major order (one all-to-all-v, then a re-sort).
void dispatch_rows(const Comm& ep, const ExpertDispatch& x, const float* rows, float* experts, int64_t d);
// The inverse: experts [R, d] in expert-major order -> rows [A, d] in plan order.
void combine_rows(const Comm& ep, const ExpertDispatch& x, const float* experts, float* rows, int64_t d);

}  // namespace dsmoe::dist
