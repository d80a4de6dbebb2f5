#include "train/ep_plan.h"

#include <fmt/format.h>

#include "core/error.h"

namespace dsmoe {

int64_t routed_expert_params(const ModelConfig& c) {
  return c.n_moe_layers() * c.n_routed_experts * 3 * c.hidden_size * c.moe_intermediate_size;
}

EpPlan ep_plan(const ModelConfig& c, const EpPlanInput& in) {
  check(in.ep >= 1 && in.dp >= 1, "ep-plan: --ep and --dp must be >= 1");
  check(in.tokens_per_step >= 1, "ep-plan: --tokens-per-step must be >= 1");
  check(in.bandwidth_gbs > 0 && in.latency_us >= 0, "ep-plan: --bandwidth must be > 0 and --latency >= 0");
  check(in.bytes_per_element > 0, "ep-plan: the bytes per element must be > 0");
  check(c.n_routed_experts == 0 ? in.ep == 1 : c.n_routed_experts % in.ep == 0,
        "ep-plan: --ep {} does not divide the model's {} routed experts", in.ep, c.n_routed_experts);
  EpPlan p;
  p.ranks = in.ep * in.dp;
  check(in.tokens_per_step % p.ranks == 0, "ep-plan: {} tokens per step do not split evenly over {} ranks",
        in.tokens_per_step, p.ranks);
  p.tokens_per_rank = in.tokens_per_step / p.ranks;
  p.moe_layers = c.n_moe_layers();
  p.expert_params = routed_expert_params(c);
  p.dense_params = c.n_params() - p.expert_params;
  const double b = in.bytes_per_element, W = static_cast<double>(p.ranks), E = static_cast<double>(in.ep);
  const double D = static_cast<double>(in.dp);
  p.alltoall_bytes = static_cast<double>(p.tokens_per_rank) * c.num_experts_per_tok * c.hidden_size * b * 4.0 *
                     static_cast<double>(p.moe_layers) * (E - 1) / E;
  p.alltoall_messages = 4 * p.moe_layers * (in.ep - 1);
  p.dense_allreduce_bytes = 2 * (W - 1) / W * static_cast<double>(p.dense_params) * b;
  p.dense_allreduce_messages = 2 * (p.ranks - 1);
  p.expert_allreduce_bytes = 2 * (D - 1) / D * static_cast<double>(p.expert_params) / E * b;
  p.expert_allreduce_messages = 2 * (in.dp - 1);
  const double lat = in.latency_us * 1e-6, bw = in.bandwidth_gbs * 1e9;
  p.alltoall_seconds = lat * static_cast<double>(p.alltoall_messages) + p.alltoall_bytes / bw;
  p.dense_allreduce_seconds = lat * static_cast<double>(p.dense_allreduce_messages) + p.dense_allreduce_bytes / bw;
  p.expert_allreduce_seconds = lat * static_cast<double>(p.expert_allreduce_messages) + p.expert_allreduce_bytes / bw;
  return p;
}

std::string ep_plan_table(const ModelConfig& c, const EpPlanInput& in, const EpPlan& p) {
  auto gb = [](double bytes) { return fmt::format("{:.3f}", bytes / 1e9); };
  std::string out = fmt::format(
      "{} ranks = EP {} x DP {}; {} tokens per step, {} per rank; {} MoE layers, top-{} of {} routed experts, d = {};\n"
      "{:.3f}B dense + {:.3f}B routed-expert parameters; {} bytes per element; link {:g} GB/s, {:g} us latency\n",
      p.ranks, in.ep, in.dp, in.tokens_per_step, p.tokens_per_rank, p.moe_layers, c.num_experts_per_tok,
      c.n_routed_experts, c.hidden_size, p.dense_params / 1e9, p.expert_params / 1e9, in.bytes_per_element,
      in.bandwidth_gbs, in.latency_us);
  out += "| per rank per step | GB | messages | seconds |\n|---|---:|---:|---:|\n";
  out += fmt::format("| all-to-all (dispatch + combine, fwd + bwd) | {} | {} | {:.4g} |\n", gb(p.alltoall_bytes),
                     p.alltoall_messages, p.alltoall_seconds);
  out += fmt::format("| dense all-reduce | {} | {} | {:.4g} |\n", gb(p.dense_allreduce_bytes),
                     p.dense_allreduce_messages, p.dense_allreduce_seconds);
  out += fmt::format("| expert all-reduce | {} | {} | {:.4g} |\n", gb(p.expert_allreduce_bytes),
                     p.expert_allreduce_messages, p.expert_allreduce_seconds);
  out += fmt::format("| total | {} | {} | {:.4g} |\n",
                     gb(p.alltoall_bytes + p.dense_allreduce_bytes + p.expert_allreduce_bytes),
                     p.alltoall_messages + p.dense_allreduce_messages + p.expert_allreduce_messages, p.total_seconds());
  return out;
}

}  // namespace dsmoe
