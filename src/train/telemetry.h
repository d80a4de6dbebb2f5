// MoE routing telemetry per layer: what the router does, logged at the eval cadence.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"

namespace dsmoe {

struct MoeLayerStats {
  int64_t layer = 0;
  std::vector<int64_t> tokens_per_expert;  // top-k selections per routed expert (before capacity dropping)
  int64_t tokens = 0;                      // tokens routed (T)
  int64_t dropped = 0;                     // assignments dropped by capacity
  double entropy_sum = 0.0;                // sum over tokens of the router distribution's entropy (nats)

  void add(const MoeActs& acts);               // accumulate one forward pass of this layer
  double max_vio() const;                      // (max - mean) / mean of tokens_per_expert
  int64_t dead_experts() const;                // experts that received no token
  double router_entropy() const;               // mean entropy per token
  double dropped_pct() const;                  // dropped / (tokens * k) * 100
  nlohmann::json to_json(int64_t step) const;  // a {"type": "moe", ...} metrics record
};

// One entry per MoE layer of the model, in layer order.
std::vector<MoeLayerStats> moe_stats_init(const ModelConfig& config);
void moe_stats_add(std::vector<MoeLayerStats>& stats, const Activations& acts);

}  // namespace dsmoe
