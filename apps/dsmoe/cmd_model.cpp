// Model commands of the dsmoe CLI: init, eval, generate, train, info, demo. Each is a thin layer over the library;
// the flags documented in README.md are a scripting contract.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "train/data.h"
#include "train/schedule.h"
#include "train/trainer.h"

namespace dsmoe::cli {
namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---- dsmoe init ----
struct InitArgs {
  std::string config, out, save_dtype = "f32";
  uint64_t seed = 0;
};
int run_init(const InitArgs& a) {
  Model model(config_from_file(a.config));
  init_params(model.params, model.config, a.seed);
  model_save(model, a.out, save_dtype_from_name(a.save_dtype));
  fmt::print("initialised {} (seed {}) -> {}\n{}\n", a.config, a.seed, a.out, config_summary(model.config));
  return 0;
}

// ---- dsmoe eval ----
struct EvalArgs {
  std::string model, data;
  int64_t seq_len = 0, batch = 8;
  bool json = false;
};
int run_eval(const EvalArgs& a) {
  auto model = model_load(a.model);
  TokenFile data = TokenFile::open(a.data);
  data.check_vocab(model->config.vocab_size);
  const int64_t n_windows = data.n_windows(a.seq_len);
  check(n_windows > 0, "{} has {} tokens: too short for one window of {} + 1", a.data, data.size(), a.seq_len);
  Activations acts;
  std::vector<int32_t> inputs, targets;
  double nll_sum = 0.0;
  int64_t tokens = 0;
  for (int64_t w0 = 0; w0 < n_windows; w0 += a.batch) {
    std::vector<int64_t> ids;
    for (int64_t w = w0; w < std::min(n_windows, w0 + a.batch); ++w) ids.push_back(w);
    load_windows(data, a.seq_len, ids, inputs, targets);
    const int64_t B = static_cast<int64_t>(ids.size());
    LossReport r = model_step(*model, inputs.data(), targets.data(), B, a.seq_len, acts, nullptr);
    nll_sum += r.ce * r.tokens;
    tokens += r.tokens;
  }
  const double nll = nll_sum / tokens;
  if (a.json) {
    fmt::print("{}\n", nlohmann::json{{"nll", nll}, {"ppl", std::exp(nll)}, {"tokens", tokens}}.dump());
  } else {
    fmt::print("nll {:.6f}  ppl {:.4f}  tokens {}\n", nll, std::exp(nll), tokens);
  }
  return 0;
}

// ---- dsmoe generate ----
struct GenerateArgs {
  std::string model, prompt_ids;
  int64_t max_new_tokens = 32;
  double temperature = 0.0;
  uint64_t seed = 0;
  bool ids = false;
};
int run_generate(const GenerateArgs& a) {
  auto model = model_load(a.model);
  std::vector<int32_t> tokens = parse_ids(a.prompt_ids);
  check(!tokens.empty(), "--prompt-ids is empty");
  const int64_t V = model->config.vocab_size;
  for (int32_t t : tokens) check(t < V, "prompt token {} is >= vocab_size {}", t, V);
  check(static_cast<int64_t>(tokens.size()) + a.max_new_tokens <= model->config.max_position_embeddings,
        "prompt ({}) + --max-new-tokens ({}) exceeds max_position_embeddings {}", tokens.size(), a.max_new_tokens,
        model->config.max_position_embeddings);
  Activations acts;
  Rng rng(a.seed);
  const size_t n_prompt = tokens.size();
  for (int64_t i = 0; i < a.max_new_tokens; ++i) {
    // Correctness-first decoding: the whole sequence is re-run each token (the KV-cache engine comes later).
    const int64_t S = static_cast<int64_t>(tokens.size());
    model_forward(*model, tokens.data(), 1, S, acts, false);
    const float* row = acts.logits.data() + (S - 1) * V;
    int32_t next = static_cast<int32_t>(std::max_element(row, row + V) - row);
    if (a.temperature > 0) {
      std::vector<double> p(V);
      const double mx = row[next];
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += (p[v] = std::exp((row[v] - mx) / a.temperature));
      double r = rng.uniform() * sum;
      for (int64_t v = 0; v < V; ++v)
        if ((r -= p[v]) <= 0 || v == V - 1) {
          next = static_cast<int32_t>(v);
          break;
        }
    }
    tokens.push_back(next);
    if (!a.ids) fmt::print(stderr, "token {}: {}\n", i, next);
  }
  std::string line;
  for (size_t i = 0; i < tokens.size(); ++i) line += (i ? " " : "") + std::to_string(tokens[i]);
  fmt::print("{}\n", line);
  if (!a.ids) fmt::print(stderr, "prompt {} tokens, generated {}\n", n_prompt, a.max_new_tokens);
  return 0;
}

// ---- dsmoe train ----
struct TrainArgs {
  std::string model, data, out, schedule = "multistep", save_dtype = "f32";
  int64_t seq_len = 0, batch = 8, steps = 0, warmup = 0, log_every = 1;
  double lr = 0, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, grad_clip = 1.0;
  bool no_shuffle = false;
  uint64_t seed = 0;
};
int run_train(const TrainArgs& a) {
  auto model = model_load(a.model);
  const ModelConfig& c = model->config;
  TokenFile data = TokenFile::open(a.data);
  data.check_vocab(c.vocab_size);
  const int64_t n_windows = data.n_windows(a.seq_len);
  check(n_windows > 0, "{} has {} tokens: too short for one window of --seq-len {} + 1", a.data, data.size(),
        a.seq_len);
  const Schedule schedule = schedule_from_name(a.schedule);
  const io::DType save_dtype = save_dtype_from_name(a.save_dtype);
  fmt::print("model {}: {}\ndata {}: {} tokens, {} windows of {}; batch {} x {}, {} steps, {} threads\n", a.model,
             config_summary(c), a.data, data.size(), n_windows, a.seq_len, a.batch, a.seq_len, a.steps,
             num_threads());

  Trainer trainer(*model, AdamWOptions{a.beta1, a.beta2, a.eps, a.weight_decay}, a.grad_clip);
  // Window order: consecutive (--no-shuffle: step s uses windows s*B .. s*B+B-1, wrapping) or a seeded
  // permutation per epoch.
  std::vector<int64_t> order(n_windows);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(a.seed);
  auto shuffle = [&]() {
    for (int64_t i = n_windows - 1; i > 0; --i) std::swap(order[i], order[rng.next_u64() % (i + 1)]);
  };
  if (!a.no_shuffle) shuffle();
  std::vector<int32_t> inputs, targets;
  std::vector<int64_t> ids(a.batch);
  int64_t cursor = 0;
  for (int64_t s = 0; s < a.steps; ++s) {
    for (int64_t b = 0; b < a.batch; ++b) {
      if (cursor == n_windows) {
        cursor = 0;
        if (!a.no_shuffle) shuffle();
      }
      ids[b] = order[cursor++];
    }
    load_windows(data, a.seq_len, ids, inputs, targets);
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = schedule_lr(schedule, a.lr, s, a.steps, a.warmup);
    StepResult r = trainer.step(inputs.data(), targets.data(), a.batch, a.seq_len, lr);
    const double dt = seconds_since(t0);
    if ((s + 1) % a.log_every != 0 && s + 1 != a.steps && s != 0) continue;
    fmt::print("step {:>5}/{}  loss {:.6f}  balance {:.6f}  grad_norm {:.4f}  lr {:.3e}  {:.0f} tok/s\n", s + 1,
               a.steps, r.loss.ce, r.loss.balance, r.grad_norm, r.lr, a.batch * a.seq_len / dt);
    std::fflush(stdout);
  }
  model_save(*model, a.out, save_dtype);
  fmt::print("saved {}\n", a.out);
  return 0;
}

// ---- dsmoe demo ----
// The built-in default job: no downloads, no arguments. A small DeepSeekMoE (shared + fine-grained routed experts)
// learns a synthetic token stream of four pattern families, each document opened by its family's tag token.
struct DemoArgs {
  std::string out = "demo-run";
  int64_t steps = 1200;
};
void write_demo_tokens(const std::string& path, int64_t n_tokens, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint32_t> t;
  while (static_cast<int64_t>(t.size()) < n_tokens) {
    const int64_t family = rng.next_u64() % 4, len = 24 + rng.next_u64() % 40;
    const int64_t a = 8 + rng.next_u64() % (vocab - 8), step = 1 + rng.next_u64() % 5;
    t.push_back(static_cast<uint32_t>(family + 1));  // tag tokens 1..4
    for (int64_t i = 0; i < len; ++i) {
      int64_t v = 0;
      switch (family) {
        case 0: v = a + i * step; break;                 // arithmetic progressions
        case 1: v = a + (i % 3) * 7; break;              // a repeating 3-token motif
        case 2: v = a + (i * i) % 11; break;             // quadratic residues
        case 3: v = (i % 2 == 0) ? a : a + i / 2; break; // interleaved constant and counter
      }
      t.push_back(static_cast<uint32_t>(8 + (v - 8) % (vocab - 8)));
    }
  }
  t.resize(n_tokens);
  FILE* f = std::fopen(path.c_str(), "wb");
  check(f != nullptr, "cannot write {}", path);
  const size_t written = std::fwrite(t.data(), 4, t.size(), f);
  const bool closed = std::fclose(f) == 0;
  check(written == t.size() && closed, "write failed for {} (disk full?)", path);
}
int run_demo(const DemoArgs& a) {
  fs::create_directories(a.out);
  ModelConfig c;
  c.vocab_size = 256;
  c.hidden_size = 128;
  c.intermediate_size = 352;
  c.moe_intermediate_size = 48;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.n_shared_experts = 1;
  c.n_routed_experts = 15;
  c.num_experts_per_tok = 3;
  c.first_k_dense_replace = 1;
  c.aux_loss_alpha = 0.01;
  c.max_position_embeddings = 256;
  c.initializer_range = 0.02;
  c.bos_token_id = 0;
  c.eos_token_id = 5;
  c.validate();
  const std::string model_dir = (fs::path(a.out) / "init").string(), data = (fs::path(a.out) / "train.bin").string();
  const std::string val = (fs::path(a.out) / "val.bin").string(), out = (fs::path(a.out) / "model").string();
  Model model(c);
  init_params(model.params, c, 42);
  model_save(model, model_dir);
  write_demo_tokens(data, 200000, c.vocab_size, 1);
  write_demo_tokens(val, 20000, c.vocab_size, 2);
  config_write_file(c, (fs::path(a.out) / "config.json").string());
  fmt::print("dsmoe demo: a small DeepSeekMoE on a synthetic 4-family token stream (no downloads)\n");
  EvalArgs before{model_dir, val, 64, 16, false};
  fmt::print("val before training: ");
  run_eval(before);
  TrainArgs tr;
  tr.model = model_dir;
  tr.data = data;
  tr.out = out;
  tr.seq_len = 64;
  tr.batch = 16;
  tr.steps = a.steps;
  tr.lr = 3e-3;
  tr.warmup = 10;
  tr.schedule = "multistep";
  tr.log_every = 100;
  run_train(tr);
  EvalArgs after{out, val, 64, 16, false};
  fmt::print("val after training:  ");
  run_eval(after);
  GenerateArgs gen;
  gen.model = out;
  gen.prompt_ids = "1,20,23,26,29,32";  // family tag 1: an arithmetic progression, step 3
  gen.max_new_tokens = 8;
  gen.ids = true;
  fmt::print("greedy continuation of 1,20,23,26,29,32 (the pattern continues 35 38 41 ...): ");
  run_generate(gen);
  fmt::print("run directory: {}\n", a.out);
  return 0;
}

// ---- dsmoe info ----
int run_info(const std::string& path) {
  const std::string config_path = fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  ModelConfig c = config_from_file(config_path);
  fmt::print("{}\n{}\n", config_summary(c), config_to_json(c).dump(2));
  return 0;
}

}  // namespace

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> out;
  std::string cur;
  auto flush = [&]() {
    if (cur.empty()) return;
    size_t pos = 0;
    long long v = 0;
    try {
      v = std::stoll(cur, &pos);
    } catch (...) {
      pos = 0;
    }
    check(pos == cur.size() && v >= 0 && v <= INT32_MAX, "bad token id '{}'", cur);
    out.push_back(static_cast<int32_t>(v));
    cur.clear();
  };
  for (char ch : text) {
    if (ch == ',' || ch == ' ') flush();
    else cur += ch;
  }
  flush();
  return out;
}
void add_model_commands(CLI::App& app, std::vector<Command>& commands) {
  auto init = std::make_shared<InitArgs>();
  CLI::App* init_cmd = app.add_subcommand("init", "write a freshly initialised model as an HF directory");
  init_cmd->add_option("--config", init->config, "HF config.json")->required()->check(CLI::ExistingFile);
  init_cmd->add_option("--seed", init->seed, "random seed");
  init_cmd->add_option("--out", init->out, "output directory")->required();
  init_cmd->add_option("--save-dtype", init->save_dtype, "f32 | f16 | bf16");

  auto eval = std::make_shared<EvalArgs>();
  CLI::App* eval_cmd = app.add_subcommand("eval", "mean NLL and perplexity over a token file");
  eval_cmd->add_option("--model", eval->model, "HF model directory")->required();
  eval_cmd->add_option("--data", eval->data, "flat little-endian uint32 token file")->required();
  eval_cmd->add_option("--seq-len", eval->seq_len, "window length N (windows of N+1, stride N)")
      ->required()
      ->check(CLI::PositiveNumber);
  eval_cmd->add_option("--batch", eval->batch, "windows per forward pass")->check(CLI::PositiveNumber);
  eval_cmd->add_flag("--json", eval->json, "print one JSON object {nll, ppl, tokens}");

  auto gen = std::make_shared<GenerateArgs>();
  CLI::App* gen_cmd = app.add_subcommand("generate", "continue a prompt of token ids");
  gen_cmd->add_option("--model", gen->model, "HF model directory")->required();
  gen_cmd->add_option("--prompt-ids", gen->prompt_ids, "comma-separated token ids")->required();
  gen_cmd->add_option("--max-new-tokens", gen->max_new_tokens, "tokens to generate")->check(CLI::NonNegativeNumber);
  gen_cmd->add_option("--temperature", gen->temperature, "0 = greedy")->check(CLI::NonNegativeNumber);
  gen_cmd->add_option("--seed", gen->seed, "sampling seed");
  gen_cmd->add_flag("--ids", gen->ids, "print only the ids (prompt and continuation)");

  auto tr = std::make_shared<TrainArgs>();
  CLI::App* train_cmd = app.add_subcommand("train", "train or fine-tune a model on a token file");
  train_cmd->add_option("--model", tr->model, "HF model directory to start from")->required();
  train_cmd->add_option("--data", tr->data, "flat little-endian uint32 token file")->required();
  train_cmd->add_option("--seq-len", tr->seq_len, "sequence length")->required()->check(CLI::PositiveNumber);
  train_cmd->add_option("--batch", tr->batch, "sequences per step")->check(CLI::PositiveNumber);
  train_cmd->add_option("--steps", tr->steps, "optimizer steps")->required()->check(CLI::NonNegativeNumber);
  train_cmd->add_option("--lr", tr->lr, "peak learning rate")->required()->check(CLI::NonNegativeNumber);
  train_cmd->add_option("--warmup", tr->warmup, "linear warmup steps")->check(CLI::NonNegativeNumber);
  train_cmd->add_option("--schedule", tr->schedule, "constant | multistep | cosine")
      ->check(CLI::IsMember({"constant", "multistep", "cosine"}));
  train_cmd->add_option("--weight-decay", tr->weight_decay, "AdamW decoupled weight decay");
  train_cmd->add_option("--beta1", tr->beta1, "AdamW beta1");
  train_cmd->add_option("--beta2", tr->beta2, "AdamW beta2");
  train_cmd->add_option("--eps", tr->eps, "AdamW epsilon");
  train_cmd->add_option("--grad-clip", tr->grad_clip, "global gradient norm clip (0 = off)");
  train_cmd->add_option("--log-every", tr->log_every, "print every N-th step (first and last always)")
      ->check(CLI::PositiveNumber);
  train_cmd->add_flag("--no-shuffle", tr->no_shuffle, "step s uses windows s*B..s*B+B-1 (wrapping)");
  train_cmd->add_option("--seed", tr->seed, "shuffle seed");
  train_cmd->add_option("--out", tr->out, "output HF directory")->required();
  train_cmd->add_option("--save-dtype", tr->save_dtype, "f32 | f16 | bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));

  auto demo = std::make_shared<DemoArgs>();
  CLI::App* demo_cmd = app.add_subcommand("demo", "the built-in default: train a small MoE on synthetic data");
  demo_cmd->add_option("--out", demo->out, "run directory");
  demo_cmd->add_option("--steps", demo->steps, "training steps")->check(CLI::PositiveNumber);

  auto info_path = std::make_shared<std::string>();
  CLI::App* info_cmd = app.add_subcommand("info", "describe a model directory or config.json");
  info_cmd->add_option("path", *info_path, "model directory or config.json")->required();

  commands.push_back({init_cmd, [init] { return run_init(*init); }});
  commands.push_back({eval_cmd, [eval] { return run_eval(*eval); }});
  commands.push_back({gen_cmd, [gen] { return run_generate(*gen); }});
  commands.push_back({train_cmd, [tr] { return run_train(*tr); }});
  commands.push_back({info_cmd, [info_path] { return run_info(*info_path); }});
  commands.push_back({demo_cmd, [demo] { return run_demo(*demo); }});
}

}  // namespace dsmoe::cli
