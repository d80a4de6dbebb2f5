// Inference commands of the dsmoe CLI: bench (llama-bench style prompt-processing and generation throughput),
// quantize and synth (streaming GGUF writers), perplexity (with KL divergence against saved log-probabilities).
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "core/membw.h"
#include "core/profile.h"
#include "core/progress.h"
#include "core/threads.h"
#include "infer/engine.h"
#include "infer/logprob_file.h"
#include "io/gguf.h"
#include "model/config.h"
#include "model/gguf_model.h"
#include "model_loading.h"
#include "text/gguf_vocab.h"
#include "text/tokenizer.h"
#include "train/data.h"
#include "train/run_config.h"

namespace dsmoe::cli {
namespace {

namespace fs = std::filesystem;

struct BenchArgs {
  std::string model, output = "md", kv_type = "f32";
  std::vector<int64_t> n_prompt{512}, n_gen{128};  // lists, as llama-bench: -p 128,512 -n 32
  int64_t reps = 5;
  int64_t batch = 1;  // tg: sequences decoding together, one batched forward per step (a server's slots)
  int threads = 0;
  bool no_mmap = false, no_pack = false, profile = false, no_ceiling = false;
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
  auto positive = [](int64_t v) { return v > 0; };
  check(std::any_of(a.n_prompt.begin(), a.n_prompt.end(), positive) ||
            std::any_of(a.n_gen.begin(), a.n_gen.end(), positive),
        "bench: nothing to measure (every -p and -n value is 0)");
  if (a.threads > 0) set_num_threads(a.threads);
  const QuantType kv_type = quant_type_from_name(a.kv_type);
  LoadOptions load_options{!a.no_mmap, false, false};
  load_options.pack = !a.no_pack;
  LoadedModel loaded = load_for_inference(a.model, "", load_options);
  const InferModel& model = *loaded.model;
  const ModelConfig& c = model.config;
  Rng rng(1);
  auto random_tokens = [&](int64_t n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng.next_u64() % c.vocab_size);
    return t;
  };
  // One test per list entry, as llama-bench: pp<N> for each prompt length, tg<N> for each generation length.
  struct Test {
    int64_t n_prompt = 0, n_gen = 0;
    Stats stats;
    std::map<std::string, double> phases;  // --profile: seconds per phase, summed over repetitions
  };
  std::vector<Test> tests;
  int64_t context = 1;
  for (int64_t p : a.n_prompt)
    if (p > 0) tests.push_back({p, 0, {}, {}}), context = std::max(context, p + 1);
  for (int64_t n : a.n_gen)
    if (n > 0) tests.push_back({0, n, {}, {}}), context = std::max(context, n + 1);
  InferenceSession session(model, std::min(context, c.max_position_embeddings), kv_type);
  // --batch B: B sequences, each its own cache, decoding together (what `serve --parallel B` does per step).
  Engine batch_engine(model, std::min(context, c.max_position_embeddings));
  std::vector<KvCache> caches(static_cast<size_t>(a.batch));
  std::vector<std::vector<float>> batch_logits(static_cast<size_t>(a.batch), std::vector<float>(c.vocab_size));
  if (a.batch > 1)
    for (KvCache& kv : caches) kv.init(c, std::min(context, c.max_position_embeddings), kv_type);
  // What bounds decoding: the bytes of weights one token reads (llama.cpp's roofline figure).
  const double bytes_per_token = static_cast<double>(model.active_bytes_per_token());
  fmt::print(stderr, "weights {:.1f} MB, read per decoded token {:.1f} MB ({}{})\n", model.weight_bytes() / 1e6,
             bytes_per_token / 1e6, model.type_summary, model.packed_bytes ? ", Q8_0/Q4_0 packed" : "");
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto ns_since = [&](auto t0) { return std::chrono::duration<double, std::nano>(now() - t0).count(); };
  for (Test& test : tests) {
    const int64_t streams = test.n_gen > 0 ? a.batch : 1;
    test.stats.tokens = test.n_prompt + test.n_gen * streams;
    for (int64_t r = -1; r < a.reps; ++r) {  // r = -1: warm-up, not recorded
      std::vector<int32_t> tokens = random_tokens(test.stats.tokens);
      session.reset();
      for (KvCache& kv : caches) kv.clear();
      profile_enable(a.profile && r >= 0);
      profile_table().seconds.clear();
      const auto t0 = now();
      if (test.n_prompt > 0) session.forward(tokens.data(), test.n_prompt);  // logits for the last token only
      if (streams == 1) {
        for (int64_t i = 0; i < test.n_gen; ++i) session.forward(&tokens[i], 1);
      } else {
        std::vector<SeqBatch> step(static_cast<size_t>(streams));
        for (int64_t i = 0; i < test.n_gen; ++i) {
          for (int64_t b = 0; b < streams; ++b)
            step[b] = {&caches[b], &tokens[b * test.n_gen + i], 1, batch_logits[b].data()};
          batch_engine.forward(step.data(), step.size());
        }
      }
      const double ns = ns_since(t0);
      profile_enable(false);
      if (r < 0) continue;
      test.stats.ns.push_back(ns);
      for (const auto& [k, v] : profile_table().seconds) test.phases[k] += v;
      test.phases["total"] += ns * 1e-9;
    }
  }
  profile_table().seconds.clear();
  // The ceilings this run is measured against: the machine's read bandwidth (a summing loop over 1 GiB with these
  // threads) bounds decoding; FLOPs per prompt token (2 per active weight, causal attention) give prefill GFLOP/s.
  const bool any_tg = std::any_of(tests.begin(), tests.end(), [](const Test& t) { return t.n_gen > 0; });
  const double ceiling_gbs = (a.no_ceiling || !any_tg) ? 0.0 : memory_read_bandwidth_gbs();
  const double lm_head_flops = 2.0 * static_cast<double>(c.vocab_size) * c.hidden_size;
  auto pp_gflops = [&](const Test& t) {
    const double n = static_cast<double>(t.n_prompt);
    const double attn_flops = 4.0 * c.num_hidden_layers * c.num_attention_heads * c.head_dim() * (n * (n + 1) / 2);
    const double flops = 2.0 * static_cast<double>(c.n_active_params()) * n - (n - 1) * lm_head_flops +
                         attn_flops;  // logits for the last token only
    return flops / t.stats.avg_ns();
  };
  auto tg_gbs = [&](const Test& t) { return bytes_per_token * t.stats.avg_ts() / 1e9; };
  auto name = [&](const Test& t) {
    if (t.n_prompt > 0) return fmt::format("pp{}", t.n_prompt);
    return a.batch > 1 ? fmt::format("tg{} x{}", t.n_gen, a.batch) : fmt::format("tg{}", t.n_gen);
  };
  const std::string type = fmt::format("deepseek {:.2f}B {}", c.n_params() / 1e9, model.type_summary);
  const std::string file = fs::path(a.model).filename().string();
  if (a.profile) {
    for (const Test& t : tests) {
      const double total = t.phases.at("total");
      const double per = static_cast<double>(t.stats.ns.size() * (t.n_prompt > 0 ? 1 : t.n_gen));
      double named = 0.0;
      fmt::print(stderr, "profile {} (ms per {}):\n", name(t), t.n_prompt > 0 ? "prompt" : "token");
      for (const auto& [k, v] : t.phases) {
        if (k == "total") continue;
        if (k != "barrier_wait") named += v;  // barrier wait lies inside the phases that run parallel products
        fmt::print(stderr, "  {:<16} {:9.3f}  {:5.1f}%\n", k, v * 1e3 / per, 100.0 * v / total);
      }
      fmt::print(stderr, "  {:<16} {:9.3f}  {:5.1f}%\n", "other", (total - named) * 1e3 / per,
                 100.0 * (total - named) / total);
      fmt::print(stderr, "  {:<16} {:9.3f}\n", "total", total * 1e3 / per);
    }
  }
  if (a.output == "json") {
    nlohmann::json out = nlohmann::json::array();
    for (const Test& t : tests) {
      const Stats& st = t.stats;
      nlohmann::json rec = {{"model_filename", file},
                            {"model_type", type},
                            {"n_threads", num_threads()},
                            {"n_prompt", t.n_prompt},
                            {"n_gen", t.n_gen},
                            {"avg_ns", static_cast<int64_t>(st.avg_ns())},
                            {"stddev_ns", static_cast<int64_t>(st.sd_ns())},
                            {"avg_ts", st.avg_ts()},
                            {"stddev_ts", st.sd_ts()},
                            {"samples_ns", st.ns},
                            {"samples_ts", st.ts()}};
      if (t.n_gen > 0 && a.batch > 1) {
        rec["n_batch"] = a.batch;  // aggregate t/s of a.batch sequences; bytes per token depend on the routing
      } else if (t.n_gen > 0) {
        rec["bytes_per_token"] = bytes_per_token;
        rec["gbs"] = tg_gbs(t);
        if (ceiling_gbs > 0) {
          rec["bandwidth_ceiling_gbs"] = ceiling_gbs;
          rec["roofline_fraction"] = tg_gbs(t) / ceiling_gbs;
        }
      } else {
        rec["gflops"] = pp_gflops(t);
      }
      out.push_back(rec);
    }
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("| model | size | params | threads | test | t/s | throughput |\n|---|---:|---:|---:|---:|---:|---:|\n");
  const double size_gib = model.weight_bytes() / static_cast<double>(1ull << 30);
  for (const Test& t : tests) {
    std::string throughput;
    if (t.n_prompt > 0) {
      throughput = fmt::format("{:.1f} GFLOP/s", pp_gflops(t));
    } else if (a.batch > 1) {
      throughput = fmt::format("{} sequences, aggregate", a.batch);
    } else {
      const std::string roof =
          ceiling_gbs > 0 ? fmt::format(", {:.0f}% of {:.1f} GB/s", 100.0 * tg_gbs(t) / ceiling_gbs, ceiling_gbs) : "";
      throughput = fmt::format("{:.1f} MB/token, {:.1f} GB/s{}", bytes_per_token / 1e6, tg_gbs(t), roof);
    }
    fmt::print("| {} | {:.2f} GiB | {:.2f} B | {} | {} | {:.2f} ± {:.2f} | {} |\n", type, size_gib, c.n_params() / 1e9,
               num_threads(), name(t), t.stats.avg_ts(), t.stats.sd_ts(), throughput);
  }
  return 0;
}

// ---- dsmoe quantize / dsmoe synth: stream a model into a GGUF file ----
struct QuantizeArgs {
  std::string model, type = "q8_0", out, tokenizer;
  bool all_same_type = false;
};

// Tokenizer metadata to embed: --tokenizer DIR, else the HF directory's tokenizer.json; none is a warning (the
// file then runs in dsmoe with --tokenizer, but llama.cpp needs the metadata).
std::vector<io::GgufKV> tokenizer_kvs_for(const std::string& tokenizer_dir, const std::string& model_dir,
                                          int64_t vocab_size) {
  std::string dir = tokenizer_dir;
  if (dir.empty() && !model_dir.empty() && fs::exists(fs::path(model_dir) / "tokenizer.json")) dir = model_dir;
  if (dir.empty()) {
    fmt::print(stderr, "warning: no tokenizer given: the GGUF file holds no tokenizer metadata (llama.cpp needs it)\n");
    return {};
  }
  return text::tokenizer_to_gguf(text::Tokenizer::load(dir), vocab_size);
}

// Writes the file, then a summary like llama-quantize's: tensors per type (with their share of the bytes), and
// bits per weight over all tensors (norms and router included, as llama.cpp's loader counts them).
void write_streaming(const ModelConfig& c, const GgufTensorSource& source, const std::string& out,
                     GgufWriteOptions options) {
  check(io::is_gguf_path(out), "--out {} should end in .gguf", out);
  const std::vector<GgufTensorPlan> plan = gguf_tensor_plan(c, options);
  size_t total = 0;
  for (const GgufTensorPlan& p : plan) total += p.bytes;
  Progress progress("writing " + fs::path(out).filename().string(), static_cast<int64_t>(total));
  options.progress = [&](size_t done, size_t) { progress.update(static_cast<int64_t>(done)); };
  gguf_write_model(c, source, out, options);
  progress.finish();
  struct TypeCount {
    int tensors = 0;
    size_t bytes = 0;
  };
  std::map<uint32_t, TypeCount> types;  // by ggml id: F32, F16, Q4_0, ... in id order
  double weights = 0;
  for (const GgufTensorPlan& p : plan) {
    TypeCount& tc = types[static_cast<uint32_t>(p.type)];
    ++tc.tensors;
    tc.bytes += p.bytes;
    weights += static_cast<double>(p.spec.numel());
  }
  std::string mix;
  for (const auto& [id, tc] : types)
    mix += fmt::format("{}{} x{}", mix.empty() ? "" : ", ", quant_type_name(static_cast<QuantType>(id)), tc.tensors);
  fmt::print("wrote {} ({:.2f} GB; tensors: {})\n", out, fs::file_size(out) / 1e9, mix);
  fmt::print("type {} (general.file_type {}): {:.2f} MiB of tensors, {:.4f} bits per weight\n",
             file_type_name(gguf_file_type(options)), static_cast<uint32_t>(gguf_file_type(options)), total / 1048576.0,
             total * 8.0 / weights);
}

int run_quantize(const QuantizeArgs& a) {
  GgufWriteOptions options;
  options.ftype = file_type_from_name(a.type);
  options.keep_8bit = !a.all_same_type;
  StreamingModelSource src = open_streaming_source(a.model);
  options.name = src.name;
  options.source_in_gguf_layout = src.gguf_layout;
  options.extra_kvs = !a.tokenizer.empty() || !src.gguf_layout
                          ? tokenizer_kvs_for(a.tokenizer, src.gguf_layout ? "" : a.model, src.config.vocab_size)
                          : src.tokenizer_kvs;
  write_streaming(src.config, src.source, a.out, options);
  return 0;
}

struct SynthArgs {
  std::string preset, config, type = "q4_0", out, tokenizer;
  uint64_t seed = 1;
  bool all_same_type = false;
};

int run_synth(const SynthArgs& a) {
  check(a.preset.empty() != a.config.empty(), "give exactly one of --preset NAME or --config config.json");
  ModelConfig c;
  if (a.preset.empty()) {
    c = config_from_file(a.config);
  } else {
    nlohmann::json j = model_preset_config(a.preset);
    j.erase("vocab_from_tokenizer");
    c = config_from_json(j, "preset " + a.preset);
  }
  GgufWriteOptions options;
  options.ftype = file_type_from_name(a.type);
  options.keep_8bit = !a.all_same_type;
  options.name = a.preset.empty() ? fs::path(a.config).stem().string() : a.preset + "-random";
  options.extra_kvs = tokenizer_kvs_for(a.tokenizer, "", c.vocab_size);
  fmt::print(stderr, "random weights for {} ({:.2f} B parameters) as {}\n", options.name, c.n_params() / 1e9,
             file_type_name(*options.ftype));
  write_streaming(c, random_tensor_source(c, a.seed), a.out, options);
  return 0;
}

// ---- dsmoe perplexity ----
// --save-logits / --kld-base read and write infer/logprob_file.h's format.
struct PerplexityArgs {
  std::string model, text, data, tokenizer, save_logits, kld_base;
  int64_t seq_len = 0;
  bool no_mmap = false;
};
int run_perplexity(const PerplexityArgs& a) {
  check(a.text.empty() != a.data.empty(), "give exactly one of --text FILE or --data TOKENS.bin");
  check(a.seq_len > 0, "--ctx/--seq-len must be > 0");
  LoadedModel loaded = load_for_inference(a.model, a.tokenizer, LoadOptions{!a.no_mmap, false});
  const InferModel& model = *loaded.model;
  const int64_t V = model.config.vocab_size, S = a.seq_len;
  check(S <= model.config.max_position_embeddings, "--ctx {} exceeds max_position_embeddings {}", S,
        model.config.max_position_embeddings);
  std::vector<int32_t> stream;
  if (!a.text.empty()) {
    check(loaded.tokenizer.has_value(),
          "--text needs a tokenizer (--tokenizer DIR, the model dir's tokenizer.json "
          "or GGUF tokenizer metadata)");
    const text::Tokenizer& tok = *loaded.tokenizer;
    std::ifstream in(a.text, std::ios::binary);
    check(in.good(), "cannot open {}", a.text);
    const std::string content((std::istreambuf_iterator<char>(in)), {});
    stream = tok.encode(content, true);
  } else {
    TokenFile f = TokenFile::open(a.data);
    stream.assign(f.data(), f.data() + f.size());
  }
  for (int32_t t : stream) check(t >= 0 && t < V, "token {} is outside the model's vocabulary [0, {})", t, V);
  const int64_t n_windows = static_cast<int64_t>(stream.size()) > S ? (static_cast<int64_t>(stream.size()) - 1) / S : 0;
  check(n_windows > 0, "{} tokens: too short for one window of {} + 1", stream.size(), S);
  const int64_t n_tokens = n_windows * S;

  std::optional<LogprobWriter> save;
  if (!a.save_logits.empty()) save.emplace(a.save_logits, n_tokens, V);
  std::optional<LogprobReader> base;
  if (!a.kld_base.empty()) {
    base.emplace(a.kld_base);
    check(base->tokens() == n_tokens && base->vocab() == V, "{}: holds {} tokens x {} vocab, this evaluation {} x {}",
          a.kld_base, base->tokens(), base->vocab(), n_tokens, V);
  }
  // One window per prefill through the inference engine, so quantized models run on their quantized weights.
  InferenceSession session(model, S);
  std::vector<float> logits, logp(V), base_row(V);
  double nll = 0;
  KlDivergence kld;
  for (int64_t w = 0; w < n_windows; ++w) {
    session.reset();
    session.forward_all(stream.data() + w * S, S, logits);
    for (int64_t s = 0; s < S; ++s) {
      const float* row = logits.data() + s * V;
      const float mx = *std::max_element(row, row + V);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
      const float log_z = static_cast<float>(std::log(sum)) + mx;
      for (int64_t v = 0; v < V; ++v) logp[v] = row[v] - log_z;
      nll -= logp[stream[w * S + s + 1]];
      if (save) save->write_row(logp.data());
      if (base) {
        base->read_row(base_row.data());
        kld.add_row(base_row.data(), logp.data(), V);
      }
    }
  }
  if (save) save->finish();
  fmt::print("perplexity {:.4f}  (nll {:.6f} over {} tokens, {} windows of {})\n", std::exp(nll / n_tokens),
             nll / n_tokens, n_tokens, n_windows, S);
  if (base)
    fmt::print("vs {}: mean KLD {:.6f}, same top token {:.2f}%\n", a.kld_base, kld.mean(), kld.same_top_percent());
  return 0;
}

}  // namespace

void add_infer_commands(CLI::App& app, std::vector<Command>& commands) {
  const auto kTokenCount = CLI::Validator(
      [](std::string& v) -> std::string {
        int64_t n = -1;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || end != v.data() + v.size() || n < 0 || n > (int64_t{1} << 24))
          return fmt::format("'{}' is not a token count (an integer in [0, 16777216])", v);
        return {};
      },
      "TOKENS");
  auto b = std::make_shared<BenchArgs>();
  CLI::App* bench = app.add_subcommand("bench", "llama-bench style throughput: pp (prompt) and tg (generation)");
  bench->add_option("--model,-m", b->model, "HF model directory or GGUF file")->required();
  bench
      ->add_option("-p,--n-prompt", b->n_prompt,
                   "prompt tokens, a comma-separated list (logits for the last one only; 0: none)")
      ->delimiter(',')
      ->check(kTokenCount);
  bench->add_option("-n,--n-gen", b->n_gen, "generated tokens, a comma-separated list (single-token decodes; 0: none)")
      ->delimiter(',')
      ->check(kTokenCount);
  bench->add_option("-r,--repetitions", b->reps, "repetitions after a warm-up")->check(CLI::PositiveNumber);
  bench
      ->add_option("-b,--batch", b->batch,
                   "tg: sequences decoding together (one batched forward per step, as "
                   "serve's slots); t/s counts all of them")
      ->check(CLI::Range(1, 256));
  bench->add_option("-t,--threads", b->threads, "threads")->check(CLI::NonNegativeNumber);
  bench->add_option("-o,--output", b->output, "md | json")->check(CLI::IsMember({"md", "json"}));
  bench->add_option("--kv-type", b->kv_type, "KV cache type: f32 | f16")->check(CLI::IsMember({"f32", "f16"}));
  bench->add_flag("--no-mmap", b->no_mmap, "read the GGUF weights into memory instead of mapping the file");
  bench->add_flag("--no-pack", b->no_pack, "run Q8_0/Q4_0 kernels on the stored blocks (no packed copy)");
  bench->add_flag("--profile", b->profile, "print time per phase (attention, router, experts, lm_head, barrier wait)");
  bench->add_flag("--no-ceiling", b->no_ceiling, "skip measuring the memory bandwidth ceiling (about 2 s)");
  commands.push_back({bench, [b] { return run_bench(*b); }});

  // --type: a file type. q2_k ... q6_k, q4_1, q5_0, q5_1, iq4_nl choose per-tensor types as llama-quantize does.
  const std::string kTypeHelp = file_type_names() + " (K-quant mixes pick per-tensor types as llama-quantize)";
  const auto file_type_check = CLI::Validator(
      [](std::string& name) -> std::string {
        try {
          file_type_from_name(name);
        } catch (const Error& e) {
          return e.what();
        }
        return {};
      },
      "TYPE");
  auto q = std::make_shared<QuantizeArgs>();
  CLI::App* quantize = app.add_subcommand("quantize", "write a model as a GGUF file (llama.cpp deepseek layout)");
  quantize->add_option("--model", q->model, "HF model directory or GGUF file")->required();
  quantize->add_option("--type", q->type, kTypeHelp)->check(file_type_check);
  quantize->add_option("--out", q->out, "output .gguf file")->required();
  quantize->add_option("--tokenizer", q->tokenizer, "tokenizer directory to embed (default: the model dir's)");
  quantize->add_flag("--all-same-type", q->all_same_type,
                     "use --type's base type for every matrix (default: q4_0 keeps embeddings, lm_head and shared "
                     "experts at q8_0; llama.cpp's mixes choose per tensor)");
  commands.push_back({quantize, [q] { return run_quantize(*q); }});

  auto sy = std::make_shared<SynthArgs>();
  CLI::App* synth = app.add_subcommand("synth", "write a random-weight model of a given config as a GGUF file");
  synth->add_option("--preset", sy->preset, "deepseek-moe-16b-base | deepseek-moe-16b-chat | bench-infer | ...");
  synth->add_option("--config", sy->config, "HF config.json instead of a preset")->check(CLI::ExistingFile);
  synth->add_option("--type", sy->type, kTypeHelp)->check(file_type_check);
  synth->add_option("--out", sy->out, "output .gguf file")->required();
  synth->add_option("--tokenizer", sy->tokenizer, "tokenizer directory to embed as GGUF metadata");
  synth->add_option("--seed", sy->seed, "random seed");
  synth->add_flag("--all-same-type", sy->all_same_type, "use --type for every matrix");
  commands.push_back({synth, [sy] { return run_synth(*sy); }});

  auto pa = std::make_shared<PerplexityArgs>();
  CLI::App* ppl = app.add_subcommand("perplexity", "perplexity, and KL divergence against a base model's log-probs");
  ppl->add_option("--model,-m", pa->model, "HF model directory or GGUF file")->required();
  ppl->add_option("--text", pa->text, "text file (tokenized with --tokenizer or the model dir's tokenizer)");
  ppl->add_option("--data", pa->data, "token file (flat little-endian uint32)");
  ppl->add_option("--tokenizer", pa->tokenizer, "tokenizer directory for --text");
  ppl->add_option("--ctx,--seq-len", pa->seq_len, "window length (windows of N+1 tokens, stride N)")->required();
  ppl->add_flag("--no-mmap", pa->no_mmap, "read the GGUF weights into memory instead of mapping the file");
  ppl->add_option("--save-logits", pa->save_logits, "write the log-probabilities to FILE (for --kld-base)");
  ppl->add_option("--kld-base", pa->kld_base, "compare with log-probabilities saved from a base model");
  commands.push_back({ppl, [pa] { return run_perplexity(*pa); }});
}

}  // namespace dsmoe::cli
