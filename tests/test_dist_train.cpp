// Data- and expert-parallel training under mpiexec (np 1, 2, 4; ctest runs each) equals one process on the global
// batch. Layouts: every EP group size dividing np (1, 2, 4): ranks [g E, (g+1) E) form EP group g, each computing
// 8 / E of the 8 routed experts for the rows its group routes to them. Every rank builds the same model and the same
// global batch of 4 sequences, trains one copy alone on all of it (the reference) and one copy on its share
// (sequences [r B/W, (r+1) B/W)) with MpiDataParallel (+ MpiExpertExchange), then compares:
// step-1 loss and balance losses (<= 1e-6 relative: the only difference is the order of the cross-rank sums),
// every gradient after the reduction (<= 1e-5 relative to the tensor's largest entry), and 20 AdamW steps with
// clipping forced on (losses <= 1e-5 relative, final weights <= 1e-4). Configurations: the per-sequence expert-level
// loss (seq_aux), the batch-level one, the device-level loss with D = 4, and token dropping (capacity factor 1).
// Exit 0 only when every rank passed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dist/comm.h"
#include "dist/data_parallel.h"
#include "dist/dispatch.h"
#include "model/model.h"
#include "model/params.h"
#include "test_util.h"
#include "train/ep_plan.h"
#include "train/trainer.h"

using namespace dsmoe;
using dsmoe::testing::tiny_config;

namespace {

constexpr int64_t kB = 4, kS = 12;
// The learning rate of the 20 steps: 3e-3 keeps the tiny model from memorising the one batch within them, where a
// loss far below 1 amplifies the last-bit differences of the cross-rank sums beyond the 1e-5 the test allows.
constexpr double kLr = 3e-3;

struct Failures {
  int rank = 0;
  double count = 0;
  void check(bool ok, const std::string& what) {
    if (ok) return;
    std::fprintf(stderr, "rank %d: %s\n", rank, what.c_str());
    count += 1;
  }
};

double rel(double a, double b) { return std::fabs(a - b) / std::max(1e-12, std::max(std::fabs(a), std::fabs(b))); }

// max |a - b| / max |a| over one tensor.
double tensor_rel(const float* a, const float* b, int64_t n) {
  double diff = 0.0, scale = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(a[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

void run_config(const std::string& name, ModelConfig c, const dist::MpiDataParallel& dp,
                const dist::MpiExpertExchange* ep, Failures& f) {
  c.validate();
  const int W = dp.size(), r = dp.rank();
  const int64_t Bl = kB / W;
  std::mt19937 rng(5);
  std::vector<int32_t> inputs(kB * kS), targets(kB * kS);
  for (auto& t : inputs) t = static_cast<int32_t>(rng() % c.vocab_size);
  for (auto& t : targets) t = static_cast<int32_t>(rng() % c.vocab_size);
  targets[3] = -1;  // an ignored target: the mean is over counted targets of every rank
  const int32_t* my_in = inputs.data() + r * Bl * kS;
  const int32_t* my_tg = targets.data() + r * Bl * kS;

  // Under expert parallelism the rank holds only the experts it computes (a slice of every stacked expert tensor),
  // initialised as that slice of the one-process model.
  const ExpertSlice slice = ep != nullptr ? ExpertSlice{ep->first_expert(), ep->expert_count()} : ExpertSlice{};
  Model alone(c), shared(c, slice);
  init_params(alone.params, c, 11);
  init_params(shared.params, c, 11);
  // The same tensor of the one-process model, at this rank's slice.
  auto whole = [&](const ParamSet& set, size_t i, const ParamSet& local) {
    const TensorSpec& mine = local.registry[i];
    const int64_t per = mine.n_stacked > 0 ? mine.numel() / mine.n_stacked : 0;
    return set.ptr(set.registry[i]) + mine.first_expert * per;
  };
  for (size_t i = 0; i < alone.params.registry.size(); ++i)
    f.check(tensor_rel(whole(alone.params, i, shared.params), shared.params.ptr(shared.params.registry[i]),
                       shared.params.registry[i].numel()) == 0,
            fmt::format("{}: initial {} is not the one-process model's", name, shared.params.registry[i].name));
  const AdamWOptions opt{0.9, 0.95, 1e-8, 0.1};
  Trainer one(alone, opt, 0.05), many(shared, opt, 0.05);  // clip 0.05: forced on at these losses
  many.parallel = &dp;
  many.experts = ep;

  // Step 1: losses and gradients.
  const StepResult a = one.step(inputs.data(), targets.data(), kB, kS, kLr);
  const StepResult b = many.step(my_in, my_tg, Bl, kS, kLr);
  f.check(rel(a.loss.ce, b.loss.ce) <= 1e-6,
          fmt::format("{}: step-1 ce {} vs one process {}", name, b.loss.ce, a.loss.ce));
  f.check(rel(a.loss.balance, b.loss.balance) <= 1e-6,
          fmt::format("{}: step-1 balance {} vs one process {}", name, b.loss.balance, a.loss.balance));
  for (size_t l = 0; l < a.loss.per_layer.size(); ++l) {
    f.check(rel(a.loss.per_layer[l].expert, b.loss.per_layer[l].expert) <= 1e-6,
            fmt::format("{}: layer {} expert-level loss", name, l));
    f.check(rel(a.loss.per_layer[l].device, b.loss.per_layer[l].device) <= 1e-6,
            fmt::format("{}: layer {} device-level loss", name, l));
  }
  f.check(a.loss.tokens == b.loss.tokens,
          fmt::format("{}: counted tokens {} vs {}", name, b.loss.tokens, a.loss.tokens));
  f.check(rel(a.grad_norm, b.grad_norm) <= 1e-5,
          fmt::format("{}: grad norm {} vs one process {}", name, b.grad_norm, a.grad_norm));
  for (size_t i = 0; i < many.grads.params.registry.size(); ++i) {
    const TensorSpec& spec = many.grads.params.registry[i];
    const double d =
        tensor_rel(whole(one.grads.params, i, many.grads.params), many.grads.params.ptr(spec), spec.numel());
    f.check(d <= 1e-5, fmt::format("{}: gradient of {} (layer {}) differs by {:.2e}", name, spec.name, spec.layer, d));
  }
  // Steps 2..20.
  for (int s = 2; s <= 20; ++s) {
    const StepResult x = one.step(inputs.data(), targets.data(), kB, kS, kLr);
    const StepResult y = many.step(my_in, my_tg, Bl, kS, kLr);
    f.check(rel(x.loss.total(), y.loss.total()) <= 1e-5,
            fmt::format("{}: step {} loss {} vs one process {}", name, s, y.loss.total(), x.loss.total()));
  }
  for (size_t i = 0; i < shared.params.registry.size(); ++i) {
    const TensorSpec& spec = shared.params.registry[i];
    const double d = tensor_rel(whole(alone.params, i, shared.params), shared.params.ptr(spec), spec.numel());
    f.check(d <= 1e-4, fmt::format("{}: weights of {} (layer {}) after 20 steps differ by {:.2e}", name, spec.name,
                                   spec.layer, d));
  }
}

}  // namespace

int main(int argc, char** argv) {
  dist::Runtime runtime(&argc, &argv);
  const dist::MpiDataParallel dp(dist::Comm::world());
  Failures f;
  f.rank = dp.rank();
  if (kB % dp.size() != 0) {
    if (dp.rank() == 0)
      std::fprintf(stderr, "test_dist_train: the batch of %lld does not split over %d ranks\n",
                   static_cast<long long>(kB), dp.size());
    return 2;
  }
  try {
    for (int ep_size : {1, 2, 4}) {
      if (dp.size() % ep_size != 0) continue;
      // EP group g: world ranks [g E, (g+1) E); ranks holding the same experts are E apart.
      const dist::ExpertGroups groups = dist::expert_groups(dp.comm(), ep_size);
      const dist::Comm& ep_comm = groups.ep;
      // The data parallelism of this layout: with EP, expert slices reduce over the ranks holding the same slice.
      dist::MpiDataParallel dpl(dp.comm());
      if (ep_size > 1) dpl.slice_experts(groups.ep, groups.edp);
      auto config = [] {
        ModelConfig c = tiny_config();
        c.n_routed_experts = 8;
        return c;
      };
      const dist::MpiExpertExchange exchange(ep_comm, 8);
      const dist::MpiExpertExchange* ep = ep_size > 1 ? &exchange : nullptr;
      const std::string layout = fmt::format("np {} ep {}: ", dp.size(), ep_size);
      ModelConfig seq = config();
      seq.seq_aux = true;
      run_config(layout + "seq_aux", seq, dpl, ep, f);
      ModelConfig batch = config();
      batch.seq_aux = false;
      run_config(layout + "batch-level expert loss", batch, dpl, ep, f);
      ModelConfig device = config();
      device.device_aux_loss_alpha = 0.05;
      device.n_expert_groups = 4;  // one process with D = 4 against EP = 4 (and every other layout)
      run_config(layout + "device-level loss, D = 4", device, dpl, ep, f);
      // Token dropping: capacity ceil(1.0 * 48 * 2 / 8) = 12 rows per expert over the global batch; the earliest
      // tokens are kept across the ranks in rank order, as one process keeps them.
      ModelConfig dropping = config();
      dropping.capacity_factor = 1.0;
      run_config(layout + "capacity factor 1.0 (dropping)", dropping, dpl, ep, f);
      if (ep != nullptr && exchange.counters().exchanges == 0) f.check(false, layout + "no expert exchange happened");
      if (ep != nullptr) {
        // Counters == the cost model (train/ep_plan.h): with k = every routed expert, each token sends exactly
        // (P - 1) / P of its rows to other ranks, so the model's all-to-all figure is exact, not an expectation.
        ModelConfig all = tiny_config();
        all.n_routed_experts = 4;
        all.num_experts_per_tok = 4;
        all.validate();
        const dist::MpiExpertExchange ex4(ep_comm, 4);
        dist::MpiDataParallel dp4(dp.comm());
        dp4.slice_experts(groups.ep, groups.edp);
        Model m(all, ExpertSlice{ex4.first_expert(), ex4.expert_count()});
        init_params(m.params, all, 3);
        Trainer t(m, AdamWOptions{}, 1.0);
        t.parallel = &dp4;
        t.experts = &ex4;
        std::vector<int32_t> ids(kB / dp.size() * kS);
        for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7 + dp.rank()) % all.vocab_size);
        t.step(ids.data(), ids.data(), kB / dp.size(), kS, 1e-3);
        EpPlanInput in;
        in.ep = ep_size;
        in.dp = dp.size() / ep_size;
        in.tokens_per_step = kB * kS;
        in.bytes_per_element = 4;
        const double want = ep_plan(all, in).alltoall_bytes;
        f.check(static_cast<double>(ex4.counters().alltoall_bytes) == want,
                fmt::format("{}all-to-all bytes sent in one step {} != the cost model's {}", layout,
                            ex4.counters().alltoall_bytes, want));
        // The gradient all-reduce: dense parameters over all ranks, each expert slice over its DP group of
        // np / EP ranks, as the model counts them.
        const EpPlan plan = ep_plan(all, in);
        auto near = [](double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::fabs(b)); };
        f.check(near(dp4.counters().dense_bytes, plan.dense_allreduce_bytes),
                fmt::format("{}dense all-reduce bytes {} != the cost model's {}", layout, dp4.counters().dense_bytes,
                            plan.dense_allreduce_bytes));
        f.check(near(dp4.counters().expert_bytes, plan.expert_allreduce_bytes),
                fmt::format("{}expert all-reduce bytes {} != the cost model's {}", layout, dp4.counters().expert_bytes,
                            plan.expert_allreduce_bytes));
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", dp.rank(), e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  double failures = f.count;
  dp.comm().allreduce_sum(&failures, 1);
  if (dp.rank() == 0)
    std::printf("test_dist_train np=%d: %s (%g failed checks over all ranks)\n", dp.size(),
                failures == 0 ? "PASS" : "FAIL", failures);
  return failures == 0 ? 0 : 1;
}
