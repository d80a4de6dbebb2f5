// The readable scalar reference forward: plain loops, one token at a time, no BLAS, no routing plan.
// It is never optimised; tests check the fast path (model.cpp) against it.
#pragma once
#include <cstdint>
#include <vector>

#include "model/model.h"

namespace dsmoe {

// logits [B*S, V] for inputs [B, S], routed with `routing` (model/routing.h; default: the trained routing).
std::vector<float> reference_forward(const Model& model, const int32_t* inputs, int64_t B, int64_t S,
                                     const RoutingOptions& routing = {});

}  // namespace dsmoe
