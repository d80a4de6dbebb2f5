// Training throughput benchmark (not a test): one full training step (forward, backward, clip, AdamW) on a
// config, with the machine's sgemm ceiling measured in the same run so the achieved GFLOP/s has a yardstick.
//
//   bench_train [--config bench/configs/bench-train-s.json] [--batch 8] [--seq 512] [--steps 3] [--threads 2]
//               [--json]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/buffer.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/profile.h"
#include "core/threads.h"
#include "model/model.h"
#include "train/data.h"
#include "train/trainer.h"

using namespace dsmoe;
using clock_type = std::chrono::steady_clock;

static double seconds(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Best-of-3 read bandwidth (GB/s) over a 512 MiB buffer with all threads.
static double measure_read_bandwidth() {
  const int64_t n = (512ll << 20) / 4;
  FloatBuffer buf(n);
  for (int64_t i = 0; i < n; ++i) buf[i] = 1.0f;
  double best = 0, sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = clock_type::now();
    double s = 0;
    // 16 independent float lanes per thread so the loop is limited by memory, not by the add latency.
#pragma omp parallel reduction(+ : s)
    {
      float lanes[16] = {};
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; i += 16)
        for (int j = 0; j < 16; ++j) lanes[j] += buf[i + j];
      for (float v : lanes) s += v;
    }
    sink += s;
    best = std::max(best, n * 4.0 / seconds(t0, clock_type::now()) / 1e9);
  }
  return sink > 0 ? best : 0;
}

int main(int argc, char** argv) {
  CLI::App app{"dsmoe training benchmark"};
  std::string config_path = "bench/configs/bench-train-s.json", data_path;
  int64_t B = 8, S = 512, steps = 3;
  int threads = 2;
  bool json = false, profile = false;
  app.add_option("--config", config_path, "HF config.json of the model");
  app.add_option("--batch", B, "sequences per step");
  app.add_option("--seq", S, "sequence length");
  app.add_option("--steps", steps, "timed steps (after one warm-up step)");
  app.add_option("--threads", threads, "threads");
  app.add_flag("--json", json, "print one JSON line");
  app.add_option("--data", data_path,
                 "token file: train on its first windows instead of uniform random tokens "
                 "(routing, and so expert load balance, depends on the data)");
  app.add_flag("--profile", profile, "print time per phase");
  CLI11_PARSE(app, argc, argv);
  try {
    set_num_threads(threads);
    const double sgemm = sgemm_peak_gflops(2048);
    const double bandwidth = measure_read_bandwidth();

    Model model(config_from_file(config_path));
    init_params(model.params, model.config, 1234);
    Rng rng(99);
    std::vector<int32_t> inputs(B * S), targets(B * S);
    for (auto& t : inputs) t = static_cast<int32_t>(rng.next_u64() % model.config.vocab_size);
    for (auto& t : targets) t = static_cast<int32_t>(rng.next_u64() % model.config.vocab_size);
    if (!data_path.empty()) {
      TokenFile data = TokenFile::open(data_path);
      check(data.n_windows(S) >= B, "{}: fewer than {} windows of {}", data_path, B, S);
      std::vector<int64_t> ids(B);
      for (int64_t b = 0; b < B; ++b) ids[b] = b;
      load_windows(data, S, ids, inputs, targets);
    }
    Trainer trainer(model, AdamWOptions{}, 1.0);

    trainer.step(inputs.data(), targets.data(), B, S, 1e-4);  // warm-up: allocates activations and workspace
    profile_enable(profile);
    std::vector<double> times;
    for (int64_t s = 0; s < steps; ++s) {
      auto t0 = clock_type::now();
      trainer.step(inputs.data(), targets.data(), B, S, 1e-4);
      times.push_back(seconds(t0, clock_type::now()));
    }
    double mean = 0;
    for (double t : times) mean += t / times.size();
    const double tokens_per_s = B * S / mean;
    const double gflops = train_flops_per_token(model.config, S) * tokens_per_s / 1e9;
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    const double rss_gb = ru.ru_maxrss / 1048576.0;
    const double state_gb = model.params.arena.size() * 4.0 * 4 / 1e9;  // params + grads + AdamW m, v
    if (json) {
      fmt::print("{}\n", nlohmann::json{{"tokens_per_s", tokens_per_s},
                                        {"step_ms", mean * 1e3},
                                        {"gflops", gflops},
                                        {"sgemm_gflops", sgemm},
                                        {"sgemm_fraction", gflops / sgemm},
                                        {"read_gbps", bandwidth},
                                        {"peak_rss_gb", rss_gb},
                                        {"state_gb", state_gb},
                                        {"threads", threads},
                                        {"batch", B},
                                        {"seq", S}}
                             .dump());
    } else {
      fmt::print("machine: sgemm {:.1f} GFLOP/s, read bandwidth {:.1f} GB/s ({} threads)\n", sgemm, bandwidth, threads);
      fmt::print("model {}: {}\n", config_path, config_summary(model.config));
      fmt::print("train step B={} S={}: {:.1f} ms  ->  {:.1f} tokens/s, {:.1f} GFLOP/s = {:.1f}% of sgemm\n", B, S,
                 mean * 1e3, tokens_per_s, gflops, 100 * gflops / sgemm);
      fmt::print("{}", profile_breakdown(profile_table().seconds, mean, steps));
      fmt::print("memory: peak RSS {:.2f} GB; params+grads+AdamW {:.2f} GB (ratio {:.2f})\n", rss_gb, state_gb,
                 rss_gb / state_gb);
    }
  } catch (const Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
