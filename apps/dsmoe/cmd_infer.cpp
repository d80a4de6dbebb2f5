// Inference commands of the dsmoe CLI: bench (llama-bench style prompt-processing and generation throughput),
// quantize (GGUF export).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "infer/engine.h"
#include "model/checkpoint.h"
#include "model/gguf_model.h"

namespace dsmoe::cli {
namespace {

namespace fs = std::filesystem;

struct BenchArgs {
  std::string model, output = "md";
  int64_t n_prompt = 512, n_gen = 128, reps = 5;
  int threads = 0;
};

struct Stats {
  std::vector<double> ns;  // one sample per repetition
  int64_t tokens = 0;
  double avg_ns() const {
    double s = 0;
    for (double v : ns) s += v;
    return s / ns.size();
  }
  double sd_ns() const {
    if (ns.size() < 2) return 0;
    const double m = avg_ns();
    double s = 0;
    for (double v : ns) s += (v - m) * (v - m);
    return std::sqrt(s / (ns.size() - 1));
  }
  std::vector<double> ts() const {
    std::vector<double> out;
    for (double v : ns) out.push_back(tokens * 1e9 / v);
    return out;
  }
  double avg_ts() const {
    double s = 0;
    for (double v : ts()) s += v;
    return s / ns.size();
  }
  double sd_ts() const {
    const std::vector<double> t = ts();
    if (t.size() < 2) return 0;
    const double m = avg_ts();
    double s = 0;
    for (double v : t) s += (v - m) * (v - m);
    return std::sqrt(s / (t.size() - 1));
  }
};

int run_bench(const BenchArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  auto model = model_load_any(a.model);
  const ModelConfig& c = model->config;
  Rng rng(1);
  auto random_tokens = [&](int64_t n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng.next_u64() % c.vocab_size);
    return t;
  };
  const int64_t context = std::max<int64_t>(a.n_prompt, a.n_gen) + 1;
  InferenceSession session(*model, std::min(context, c.max_position_embeddings));
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto ns_since = [&](auto t0) { return std::chrono::duration<double, std::nano>(now() - t0).count(); };
  Stats pp, tg;
  pp.tokens = a.n_prompt;
  tg.tokens = a.n_gen;
  for (int64_t r = -1; r < a.reps; ++r) {  // r = -1: warm-up, not recorded
    if (a.n_prompt > 0) {
      std::vector<int32_t> prompt = random_tokens(a.n_prompt);
      session.reset();
      const auto t0 = now();
      session.forward(prompt.data(), a.n_prompt);  // logits for the last token only
      if (r >= 0) pp.ns.push_back(ns_since(t0));
    }
    if (a.n_gen > 0) {
      std::vector<int32_t> gen = random_tokens(a.n_gen);
      session.reset();
      const auto t0 = now();
      for (int64_t i = 0; i < a.n_gen; ++i) session.forward(&gen[i], 1);
      if (r >= 0) tg.ns.push_back(ns_since(t0));
    }
  }
  const std::string type = fmt::format("deepseek {:.2f}B F32", c.n_params() / 1e9);
  const std::string file = fs::path(a.model).filename().string();
  if (a.output == "json") {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [stats, n_prompt, n_gen] : {std::tuple{&pp, a.n_prompt, int64_t{0}}, std::tuple{&tg, int64_t{0}, a.n_gen}}) {
      if (stats->ns.empty()) continue;
      out.push_back({{"model_filename", file}, {"model_type", type}, {"n_threads", num_threads()},
                     {"n_prompt", n_prompt}, {"n_gen", n_gen}, {"avg_ns", static_cast<int64_t>(stats->avg_ns())},
                     {"stddev_ns", static_cast<int64_t>(stats->sd_ns())}, {"avg_ts", stats->avg_ts()},
                     {"stddev_ts", stats->sd_ts()}, {"samples_ns", stats->ns}, {"samples_ts", stats->ts()}});
    }
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("| model | size | params | threads | test | t/s |\n|---|---:|---:|---:|---:|---:|\n");
  const double size_gib = model->params.arena.size() * 4.0 / (1ull << 30);
  if (!pp.ns.empty())
    fmt::print("| {} | {:.2f} GiB | {:.2f} B | {} | pp{} | {:.2f} ± {:.2f} |\n", type, size_gib, c.n_params() / 1e9,
               num_threads(), a.n_prompt, pp.avg_ts(), pp.sd_ts());
  if (!tg.ns.empty())
    fmt::print("| {} | {:.2f} GiB | {:.2f} B | {} | tg{} | {:.2f} ± {:.2f} |\n", type, size_gib, c.n_params() / 1e9,
               num_threads(), a.n_gen, tg.avg_ts(), tg.sd_ts());
  return 0;
}

struct QuantizeArgs {
  std::string model, type = "q8_0", out;
};
int run_quantize(const QuantizeArgs& a) {
  check(fs::path(a.out).extension() == ".gguf", "--out {} should end in .gguf", a.out);
  const QuantType type = quant_type_from_name(a.type);
  auto model = model_load_any(a.model);
  // This first version holds the F32 model in memory while writing (peak RSS ~ F32 size); norms and the router
  // stay F32 whatever the type.
  model_save_gguf(*model, a.out, type, fs::path(a.model).filename().string());
  fmt::print("wrote {} ({}, {:.2f} GB)\n", a.out, quant_type_name(type), fs::file_size(a.out) / 1e9);
  return 0;
}

}  // namespace

void add_infer_commands(CLI::App& app, std::vector<Command>& commands) {
  auto b = std::make_shared<BenchArgs>();
  CLI::App* bench = app.add_subcommand("bench", "llama-bench style throughput: pp (prompt) and tg (generation)");
  bench->add_option("--model,-m", b->model, "HF model directory or GGUF file")->required();
  bench->add_option("-p,--n-prompt", b->n_prompt, "prompt tokens (logits for the last one only)")
      ->check(CLI::NonNegativeNumber);
  bench->add_option("-n,--n-gen", b->n_gen, "generated tokens (single-token decodes)")->check(CLI::NonNegativeNumber);
  bench->add_option("-r,--repetitions", b->reps, "repetitions after a warm-up")->check(CLI::PositiveNumber);
  bench->add_option("-t,--threads", b->threads, "threads")->check(CLI::NonNegativeNumber);
  bench->add_option("-o,--output", b->output, "md | json")->check(CLI::IsMember({"md", "json"}));
  commands.push_back({bench, [b] { return run_bench(*b); }});

  auto q = std::make_shared<QuantizeArgs>();
  CLI::App* quantize = app.add_subcommand("quantize", "write a model as a GGUF file (llama.cpp deepseek layout)");
  quantize->add_option("--model", q->model, "HF model directory or GGUF file")->required();
  quantize->add_option("--type", q->type, "f32 | f16 | bf16 | q8_0 | q4_0")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0"}));
  quantize->add_option("--out", q->out, "output .gguf file")->required();
  commands.push_back({quantize, [q] { return run_quantize(*q); }});
}

}  // namespace dsmoe::cli
