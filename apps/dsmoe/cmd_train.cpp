// Training commands of the dsmoe CLI: train (and its SFT form, sft), demo.
//
// `dsmoe train [--run-dir RUN] [--preset NAME] [--config RUN.json] [--resume RUN] [--key=value | --key value ...]`
// Every run config key (see --help) is accepted as an override, so the engine-core flags (--model, --data,
// --seq-len, --batch, --steps, --lr, --out, --warmup, --schedule, ...) keep working; --no-shuffle is shuffle=false.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "commands.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model_loading.h"
#include "parallel.h"
#include "report/plot.h"
#include "text/synth.h"
#include "text/tokenizer.h"
#include "train/data.h"
#include "train/ep_plan.h"
#include "train/run.h"
#include "train/telemetry.h"

namespace dsmoe::cli {
namespace {

namespace fs = std::filesystem;

struct TrainArgs {
  std::string run_dir, config, preset, resume;
  bool sft = false;
  int64_t ep = 1;                 // expert-parallel group size (mpirun)
  std::vector<std::string> rest;  // the --key=value overrides
};

// "--key=value", "--key value" and bare boolean flags -> (key, value) pairs.
std::vector<std::pair<std::string, std::string>> parse_overrides(const std::vector<std::string>& args) {
  static const std::vector<std::string> bool_keys = {"sft", "shuffle", "freeze-router", "freeze_router"};
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    check(a.rfind("--", 0) == 0 && a.size() > 2, "unexpected argument '{}' (overrides are --key=value)", a);
    std::string key = a.substr(2), value;
    const size_t eq = key.find('=');
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (key == "no-shuffle" || key == "no_shuffle") {
      key = "shuffle";
      value = "false";
    } else if (std::find(bool_keys.begin(), bool_keys.end(), key) != bool_keys.end()) {
      value = "true";
    } else {
      check(i + 1 < args.size(), "--{} needs a value", key);
      value = args[++i];
    }
    out.push_back({key, value});
  }
  return out;
}

int run_train_command(const TrainArgs& a) {
  RunRequest req;
  req.parallel = data_parallel();
  req.expert_parallel = expert_parallel(a.ep);
  auto overrides = parse_overrides(a.rest);
  if (a.sft) overrides.insert(overrides.begin(), {"sft", "true"});
  if (!a.resume.empty()) {
    check(a.preset.empty() && a.config.empty(), "--resume takes the run's own config; use --key=value to change it");
    check(fs::exists(fs::path(a.resume) / "config.json"), "{} is not a run directory (no config.json)", a.resume);
    req.run_dir = a.resume;
    req.resume = true;
    req.config = resolve_run_config("", (fs::path(a.resume) / "config.json").string(), overrides);
  } else {
    req.run_dir = a.run_dir;
    std::string preset = a.preset;
    if (preset.empty() && a.config.empty() && overrides.empty()) preset = "tiny";
    req.config = resolve_run_config(preset, a.config, overrides);
    if (req.run_dir.empty() && !a.preset.empty()) req.run_dir = "runs/" + a.preset;
    if (!req.run_dir.empty() && fs::exists(fs::path(req.run_dir) / "latest"))
      fail("{} already holds a run; continue it with --resume {} or choose another --run-dir", req.run_dir,
           req.run_dir);
  }
  RunSummary s = train_run(req);
  if (!req.run_dir.empty()) fmt::print("run directory: {} (latest checkpoint: {}/latest)\n", req.run_dir, req.run_dir);
  (void)s;
  return 0;
}

void add_train_options(CLI::App* cmd, TrainArgs& a) {
  cmd->allow_extras();
  cmd->add_option("--run-dir", a.run_dir, "run directory: config.json, metrics.jsonl, checkpoints, latest");
  cmd->add_option("--config", a.config, "run config JSON (keys as below)");
  cmd->add_option("--preset", a.preset, "tiny | demo | bench-train-s | deepseek-moe-16b");
  cmd->add_option("--resume", a.resume, "continue RUN from its newest checkpoint");
  cmd->add_option("--ep", a.ep, "expert-parallel group size under mpirun (1: every rank data-parallel)")
      ->check(CLI::PositiveNumber);
  cmd->footer("Run config keys (defaults <- preset <- --config file <- --key=value):\n" + run_config_help());
}

// ---- dsmoe demo ----

struct DemoArgs {
  std::string run_dir = "demo-run";
};

// Unigram entropy (nats/token) of a token file: the loss of a model that ignores context.
double unigram_entropy(const TokenFile& f) {
  std::map<uint32_t, int64_t> counts;
  for (int64_t i = 0; i < f.size(); ++i) counts[f.data()[i]]++;
  double h = 0;
  for (const auto& [t, n] : counts) {
    const double p = static_cast<double>(n) / f.size();
    h -= p * std::log(p);
  }
  return h;
}

std::string one_line(std::string s, size_t max_chars) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "...";
  return s;
}

int run_demo(const DemoArgs& a) {
  RunRequest req;
  req.parallel = data_parallel();
  req.run_dir = a.run_dir;
  const bool exists = fs::exists(fs::path(a.run_dir) / "latest");
  req.resume = exists;
  req.config = exists ? resolve_run_config("", (fs::path(a.run_dir) / "config.json").string(), {})
                      : resolve_run_config("demo", "", {});
  fmt::print(
      "dsmoe demo: a small DeepSeekMoE (shared + fine-grained routed experts) trained from scratch on the "
      "built-in synthetic corpus; no downloads.\n");
  const RunSummary run = train_run(req);
  // Across MPI ranks, rank 0 alone samples, reports and draws the plots (into the one run directory).
  if (req.parallel != nullptr && req.parallel->rank() != 0) return 0;

  auto model = model_load((fs::path(a.run_dir) / "latest").string());
  const text::Tokenizer tok = text::Tokenizer::load(run.tokenizer_dir);
  TokenFile train = TokenFile::open((fs::path(a.run_dir) / "data" / "corpus.train.bin").string());
  TokenFile val = TokenFile::open(run.val_data);
  // Validation loss over the whole held-out split, against the unigram entropy of the corpus.
  Activations acts;
  std::vector<int32_t> in, tg;
  const int64_t S = req.config.seq_len, n = val.n_windows(S);
  double nll = 0;
  int64_t tokens = 0;
  for (int64_t w0 = 0; w0 < n; w0 += 16) {
    std::vector<int64_t> ids;
    for (int64_t w = w0; w < std::min(n, w0 + 16); ++w) ids.push_back(w);
    load_windows(val, S, ids, in, tg);
    LossReport r = model_step(*model, in.data(), tg.data(), static_cast<int64_t>(ids.size()), S, acts, nullptr);
    nll += r.ce * r.tokens;
    tokens += r.tokens;
  }
  fmt::print("\nval loss {:.3f} nats/token (ppl {:.1f}) vs unigram entropy of the corpus {:.3f}\n", nll / tokens,
             std::exp(nll / tokens), unigram_entropy(train));

  // Samples and expert usage per domain, on fresh documents the model has not seen.
  const ModelConfig& c = model->config;
  std::vector<MoeLayerStats> overall = moe_stats_init(c);
  std::map<std::string, std::vector<MoeLayerStats>> per_domain;
  std::map<std::string, std::string> sample;
  text::SynthGenerator gen(987654321);
  for (int i = 0; i < 400; ++i) {
    text::SynthDoc doc = gen.next();
    std::vector<int32_t> ids = tok.encode(doc.text, true);
    if (static_cast<int64_t>(ids.size()) > S) ids.resize(S);
    const int64_t len = static_cast<int64_t>(ids.size());
    model_forward(*model, ids.data(), 1, len, acts, false);
    auto& stats = per_domain.try_emplace(doc.domain, moe_stats_init(c)).first->second;
    moe_stats_add(stats, acts);
    moe_stats_add(overall, acts);
    if (sample.count(doc.domain) || len < 12) continue;
    std::vector<int32_t> prompt(ids.begin(), ids.begin() + std::min<int64_t>(12, len));
    const size_t n_prompt = prompt.size();
    for (int t = 0; t < 24 && static_cast<int64_t>(prompt.size()) < S; ++t) {
      model_forward(*model, prompt.data(), 1, static_cast<int64_t>(prompt.size()), acts, false);
      const float* row = acts.logits.data() + (prompt.size() - 1) * c.vocab_size;
      const int32_t next = static_cast<int32_t>(std::max_element(row, row + c.vocab_size) - row);
      if (next == tok.eos_id()) break;
      prompt.push_back(next);
    }
    sample[doc.domain] =
        fmt::format("[{}] {} >>> {}", doc.domain,
                    one_line(tok.decode(std::vector<int32_t>(prompt.begin() + 1, prompt.begin() + n_prompt)), 60),
                    one_line(tok.decode(std::vector<int32_t>(prompt.begin() + n_prompt, prompt.end())), 90));
  }
  fmt::print("\nsamples (prompt >>> greedy continuation):\n");
  for (const auto& [domain, line] : sample) fmt::print("  {}\n", line);

  // Expert specialisation: for each domain, the routed experts its tokens use most in the last MoE layer, as the
  // share of that domain's selections, next to the share the same experts get over all domains.
  const size_t last = overall.size() - 1;
  fmt::print("\nexpert specialisation, MoE layer {} ({} routed experts, top-{}; uniform share {:.1f}%):\n",
             overall[last].layer, c.n_routed_experts, c.num_experts_per_tok, 100.0 / c.n_routed_experts);
  for (const auto& [domain, stats] : per_domain) {
    const auto& counts = stats[last].tokens_per_expert;
    const auto& all = overall[last].tokens_per_expert;
    double total = 0, total_all = 0;
    for (size_t e = 0; e < counts.size(); ++e) total += counts[e], total_all += all[e];
    std::vector<size_t> order(counts.size());
    for (size_t e = 0; e < order.size(); ++e) order[e] = e;
    std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return counts[x] > counts[y]; });
    std::string row = fmt::format("  {:<11}", domain);
    for (size_t k = 0; k < 3 && k < order.size(); ++k)
      row += fmt::format("  expert {:>2}: {:4.1f}% (all {:4.1f}%)", order[k], 100 * counts[order[k]] / total,
                         100 * all[order[k]] / total_all);
    fmt::print("{}\n", row);
  }
  fmt::print("\nrun directory: {}  (config.json, metrics.jsonl, checkpoints/, latest)\n", a.run_dir);
  try {
    const report::PlotResult plots = report::plot_run(a.run_dir);
    for (const std::string& f : plots.files) fmt::print("plot: {}\n", f);
  } catch (const Error& e) {  // figures are a bonus: a machine without gnuplot still gets the run
    fmt::print("plots not drawn: {}\n", e.what());
  }
  return 0;
}

}  // namespace

void add_train_commands(CLI::App& app, std::vector<Command>& commands) {
  auto tr = std::make_shared<TrainArgs>();
  CLI::App* train = app.add_subcommand("train", "train or fine-tune: presets, run directories, checkpoints, resume");
  add_train_options(train, *tr);
  commands.push_back({train, [tr, train] {
                        tr->rest = train->remaining();
                        return run_train_command(*tr);
                      }});

  auto sft = std::make_shared<TrainArgs>();
  CLI::App* sft_cmd = app.add_subcommand("sft", "supervised fine-tuning on JSONL conversations (= train --sft)");
  add_train_options(sft_cmd, *sft);
  commands.push_back({sft_cmd, [sft, sft_cmd] {
                        sft->rest = sft_cmd->remaining();
                        sft->sft = true;
                        return run_train_command(*sft);
                      }});

  auto demo = std::make_shared<DemoArgs>();
  CLI::App* demo_cmd = app.add_subcommand("demo", "the built-in default: train a small MoE on synthetic data");
  demo_cmd->add_option("--run-dir", demo->run_dir, "run directory (an existing one is continued)");
  commands.push_back({demo_cmd, [demo] { return run_demo(*demo); }});

  struct PlanArgs {
    std::string config, dtype = "f32";
    EpPlanInput in;
  };
  auto plan = std::make_shared<PlanArgs>();
  CLI::App* plan_cmd = app.add_subcommand("ep-plan",
                                          "communication per rank per step of expert + data parallel "
                                          "training: all-to-all, dense and expert all-reduce, time at a link speed");
  plan_cmd->add_option("--config", plan->config, "model: preset name, model directory or config.json")->required();
  plan_cmd->add_option("--ep", plan->in.ep, "expert-parallel group size")->check(CLI::PositiveNumber);
  plan_cmd->add_option("--dp", plan->in.dp, "data-parallel replicas (ranks = ep x dp)")->check(CLI::PositiveNumber);
  plan_cmd->add_option("--tokens-per-step", plan->in.tokens_per_step, "tokens of one global batch")
      ->required()
      ->check(CLI::PositiveNumber);
  plan_cmd->add_option("--bandwidth", plan->in.bandwidth_gbs, "link bandwidth per rank, GB/s (12.5 = 100 Gb/s)")
      ->check(CLI::PositiveNumber);
  plan_cmd->add_option("--latency", plan->in.latency_us, "per-message latency, microseconds")
      ->check(CLI::NonNegativeNumber);
  plan_cmd->add_option("--dtype", plan->dtype, "element type on the wire: f32 (dsmoe) | bf16")
      ->check(CLI::IsMember({"f32", "bf16"}));
  commands.push_back({plan_cmd, [plan] {
                        const ModelConfig c = config_from_arg(plan->config);
                        plan->in.bytes_per_element = plan->dtype == "bf16" ? 2 : 4;
                        fmt::print("{}", ep_plan_table(c, plan->in, ep_plan(c, plan->in)));
                        return 0;
                      }});
}

}  // namespace dsmoe::cli
