#include "train/telemetry.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dsmoe {

void MoeLayerStats::add(const MoeActs& acts) {
  const RoutingPlan& plan = acts.plan;
  if (tokens_per_expert.size() != static_cast<size_t>(plan.E)) tokens_per_expert.assign(plan.E, 0);
  for (int64_t e = 0; e < plan.E; ++e) tokens_per_expert[e] += plan.selected_count[e];
  tokens += plan.T;
  dropped += plan.n_dropped;
  double h = 0.0;
  const float* p = acts.probs.data();
#pragma omp parallel for reduction(+ : h) schedule(static)
  for (int64_t i = 0; i < plan.T * plan.E; ++i)
    if (p[i] > 0) h -= static_cast<double>(p[i]) * std::log(static_cast<double>(p[i]));
  entropy_sum += h;
}

double MoeLayerStats::max_vio() const {
  if (tokens_per_expert.empty()) return 0.0;
  const double total = std::accumulate(tokens_per_expert.begin(), tokens_per_expert.end(), 0.0);
  const double mean = total / tokens_per_expert.size();
  const double mx = static_cast<double>(*std::max_element(tokens_per_expert.begin(), tokens_per_expert.end()));
  return mean > 0 ? (mx - mean) / mean : 0.0;
}

int64_t MoeLayerStats::dead_experts() const {
  return std::count(tokens_per_expert.begin(), tokens_per_expert.end(), 0);
}

double MoeLayerStats::router_entropy() const { return tokens > 0 ? entropy_sum / tokens : 0.0; }

double MoeLayerStats::dropped_pct() const {
  const double selections = std::accumulate(tokens_per_expert.begin(), tokens_per_expert.end(), 0.0);
  return selections > 0 ? 100.0 * dropped / selections : 0.0;
}

nlohmann::json MoeLayerStats::to_json(int64_t step) const {
  return {{"type", "moe"},
          {"step", step},
          {"layer", layer},
          {"tokens_per_expert", tokens_per_expert},
          {"max_vio", max_vio()},
          {"dead_experts", dead_experts()},
          {"router_entropy", router_entropy()},
          {"dropped_pct", dropped_pct()}};
}

std::vector<MoeLayerStats> moe_stats_init(const ModelConfig& c) {
  std::vector<MoeLayerStats> stats;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    if (c.is_moe_layer(l)) {
      MoeLayerStats s;
      s.layer = l;
      s.tokens_per_expert.assign(c.n_routed_experts, 0);
      stats.push_back(s);
    }
  return stats;
}

void moe_stats_add(std::vector<MoeLayerStats>& stats, const Activations& acts) {
  for (MoeLayerStats& s : stats) s.add(acts.layers[s.layer].moe);
}

}  // namespace dsmoe
