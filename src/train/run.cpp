#include "train/run.h"

#include <sys/sysinfo.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "core/error.h"
#include "core/gemm.h"
#include "core/threads.h"
#include "model/checkpoint.h"
#include "text/bpe_trainer.h"
#include "text/chat_template.h"
#include "text/corpus.h"
#include "text/synth.h"
#include "text/tokenizer.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/schedule.h"
#include "train/sft.h"
#include "train/telemetry.h"
#include "train/trainer.h"

namespace dsmoe {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

RunConfig resolve_run_config(const std::string& preset, const std::string& config_file,
                             const std::vector<std::pair<std::string, std::string>>& overrides) {
  RunConfig c;
  if (!preset.empty()) run_config_apply_json(c, run_preset(preset), "preset " + preset);
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    check(in.good(), "cannot open run config {}", config_file);
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", config_file, e.what());
    }
    run_config_apply_json(c, j, config_file);
  }
  for (const auto& [key, value] : overrides) run_config_apply_override(c, key, value);
  c.validate();
  return c;
}

void write_json_atomic(const std::string& path, const json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    out.flush();
    check(out.good(), "write failed for {} (disk full?)", tmp);
  }
  fs::rename(tmp, path);
}

bool is_token_file(const std::string& path) { return fs::path(path).extension() == ".bin"; }

std::vector<std::string> split_paths(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!part.empty()) out.push_back(part);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

namespace {

// The data of a run once resolved: token files (pretraining) or conversations (SFT).
struct RunData {
  std::optional<text::Tokenizer> tokenizer;
  std::string tokenizer_dir;
  std::optional<TokenFile> train, val;
  std::vector<SftExample> sft_train, sft_val;
};

}  // namespace

void prepare_text_data(RunConfig& c, const std::string& work_dir) {
  fs::create_directories(work_dir);
  std::vector<std::string> inputs = split_paths(c.data);
  if (c.data == "synth") {
    const std::string synth = (fs::path(work_dir) / "synth.txt").string();
    if (!fs::exists(synth + ".json")) {
      fmt::print("writing the built-in synthetic corpus ({:.1f} MB) -> {}\n", c.synth_bytes / 1e6, synth);
      text::write_synth_corpus(synth, c.synth_bytes, c.seed);
    }
    inputs = {synth};
  }
  if (c.tokenizer.empty()) {
    const std::string dir = (fs::path(work_dir) / "tokenizer").string();
    if (!fs::exists(fs::path(dir) / "tokenizer.json") || !fs::exists(fs::path(dir) / "tokenizer_config.json")) {
      text::BpeTrainOptions o;
      o.vocab_size = c.tokenizer_vocab;
      const text::BpeTrainStats s = text::train_bpe(o, inputs, dir);
      fmt::print("trained a {}-token BPE tokenizer in {:.1f} s -> {}\n", s.vocab_size,
                 s.count_seconds + s.merge_seconds, dir);
    }
    c.tokenizer = dir;
  }
  const std::string prefix = (fs::path(work_dir) / "corpus").string();
  if (!fs::exists(prefix + ".json")) {
    text::PrepareOptions o;
    o.inputs = inputs;
    o.out_prefix = prefix;
    o.val_fraction = c.val_fraction;
    const text::PrepareStats s = text::prepare_corpus(text::Tokenizer::load(c.tokenizer), o);
    fmt::print("prepared {} documents: {} train tokens, {} val tokens\n", s.documents, s.train_tokens, s.val_tokens);
  }
  c.data = prefix + ".train.bin";
  if (c.val_data.empty()) c.val_data = prefix + ".val.bin";
}

namespace {

// Stateless data order: position p of the stream of windows (p = (step * grad_accum + micro) * batch + row) maps
// to a window through a permutation that depends only on (seed, epoch). Resuming needs nothing but the step.
struct WindowOrder {
  int64_t n = 0;
  bool shuffle = true;
  uint64_t seed = 0;
  int64_t cached_epoch = -1;
  std::vector<int64_t> perm;

  int64_t at(int64_t p) {
    const int64_t epoch = p / n, i = p % n;
    if (!shuffle) return i;
    if (epoch != cached_epoch) {
      perm.resize(n);
      for (int64_t k = 0; k < n; ++k) perm[k] = k;
      Rng rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
      for (int64_t k = n - 1; k > 0; --k) std::swap(perm[k], perm[rng.next_u64() % (k + 1)]);
      cached_epoch = epoch;
    }
    return perm[i];
  }
};

// Memory a training run needs, roughly: params + grads + 2 AdamW moments, plus activations.
double training_bytes(const ModelConfig& m, const RunConfig& c) {
  const double T = static_cast<double>(c.batch) * c.seq_len;
  const double per_layer = T * m.hidden_size * 12 + T * c.seq_len * m.num_attention_heads +
                           T * std::max<int64_t>(m.num_experts_per_tok, 1) *
                               (m.hidden_size * 2 + 3 * std::max(m.moe_intermediate_size, m.intermediate_size / 4));
  return 16.0 * m.n_params() + 4.0 * (per_layer * m.num_hidden_layers + 2 * T * m.vocab_size);
}

struct Evaluation {
  double loss = 0;
  int64_t tokens = 0;
  std::vector<MoeLayerStats> moe;
};

class Run {
 public:
  explicit Run(RunRequest r) : req_(std::move(r)), c_(req_.config) {}
  RunSummary go();

 private:
  void check_memory(const ModelConfig& mc) const;
  void setup_data();
  void setup_model();
  void slice_experts(const ExpertExchange& experts);
  // Sliced experts: the whole model and optimizer state, gathered on rank 0 (collective; nullptr elsewhere). Else
  // the run's own.
  std::pair<const Model*, const AdamW*> whole_state();
  // The gathered copy lives only while it is written: rank 0 does not keep a second whole model between saves.
  void release_whole_state() {
    whole_optimizer_.reset();
    whole_model_.reset();
  }
  std::unique_ptr<Model> whole_model_;
  std::unique_ptr<AdamW> whole_optimizer_;
  std::vector<MicroBatch> batches_for_step(int64_t step);
  Evaluation evaluate();
  void log_metrics(const json& record);
  void save_checkpoint(int64_t step);
  void print_step(int64_t step, const StepResult& r, double step_seconds);

  RunRequest req_;
  RunConfig& c_;
  RunData data_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Trainer> trainer_;
  WindowOrder order_;
  std::vector<std::vector<int32_t>> micro_inputs_, micro_targets_;
  std::vector<SftBatch> sft_batches_;
  int64_t start_step_ = 0;
  double sgemm_gflops_ = 0;
  double avg_step_seconds_ = 0;
  int64_t timed_steps_ = 0;
  bool tty_ = isatty(fileno(stdout)) != 0;
  // Rank 0 (or the only process) writes the run directory, metrics, checkpoints and the final model.
  bool leader() const { return req_.parallel == nullptr || req_.parallel->rank() == 0; }
  int64_t ranks() const { return req_.parallel == nullptr ? 1 : req_.parallel->size(); }
  int64_t rank() const { return req_.parallel == nullptr ? 0 : req_.parallel->rank(); }
  json resume_state_;
};

void Run::check_memory(const ModelConfig& mc) const {
  struct sysinfo si {};
  sysinfo(&si);
  const double need = training_bytes(mc, c_), have = static_cast<double>(si.totalram) * si.mem_unit;
  check(need < 0.9 * have,
        "training this model ({:.2f}B parameters) needs about {:.1f} GB (parameters, gradients, "
        "AdamW state and activations) but the machine has {:.1f} GB",
        mc.n_params() / 1e9, need / 1e9, have / 1e9);
}

void Run::setup_data() {
  const std::string work = req_.run_dir.empty()
                               ? (fs::temp_directory_path() / fmt::format("dsmoe-run-{}", getpid())).string()
                               : (fs::path(req_.run_dir) / "data").string();
  if (c_.sft) {
    check(!c_.tokenizer.empty() || fs::exists(fs::path(c_.model) / "tokenizer.json"),
          "SFT needs a tokenizer: --tokenizer DIR (or a model directory holding tokenizer.json)");
    if (c_.tokenizer.empty()) c_.tokenizer = c_.model;
    data_.tokenizer.emplace(text::Tokenizer::load(c_.tokenizer));
    const json& cfg = data_.tokenizer->config();
    text::ChatTemplate tpl = cfg.is_object() && cfg.contains("chat_template") && cfg["chat_template"].is_string()
                                 ? text::ChatTemplate::from_jinja(cfg["chat_template"].get<std::string>())
                                 : text::ChatTemplate::deepseek();
    std::vector<SftExample> all = sft_load(c_.data, *data_.tokenizer, tpl);
    check(!all.empty(), "{}: no SFT examples", c_.data);
    // Every 20th conversation is held out for evaluation (when there are at least 20).
    for (size_t i = 0; i < all.size(); ++i)
      ((all.size() >= 20 && i % 20 == 19) ? data_.sft_val : data_.sft_train).push_back(std::move(all[i]));
    order_.n = static_cast<int64_t>(data_.sft_train.size());
  } else {
    // Text is tokenized into RUN/data once: rank 0 first, the others then find it prepared.
    const bool follower = req_.parallel != nullptr && !leader() && !req_.run_dir.empty();
    if (follower) req_.parallel->barrier();
    if (!is_token_file(c_.data)) prepare_text_data(c_, work);
    if (req_.parallel != nullptr && leader() && !req_.run_dir.empty()) req_.parallel->barrier();
    data_.train.emplace(TokenFile::open(c_.data));
    if (!c_.val_data.empty() && fs::exists(c_.val_data) && fs::file_size(c_.val_data) > 0)
      data_.val.emplace(TokenFile::open(c_.val_data));
    if (!c_.tokenizer.empty()) data_.tokenizer.emplace(text::Tokenizer::load(c_.tokenizer));
    order_.n = data_.train->n_windows(c_.seq_len);
    check(order_.n >= 1, "{} has {} tokens: too short for one window of seq_len {} + 1", c_.data, data_.train->size(),
          c_.seq_len);
  }
  data_.tokenizer_dir = c_.tokenizer;
  order_.shuffle = c_.shuffle;
  order_.seed = c_.seed;
}

void Run::setup_model() {
  if (req_.resume) {
    const std::string ckpt = checkpoint_latest(req_.run_dir);
    check(!ckpt.empty(), "{}: no complete checkpoint to resume from", req_.run_dir);
    model_ = model_load(ckpt);
    trainer_ =
        std::make_unique<Trainer>(*model_, AdamWOptions{c_.beta1, c_.beta2, c_.eps, c_.weight_decay}, c_.grad_clip);
    resume_state_ = checkpoint_load(ckpt, *model_, trainer_->optimizer);
    start_step_ = resume_state_.at("step").get<int64_t>();
    fmt::print("resuming {} from {} (step {})\n", req_.run_dir, ckpt, start_step_);
  } else {
    if (model_preset_exists(c_.model) && !fs::exists(c_.model)) {
      json cfg = model_preset_config(c_.model);
      const bool vocab_from_tokenizer = cfg.value("vocab_from_tokenizer", false);
      cfg.erase("vocab_from_tokenizer");
      if (data_.tokenizer && vocab_from_tokenizer) {  // small presets size their vocabulary to the tokenizer
        cfg["vocab_size"] = data_.tokenizer->vocab_size();
        cfg["bos_token_id"] = data_.tokenizer->bos_id();
        cfg["eos_token_id"] = data_.tokenizer->eos_id();
      }
      model_ = std::make_unique<Model>(config_from_json(cfg, "model preset " + c_.model));
      init_params(model_->params, model_->config, c_.init_seed);
    } else if (fs::is_directory(c_.model)) {
      model_ = model_load(c_.model);
    } else {
      check(fs::exists(c_.model),
            "model '{}' is neither a preset (tiny, demo, bench-train-s, deepseek-moe-16b), a "
            "config.json nor a model directory",
            c_.model);
      model_ = std::make_unique<Model>(config_from_file(c_.model));
      init_params(model_->params, model_->config, c_.init_seed);
    }
    trainer_ =
        std::make_unique<Trainer>(*model_, AdamWOptions{c_.beta1, c_.beta2, c_.eps, c_.weight_decay}, c_.grad_clip);
  }
  ModelConfig& mc = model_->config;
  if (c_.aux_loss_alpha >= 0) mc.aux_loss_alpha = c_.aux_loss_alpha;
  if (c_.device_aux_loss_alpha >= 0) mc.device_aux_loss_alpha = c_.device_aux_loss_alpha;
  mc.validate();
  check(c_.seq_len <= mc.max_position_embeddings, "seq_len {} exceeds the model's max_position_embeddings {}",
        c_.seq_len, mc.max_position_embeddings);
  if (c_.freeze_router) trainer_->freeze_router();
  check_memory(mc);
  if (data_.train) data_.train->check_vocab(mc.vocab_size);
  if (data_.val) data_.val->check_vocab(mc.vocab_size);
  if (data_.tokenizer)
    check(data_.tokenizer->vocab_size() <= mc.vocab_size, "the tokenizer has {} tokens but the model only {}",
          data_.tokenizer->vocab_size(), mc.vocab_size);
  // Last: slicing replaces model_ (and so `mc`) and the trainer.
  if (req_.expert_parallel) {
    const ExpertExchange* experts = req_.expert_parallel(mc.n_routed_experts);
    if (req_.parallel != nullptr && req_.parallel->experts_sliced()) slice_experts(*experts);
    trainer_->experts = experts;
  }
}

std::vector<MicroBatch> Run::batches_for_step(int64_t step) {
  std::vector<MicroBatch> out;
  micro_inputs_.resize(c_.grad_accum);
  micro_targets_.resize(c_.grad_accum);
  sft_batches_.resize(c_.grad_accum);
  const int64_t share = c_.batch / ranks(), first = rank() * share;  // this rank's sequences of each batch
  for (int64_t m = 0; m < c_.grad_accum; ++m) {
    std::vector<int64_t> ids(share);
    for (int64_t b = 0; b < share; ++b) ids[b] = order_.at((step * c_.grad_accum + m) * c_.batch + first + b);
    if (c_.sft) {
      const int32_t pad = data_.tokenizer->eos_id() >= 0 ? data_.tokenizer->eos_id() : 0;
      sft_batches_[m] = sft_batch(data_.sft_train, ids, c_.seq_len, pad);
      out.push_back({sft_batches_[m].inputs.data(), sft_batches_[m].targets.data(), share, c_.seq_len});
    } else {
      load_windows(*data_.train, c_.seq_len, ids, micro_inputs_[m], micro_targets_[m]);
      out.push_back({micro_inputs_[m].data(), micro_targets_[m].data(), share, c_.seq_len});
    }
  }
  return out;
}

Evaluation Run::evaluate() {
  Evaluation ev;
  ev.moe = moe_stats_init(model_->config);
  Activations& acts = trainer_->acts;
  // Every rank evaluates the same windows (the figures are identical on every rank): alone, or, when each rank
  // holds a slice of the experts, with the expert exchange of its EP group.
  const Parallelism train_parallel = acts.parallel;
  acts.parallel = {};
  if (req_.parallel != nullptr && req_.parallel->experts_sliced()) acts.parallel.experts = trainer_->experts;
  struct Restore {
    Activations& a;
    Parallelism p;
    ~Restore() { a.parallel = p; }
  } restore{acts, train_parallel};
  double nll = 0;
  auto eval_batch = [&](const int32_t* in, const int32_t* tg, int64_t B) {
    model_forward(*model_, in, B, c_.seq_len, acts, false);
    moe_stats_add(ev.moe, acts);
    LossReport r = model_loss_backward(*model_, in, tg, B, c_.seq_len, acts, nullptr);
    nll += r.ce * r.tokens;
    ev.tokens += r.tokens;
  };
  if (c_.sft) {
    const int32_t pad = data_.tokenizer->eos_id() >= 0 ? data_.tokenizer->eos_id() : 0;
    const int64_t n = static_cast<int64_t>(data_.sft_val.size());
    for (int64_t b0 = 0; b0 < n && b0 < c_.eval_batches * c_.batch; b0 += c_.batch) {
      std::vector<int64_t> ids;
      for (int64_t i = b0; i < std::min(n, b0 + c_.batch); ++i) ids.push_back(i);
      SftBatch batch = sft_batch(data_.sft_val, ids, c_.seq_len, pad);
      eval_batch(batch.inputs.data(), batch.targets.data(), static_cast<int64_t>(ids.size()));
    }
  } else if (data_.val) {
    const int64_t n = data_.val->n_windows(c_.seq_len);
    std::vector<int32_t> in, tg;
    for (int64_t w0 = 0; w0 < n && w0 < c_.eval_batches * c_.batch; w0 += c_.batch) {
      std::vector<int64_t> ids;
      for (int64_t w = w0; w < std::min(n, w0 + c_.batch); ++w) ids.push_back(w);
      load_windows(*data_.val, c_.seq_len, ids, in, tg);
      eval_batch(in.data(), tg.data(), static_cast<int64_t>(ids.size()));
    }
  }
  ev.loss = ev.tokens > 0 ? nll / ev.tokens : -1;
  return ev;
}

void Run::log_metrics(const json& record) {
  if (req_.run_dir.empty() || !leader()) return;
  std::ofstream out(fs::path(req_.run_dir) / "metrics.jsonl", std::ios::app);
  out << record.dump() << "\n";
}

namespace {
// Per tensor, the floats of `local` (a registry holding a slice of the stacked experts) at their place in `whole`
// (the full registry of the same model): the callback gets (whole offset, local offset, count).
template <typename F>
void for_each_slice(const std::vector<TensorSpec>& whole, const std::vector<TensorSpec>& local, F&& f) {
  check(whole.size() == local.size(), "expert slices: registries of {} and {} tensors", whole.size(), local.size());
  for (size_t i = 0; i < local.size(); ++i) {
    const int64_t per = local[i].n_stacked > 0 ? local[i].numel() / local[i].n_stacked : 0;
    f(whole[i].offset + static_cast<size_t>(local[i].first_expert * per), local[i].offset, local[i].numel(),
      local[i].n_stacked > 0);
  }
}
}  // namespace

// Expert parallelism with sliced storage: this rank keeps only the routed experts it computes (and their AdamW
// moments); the whole model it was built or loaded as is dropped.
void Run::slice_experts(const ExpertExchange& experts) {
  const ModelConfig& mc = model_->config;
  auto local = std::make_unique<Model>(mc, ExpertSlice{experts.first_expert(), experts.expert_count()});
  auto trainer = std::make_unique<Trainer>(*local, trainer_->optimizer.options, trainer_->grad_clip);
  const AdamW& from = trainer_->optimizer;
  AdamW& to = trainer->optimizer;
  to.step = from.step;
  to.frozen = from.frozen;
  for_each_slice(model_->params.registry, local->params.registry, [&](size_t w, size_t l, int64_t n, bool) {
    std::copy_n(model_->params.arena.data() + w, n, local->params.arena.data() + l);
    std::copy_n(from.m.data() + w, n, to.m.data() + l);
    std::copy_n(from.v.data() + w, n, to.v.data() + l);
  });
  trainer->parallel = trainer_->parallel;
  fmt::print(
      "expert parallelism: {} ranks in EP groups of {}; each holds {} of the {} routed experts: {:.3f}M of "
      "{:.3f}M parameters\n",
      ranks(), mc.n_routed_experts / experts.expert_count(), experts.expert_count(), mc.n_routed_experts,
      local->params.arena.size() / 1e6, model_->params.arena.size() / 1e6);
  trainer_ = std::move(trainer);
  model_ = std::move(local);
}

std::pair<const Model*, const AdamW*> Run::whole_state() {
  if (req_.parallel == nullptr || !req_.parallel->experts_sliced()) return {model_.get(), &trainer_->optimizer};
  const ModelConfig& mc = model_->config;
  if (leader() && whole_model_ == nullptr) {
    whole_model_ = std::make_unique<Model>(mc);
    whole_optimizer_ = std::make_unique<AdamW>(whole_model_->params, trainer_->optimizer.options);
  }
  const AdamW& opt = trainer_->optimizer;
  float* wp = leader() ? whole_model_->params.arena.data() : nullptr;
  float* wm = leader() ? whole_optimizer_->m.data() : nullptr;
  float* wv = leader() ? whole_optimizer_->v.data() : nullptr;
  const std::vector<TensorSpec> whole_registry = build_registry(mc);
  for_each_slice(whole_registry, model_->params.registry, [&](size_t w, size_t l, int64_t n, bool stacked) {
    const std::pair<const float*, float*> parts[] = {
        {model_->params.arena.data() + l, wp}, {opt.m.data() + l, wm}, {opt.v.data() + l, wv}};
    for (const auto& [src, dst] : parts) {
      if (stacked) {  // slices arrive in expert order; on the leader (EP rank 0, expert 0) w is the tensor's start
        req_.parallel->gather_expert_slices(src, n, dst == nullptr ? nullptr : dst + w);
      } else if (dst != nullptr) {
        std::copy_n(src, n, dst + w);
      }
    }
  });
  if (!leader()) return {nullptr, nullptr};
  whole_optimizer_->step = opt.step;
  whole_optimizer_->frozen = opt.frozen;
  return {whole_model_.get(), whole_optimizer_.get()};
}

void Run::save_checkpoint(int64_t step) {
  if (req_.run_dir.empty()) return;
  // Data parallelism: every rank holds the same parameters and optimizer state; sliced experts are gathered first.
  const auto [model, optimizer] = whole_state();
  if (!leader()) return;
  json state = {{"step", step}, {"config", run_config_to_json(c_)}};
  checkpoint_save(req_.run_dir, step, *model, *optimizer, state, static_cast<int>(c_.keep));
  release_whole_state();
}

void Run::print_step(int64_t step, const StepResult& r, double dt) {
  const double tokens = static_cast<double>(c_.batch) * c_.seq_len * c_.grad_accum;
  const double gflops = train_flops_per_token(model_->config, c_.seq_len) * tokens / dt / 1e9;
  const int64_t left = c_.steps - step - 1;
  const std::string eta = timed_steps_ > 0 ? fmt::format("{:.0f}s", left * avg_step_seconds_) : "?";
  const std::string line = fmt::format(
      "step {:>5}/{}  loss {:.6f}  balance {:.5f}  lr {:.2e}  grad_norm {:.3f}  {:.0f} tok/s  {:.1f} GFLOP/s "
      "({:.0f}% of sgemm)  ETA {}",
      step + 1, c_.steps, r.loss.ce, r.loss.balance, r.lr, r.grad_norm, tokens / dt, gflops,
      sgemm_gflops_ > 0 ? 100 * gflops / sgemm_gflops_ : 0.0, eta);
  const bool permanent = (step + 1) % c_.log_every == 0 || step == start_step_ || step + 1 == c_.steps;
  if (tty_)
    fmt::print("\r\033[K{}{}", line, permanent ? "\n" : "");
  else if (permanent)
    fmt::print("{}\n", line);
  std::fflush(stdout);
}

RunSummary Run::go() {
  if (c_.threads > 0) set_num_threads(static_cast<int>(c_.threads));
  if (!req_.run_dir.empty() && leader()) fs::create_directories(req_.run_dir);
  if (req_.parallel != nullptr) req_.parallel->barrier();  // the run directory exists for every rank
  check(c_.batch % ranks() == 0, "the batch of {} sequences does not split evenly over {} data-parallel ranks",
        c_.batch, ranks());
  if (!req_.resume && model_preset_exists(c_.model) && !fs::exists(c_.model)) {
    // Refuse a model that cannot fit before spending time on data (e.g. the 16B preset on a small machine).
    json cfg = model_preset_config(c_.model);
    cfg.erase("vocab_from_tokenizer");
    check_memory(config_from_json(cfg, "model preset " + c_.model));
  }
  setup_data();
  setup_model();
  sgemm_gflops_ = sgemm_peak_gflops(1024);  // ~30 ms; close to bench_train's 2048 figure
  trainer_->parallel = req_.parallel;
  if (!req_.run_dir.empty() && leader()) {
    RunConfig persisted = c_;
    persisted.stop_after = 0;  // an interruption is not part of the run: a resume runs to the end
    write_json_atomic((fs::path(req_.run_dir) / "config.json").string(), run_config_to_json(persisted));
    if (!req_.resume) {  // a fresh start: metrics of an attempt that never reached a checkpoint are void
      std::ofstream(fs::path(req_.run_dir) / "metrics.jsonl", std::ios::trunc);
    } else {  // drop metrics written after the checkpoint we resume from
      const fs::path mpath = fs::path(req_.run_dir) / "metrics.jsonl";
      std::vector<std::string> keep;
      std::ifstream in(mpath);
      for (std::string line; std::getline(in, line);) {
        try {
          if (json::parse(line).value("step", int64_t{0}) <= start_step_) keep.push_back(line);
        } catch (const json::exception&) {
        }
      }
      std::ofstream out(mpath, std::ios::trunc);
      for (const std::string& l : keep) out << l << "\n";
    }
  }
  fmt::print("model: {}\n", config_summary(model_->config));
  const Schedule schedule = schedule_from_name(c_.schedule);
  StepResult last;
  double step_seconds = 0, loop_seconds = 0;  // after the first step: the bare training step vs the whole loop
  double final_val_loss = -1;                 // the final step's evaluation (RunSummary::val_loss)
  for (int64_t step = start_step_; step < c_.steps; ++step) {
    const auto iteration_start = clock_type::now();
    std::vector<MicroBatch> micro = batches_for_step(step);
    const double lr = schedule_lr(schedule, c_.lr, step, c_.steps, c_.warmup);
    const auto t0 = clock_type::now();
    last = trainer_->step(micro, lr);
    const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (step > start_step_) {  // the first step after start or resume pays for allocation: not in the average
      avg_step_seconds_ = (avg_step_seconds_ * timed_steps_ + dt) / (timed_steps_ + 1);
      ++timed_steps_;
    }
    print_step(step, last, dt);
    log_metrics({{"type", "train"},
                 {"step", step + 1},
                 {"loss", last.loss.ce},
                 {"balance", last.loss.balance},
                 {"lr", last.lr},
                 {"grad_norm", last.grad_norm},
                 {"tokens_per_s", c_.batch * c_.seq_len * c_.grad_accum / dt}});
    if (step > start_step_) {
      step_seconds += dt;
      loop_seconds += std::chrono::duration<double>(clock_type::now() - iteration_start).count();
    }
    const bool final_step = step + 1 == c_.steps;
    if ((c_.eval_every > 0 && (step + 1) % c_.eval_every == 0) || final_step) {
      Evaluation ev = evaluate();
      if (ev.tokens > 0) {
        fmt::print("eval  step {}: val loss {:.4f}  ppl {:.2f}  ({} tokens)\n", step + 1, ev.loss, std::exp(ev.loss),
                   ev.tokens);
        if (final_step) final_val_loss = ev.loss;
        log_metrics({{"type", "eval"}, {"step", step + 1}, {"val_loss", ev.loss}, {"val_ppl", std::exp(ev.loss)}});
      }
      for (const MoeLayerStats& s : ev.moe) {
        if (s.tokens == 0) continue;
        log_metrics(s.to_json(step + 1));
        fmt::print("      layer {}: max_vio {:.2f}  dead {}  entropy {:.2f}  dropped {:.1f}%\n", s.layer, s.max_vio(),
                   s.dead_experts(), s.router_entropy(), s.dropped_pct());
      }
    }
    if ((c_.checkpoint_every > 0 && (step + 1) % c_.checkpoint_every == 0) || final_step) save_checkpoint(step + 1);
    if (c_.stop_after > 0 && step + 1 == c_.stop_after && !final_step) {
      fmt::print("stopping after step {} (stop_after); continue with --resume {}\n", step + 1, req_.run_dir);
      break;
    }
  }
  if (step_seconds > 0)
    fmt::print(
        "run loop overhead (data, logging, metrics; eval and checkpoints excluded): {:.2f}% of the training "
        "step time\n",
        100 * (loop_seconds - step_seconds) / step_seconds);
  RunSummary summary;
  summary.steps_done = c_.steps;
  summary.val_loss = final_val_loss;
  summary.final_loss = last.loss.ce;
  summary.tokenizer_dir = data_.tokenizer_dir;
  summary.val_data = c_.val_data;
  const Model* whole = c_.out.empty() ? nullptr : whole_state().first;
  if (!c_.out.empty() && leader()) {
    model_save(*whole, c_.out, save_dtype_from_name(c_.save_dtype));
    release_whole_state();
    fmt::print("saved {}\n", c_.out);
    summary.model_dir = c_.out;
  } else if (!req_.run_dir.empty()) {
    summary.model_dir = (fs::path(req_.run_dir) / "latest").string();
  }
  return summary;
}

}  // namespace

RunSummary train_run(RunRequest request) {
  Run run(std::move(request));
  return run.go();
}

}  // namespace dsmoe
