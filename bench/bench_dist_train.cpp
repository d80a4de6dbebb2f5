// Expert + data parallel training speed under mpiexec: the global batch (--batch sequences of --seq tokens, uniform
// random tokens as bench_train) split over the ranks, EP groups of --ep ranks; median step time over the timed steps
// after one warm-up, split into phases (rank 0's view): all-to-all (counts and rows), permute (re-sorting received
// rows), gradient all-reduce, optimizer, and compute (the rest). Compare
//   mpiexec -np 2 bench_dist_train --threads 1 --ep 2     against     bench_dist_train --threads 2
// on the same cores (bench-train-s).
#include <algorithm>
#include <chrono>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/profile.h"
#include "core/threads.h"
#include "dist/comm.h"
#include "dist/data_parallel.h"
#include "dist/dispatch.h"
#include "model/model.h"
#include "model/params.h"
#include "train/trainer.h"

using namespace dsmoe;

int main(int argc, char** argv) {
  dist::Runtime runtime(&argc, &argv);
  CLI::App app{"dsmoe expert/data-parallel training benchmark (run under mpiexec)"};
  std::string config_path = "bench/configs/bench-train-s.json";
  int64_t B = 8, S = 512, steps = 5, ep = 1;
  int threads = 1;
  app.add_option("--config", config_path, "HF config.json of the model");
  app.add_option("--batch", B, "sequences per step (global)");
  app.add_option("--seq", S, "sequence length");
  app.add_option("--steps", steps, "timed steps (after one warm-up step)");
  app.add_option("--threads", threads, "threads per rank");
  app.add_option("--ep", ep, "expert-parallel group size");
  CLI11_PARSE(app, argc, argv);
  try {
    set_num_threads(threads);
    const dist::Comm world = dist::Comm::world();
    const int W = world.size(), r = world.rank();
    check(B % W == 0 && W % ep == 0, "--batch {} and --ep {} must divide the {} ranks' work", B, ep, W);
    dist::MpiDataParallel dp(world);
    const ModelConfig config = config_from_file(config_path);
    std::unique_ptr<dist::MpiExpertExchange> exchange;
    ExpertSlice slice;
    if (ep > 1) {  // as `dsmoe train --ep`: each rank holds and computes its slice of the experts
      dist::ExpertGroups groups = dist::expert_groups(world, static_cast<int>(ep));
      exchange = std::make_unique<dist::MpiExpertExchange>(groups.ep, config.n_routed_experts);
      dp.slice_experts(std::move(groups.ep), std::move(groups.edp));
      slice = {exchange->first_expert(), exchange->expert_count()};
    }
    Model model(config, slice);
    init_params(model.params, model.config, 1234);
    const int64_t Bl = B / W;
    Rng rng(99 + r);
    std::vector<int32_t> inputs(Bl * S), targets(Bl * S);
    for (auto& t : inputs) t = static_cast<int32_t>(rng.next_u64() % model.config.vocab_size);
    for (auto& t : targets) t = static_cast<int32_t>(rng.next_u64() % model.config.vocab_size);
    Trainer trainer(model, AdamWOptions{}, 1.0);
    if (W > 1) trainer.parallel = &dp;
    trainer.experts = exchange.get();
    trainer.step(inputs.data(), targets.data(), Bl, S, 1e-4);  // warm-up
    profile_enable(true);
    std::vector<double> times;
    for (int64_t s = 0; s < steps; ++s) {
      world.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      trainer.step(inputs.data(), targets.data(), Bl, S, 1e-4);
      world.barrier();
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    double total = 0;
    for (double t : times) total += t;
    const auto& table = profile_table().seconds;
    auto phase = [&](const std::string& name) {
      auto it = table.find(name);
      return it == table.end() ? 0.0 : it->second / static_cast<double>(steps);
    };
    const double a2a = phase("ep.alltoall"), permute = phase("ep.permute"), allreduce = phase("step.allreduce");
    const double adam = phase("step.adamw"), mean = total / static_cast<double>(steps);
    if (r == 0) {
      fmt::print("{}\n", nlohmann::json{{"ranks", W},
                                        {"ep", ep},
                                        {"threads_per_rank", threads},
                                        {"batch", B},
                                        {"seq", S},
                                        {"step_s_median", median},
                                        {"tokens_per_s", B * S / median},
                                        {"phases_s",
                                         {{"compute", mean - a2a - permute - allreduce - adam},
                                          {"permute", permute},
                                          {"alltoall", a2a},
                                          {"allreduce", allreduce},
                                          {"optimizer", adam}}},
                                        {"alltoall_bytes_per_step",
                                         exchange ? exchange->counters().alltoall_bytes / (steps + 1) : 0},
                                        {"params_held", model.params.arena.size()}}
                             .dump());
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 0;
}
