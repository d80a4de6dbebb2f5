// Model commands of the dsmoe CLI: init, eval, generate, info. Each is a thin layer over the library;
// the flags documented in README.md are a scripting contract.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "infer/engine.h"
#include "infer/generation.h"
#include "infer/sampling.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model_loading.h"
#include "text/tokenizer.h"
#include "train/data.h"
#include "train/run_config.h"
#include "train/schedule.h"
#include "train/trainer.h"

namespace dsmoe::cli {
namespace fs = std::filesystem;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void print_timings(const GenerationTimings& t) {
  if (t.prompt_tokens > 0)
    fmt::print(stderr,
               "prompt eval time = {:10.2f} ms / {:5} tokens ({:8.2f} ms per token, {:8.2f} tokens per second)\n",
               t.prompt_ms, t.prompt_tokens, t.prompt_ms / t.prompt_tokens, t.prompt_tokens * 1e3 / t.prompt_ms);
  if (t.generated > 0)
    fmt::print(stderr,
               "       eval time = {:10.2f} ms / {:5} runs   ({:8.2f} ms per token, {:8.2f} tokens per second)\n",
               t.generation_ms, t.generated, t.generation_ms / t.generated, t.generated * 1e3 / t.generation_ms);
}

namespace {

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
  auto model = model_load_any(a.model);
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
  std::string model, prompt_ids, prompt, tokenizer, kv_type = "f32";
  int64_t max_new_tokens = 32;
  bool no_mmap = false;
  SamplingParams sampling = greedy_defaults();
  std::vector<std::string> stops;
  bool ids = false, ignore_eos = false;
  static SamplingParams greedy_defaults() {
    SamplingParams p;
    p.temperature = 0.0;  // deterministic unless asked otherwise
    return p;
  }
};
int run_generate(const GenerateArgs& a) {
  check(a.prompt.empty() != a.prompt_ids.empty(), "give exactly one of --prompt TEXT or --prompt-ids IDS");
  const QuantType kv_type = quant_type_from_name(a.kv_type);
  // The memory line goes to stderr like the timing lines; --ids prints nothing but the ids.
  LoadedModel loaded = load_for_inference(a.model, a.tokenizer, LoadOptions{!a.no_mmap, !a.ids});
  const InferModel& model = *loaded.model;
  const int64_t V = model.config.vocab_size;
  // Text prompts need a tokenizer: --tokenizer DIR, the model directory's tokenizer.json, or GGUF metadata.
  const std::optional<text::Tokenizer>& tok = loaded.tokenizer;
  check(a.prompt.empty() || tok,
        "--prompt needs a tokenizer (--tokenizer DIR, tokenizer.json in the model dir, or "
        "GGUF tokenizer metadata)");
  check(a.stops.empty() || tok, "--stop needs a tokenizer");
  std::vector<int32_t> tokens = a.prompt.empty() ? parse_ids(a.prompt_ids) : tok->encode(a.prompt, true);
  check(!tokens.empty(), "the prompt is empty");
  for (int32_t t : tokens) check(t < V, "prompt token {} is >= vocab_size {}", t, V);
  const int64_t context = static_cast<int64_t>(tokens.size()) + a.max_new_tokens;
  check(context <= model.config.max_position_embeddings,
        "prompt ({}) + --max-new-tokens ({}) exceeds max_position_embeddings {}", tokens.size(), a.max_new_tokens,
        model.config.max_position_embeddings);
  // Batched prefill of the prompt, then one cached decode step per new token; text streams as it is generated,
  // holding back bytes that could start a stop string.
  GenerationOptions options;
  options.sampling = a.sampling;
  options.max_tokens = a.max_new_tokens;
  options.stops = a.stops;
  if (!a.ignore_eos && model.config.eos_token_id >= 0)
    options.eos_ids = {static_cast<int32_t>(model.config.eos_token_id)};
  InferenceSession session(model, context, kv_type);
  Generation gen(tok ? &*tok : nullptr, options, tokens);
  const std::vector<float>* logits = &session.forward(tokens.data(), static_cast<int64_t>(tokens.size()));
  gen.prompt_done(static_cast<int64_t>(tokens.size()));
  const bool show_text = tok && !a.ids;
  auto emit = [&] {
    const std::string piece = gen.take_text();
    if (!show_text || piece.empty()) return;
    fmt::print("{}", piece);
    std::fflush(stdout);
  };
  while (gen.step(logits->data(), V)) {
    emit();
    const int32_t next = gen.last_token();
    logits = &session.forward(&next, 1);
  }
  emit();
  if (!show_text) {
    std::string line;
    const std::vector<int32_t>& all = gen.history();
    for (size_t i = 0; i < all.size(); ++i) line += (i ? " " : "") + std::to_string(all[i]);
    fmt::print("{}\n", line);
  } else {
    fmt::print("\n");
    std::fflush(stdout);  // the text ends before the timing lines on stderr
  }
  if (a.ids) return 0;  // --ids: nothing but the ids
  // llama.cpp-style timings (stderr)
  print_timings(gen.timings());
  return 0;
}

// ---- dsmoe info ----
int run_info(const std::string& path) {
  const ModelConfig c = config_from_arg(path);
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
    if (ch == ',' || ch == ' ')
      flush();
    else
      cur += ch;
  }
  flush();
  return out;
}
void add_sampling_options(CLI::App& cmd, SamplingParams& sp) {
  cmd.add_option("--temperature", sp.temperature, "0 = greedy")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd.add_option("--top-k", sp.top_k, "keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd.add_option("--top-p", sp.top_p, "nucleus: smallest set with probability >= p (1 = off)")->capture_default_str();
  cmd.add_option("--min-p", sp.min_p, "drop tokens below min-p x the top probability (0 = off)")->capture_default_str();
  cmd.add_option("--repeat-penalty", sp.repetition_penalty, "repetition penalty (1 = off)")->capture_default_str();
  cmd.add_option("--presence-penalty", sp.presence_penalty, "presence penalty (0 = off)")->capture_default_str();
  cmd.add_option("--frequency-penalty", sp.frequency_penalty, "frequency penalty (0 = off)")->capture_default_str();
  cmd.add_option("--repeat-last-n", sp.penalty_last_n, "tokens the penalties look back over")->capture_default_str();
  cmd.add_option("--seed", sp.seed, "sampling seed: the same seed reproduces the same text")->capture_default_str();
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
  eval_cmd->add_option("--model", eval->model, "HF model directory or GGUF file")->required();
  eval_cmd->add_option("--data", eval->data, "flat little-endian uint32 token file")->required();
  eval_cmd->add_option("--seq-len", eval->seq_len, "window length N (windows of N+1, stride N)")
      ->required()
      ->check(CLI::PositiveNumber);
  eval_cmd->add_option("--batch", eval->batch, "windows per forward pass")->check(CLI::PositiveNumber);
  eval_cmd->add_flag("--json", eval->json, "print one JSON object {nll, ppl, tokens}");

  auto gen = std::make_shared<GenerateArgs>();
  CLI::App* gen_cmd = app.add_subcommand("generate", "continue a prompt of token ids");
  gen_cmd->add_option("--model", gen->model, "HF model directory or GGUF file")->required();
  gen_cmd->add_option("--prompt-ids", gen->prompt_ids, "comma-separated token ids");
  gen_cmd->add_option("--prompt", gen->prompt, "prompt text (needs a tokenizer; BOS as the tokenizer config says)");
  gen_cmd->add_option("--tokenizer", gen->tokenizer, "tokenizer directory (default: the model directory's)");
  gen_cmd->add_option("--max-new-tokens,-n", gen->max_new_tokens, "tokens to generate")->check(CLI::NonNegativeNumber);
  add_sampling_options(*gen_cmd, gen->sampling);
  gen_cmd->add_option("--stop", gen->stops, "stop string (repeatable)");
  gen_cmd->add_flag("--ignore-eos", gen->ignore_eos, "keep going after the end-of-sequence token");
  gen_cmd->add_flag("--ids", gen->ids, "print only the ids (prompt and continuation)");
  gen_cmd->add_option("--kv-type", gen->kv_type, "KV cache type: f32 | f16")->check(CLI::IsMember({"f32", "f16"}));
  gen_cmd->add_flag("--no-mmap", gen->no_mmap, "read the GGUF weights into memory instead of mapping the file");

  auto info_path = std::make_shared<std::string>();
  CLI::App* info_cmd = app.add_subcommand("info", "describe a model directory or config.json");
  info_cmd->add_option("path", *info_path, "model directory, config.json or preset name")->required();

  commands.push_back({init_cmd, [init] { return run_init(*init); }});
  commands.push_back({eval_cmd, [eval] { return run_eval(*eval); }});
  commands.push_back({gen_cmd, [gen] { return run_generate(*gen); }});
  commands.push_back({info_cmd, [info_path] { return run_info(*info_path); }});
}

}  // namespace dsmoe::cli
