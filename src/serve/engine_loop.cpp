#include "serve/engine_loop.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "text/tokenizer.h"

namespace dsmoe::serve {

// ---- JobHandle ----

namespace {
// Appends what `from` adds (text, tokens, logprobs) to `into` and takes its state (done, counts, timings).
void merge(JobOutput& into, const JobOutput& from) {
  into.text += from.text;
  into.tokens.insert(into.tokens.end(), from.tokens.begin(), from.tokens.end());
  into.logprobs.insert(into.logprobs.end(), from.logprobs.begin(), from.logprobs.end());
  into.done = from.done;
  into.finish = from.finish;
  into.error = from.error;
  into.prompt_tokens = from.prompt_tokens;
  into.cached_tokens = from.cached_tokens;
  into.completion_tokens = from.completion_tokens;
  into.timings = from.timings;
}
}  // namespace

bool JobHandle::wait(JobOutput& out, std::chrono::milliseconds timeout, bool until_done) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return fresh_ && (!until_done || pending_.done); });
  if (fresh_) {
    merge(out, pending_);
    pending_ = JobOutput{};
    fresh_ = false;
  }
  return out.done;
}

void JobHandle::publish(JobOutput&& delta) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    merge(pending_, delta);
    fresh_ = true;
  }
  cv_.notify_all();
}

// ---- slots ----

struct EngineLoop::Slot {
  KvCache cache;
  std::vector<int32_t> cached;        // the ids whose K/V are in `cache`, in order
  std::shared_ptr<JobHandle> handle;  // null: idle
  std::unique_ptr<Generation> gen;
  std::vector<int32_t> pending;  // prompt tokens still to run
  int64_t prompt_tokens = 0, cached_tokens = 0;
  size_t sent_tokens = 0, sent_logprobs = 0;
  std::vector<float> logits;
  uint64_t last_used = 0;
  int32_t feed = 0;  // the token a decode step runs (the last one sampled)

  bool busy() const { return handle != nullptr; }
  bool generating() const { return busy() && pending.empty() && !gen->finished(); }
};

namespace {
size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}
}  // namespace

EngineLoop::EngineLoop(const InferModel& model, const text::Tokenizer* tok, LoopOptions options)
    : model_(model), tok_(tok), options_(options), engine_(model, options.ctx) {
  check(options_.parallel >= 1, "--parallel must be >= 1, not {}", options_.parallel);
  check(options_.max_queue >= 0, "--max-queue must be >= 0, not {}", options_.max_queue);
  check(options_.prefill_chunk >= 1, "the prefill chunk must be >= 1 token");
  for (int i = 0; i < options_.parallel; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->cache.init(model.config, options_.ctx, options_.kv_type);
    slot->logits.resize(static_cast<size_t>(model.config.vocab_size));
    slots_.push_back(std::move(slot));
  }
  metrics_.kv_capacity = options_.parallel * options_.ctx;
  thread_ = std::thread([this] { run(); });
}

EngineLoop::~EngineLoop() { shutdown(); }

std::shared_ptr<JobHandle> EngineLoop::submit(Job job) {
  check(!job.prompt.empty(), "empty prompt");
  check(static_cast<int64_t>(job.prompt.size()) < options_.ctx, "a prompt of {} tokens does not fit a context of {}",
        job.prompt.size(), options_.ctx);
  auto handle = std::make_shared<JobHandle>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return nullptr;
    // Work already waiting beyond the free slots counts against the queue limit.
    const int64_t free_slots = options_.parallel - metrics_.processing;  // the engine thread's last count
    if (static_cast<int64_t>(queue_.size()) >= free_slots + options_.max_queue) return nullptr;
    queue_.push_back({std::move(job), handle});
    metrics_.queued = static_cast<int64_t>(queue_.size());
  }
  cv_.notify_all();
  return handle;
}

void EngineLoop::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

LoopMetrics EngineLoop::metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  return metrics_;
}

void EngineLoop::assign(Queued&& q, Slot& slot) {
  const std::vector<int32_t>& prompt = q.job.prompt;
  // Reuse the longest common prefix of the cache; at least one prompt token runs, for the logits.
  size_t keep = common_prefix(slot.cached, prompt);
  if (keep == prompt.size()) --keep;
  slot.cache.truncate(static_cast<int64_t>(keep));
  slot.cached.resize(keep);
  slot.pending.assign(prompt.begin() + static_cast<std::ptrdiff_t>(keep), prompt.end());
  slot.prompt_tokens = static_cast<int64_t>(prompt.size());
  slot.cached_tokens = static_cast<int64_t>(keep);
  slot.sent_tokens = slot.sent_logprobs = 0;
  // The room the context leaves caps max_tokens (finish_reason "length" when it is reached).
  GenerationOptions options = std::move(q.job.options);
  const int64_t room = options_.ctx - static_cast<int64_t>(prompt.size());
  if (options.max_tokens < 0 || options.max_tokens > room) options.max_tokens = room;
  slot.gen = std::make_unique<Generation>(tok_, std::move(options), prompt);
  slot.handle = std::move(q.handle);
  slot.last_used = ++clock_;
}

void EngineLoop::publish(Slot& slot) {
  JobOutput delta;
  delta.text = slot.gen->take_text();
  const std::vector<int32_t>& history = slot.gen->history();
  const size_t first = static_cast<size_t>(slot.prompt_tokens) + slot.sent_tokens;
  delta.tokens.assign(history.begin() + static_cast<std::ptrdiff_t>(first), history.end());
  slot.sent_tokens += delta.tokens.size();
  const std::vector<TokenLogprob>& lp = slot.gen->logprobs();
  delta.logprobs.assign(lp.begin() + static_cast<std::ptrdiff_t>(slot.sent_logprobs), lp.end());
  slot.sent_logprobs = lp.size();
  delta.done = slot.gen->finished();
  delta.finish = slot.gen->finish();
  delta.prompt_tokens = slot.prompt_tokens;
  delta.cached_tokens = slot.cached_tokens;
  delta.completion_tokens = slot.gen->generated();
  delta.timings = slot.gen->timings();
  // A finished job leaves its slot (and the metrics count it) before its client hears that it is done.
  std::shared_ptr<JobHandle> handle = slot.handle;
  if (slot.gen->finished()) finish(slot);
  handle->publish(std::move(delta));
}

void EngineLoop::finish(Slot& slot) {
  const GenerationTimings t = slot.gen->timings();
  {
    std::lock_guard<std::mutex> lock(mu_);
    metrics_.requests += 1;
    metrics_.prompt_tokens += t.prompt_tokens;
    metrics_.prompt_seconds += t.prompt_ms / 1e3;
    metrics_.generated_tokens += t.generated;
    metrics_.generation_seconds += t.generation_ms / 1e3;
  }
  slot.handle.reset();
  slot.gen.reset();
  slot.pending.clear();
  std::lock_guard<std::mutex> lock(mu_);
  update_gauges();
}

void EngineLoop::update_gauges() {
  metrics_.queued = static_cast<int64_t>(queue_.size());
  metrics_.processing = std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return s->busy(); });
  int64_t used = 0;
  for (const auto& s : slots_) used += s->cache.length;
  metrics_.kv_used = used;
}

void EngineLoop::fail_all(const std::string& message) {
  for (auto& s : slots_) {
    if (!s->busy()) continue;
    s->gen->end(Finish::kCancelled);
    JobOutput delta;
    delta.done = true;
    delta.finish = Finish::kCancelled;
    delta.error = message;
    std::shared_ptr<JobHandle> handle = s->handle;
    finish(*s);
    s->cache.clear();  // its contents are unknown after a failure
    s->cached.clear();
    handle->publish(std::move(delta));
  }
}

void EngineLoop::run() {
  const int64_t V = model_.config.vocab_size;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto any_busy = [&] {
        return std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s->busy(); });
      };
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || any_busy(); });
      if (stop_) {
        for (Queued& q : queue_) {
          JobOutput delta;
          delta.done = true;
          delta.finish = Finish::kCancelled;
          delta.error = "the server is shutting down";
          q.handle->publish(std::move(delta));
        }
        queue_.clear();
        lock.unlock();
        fail_all("the server is shutting down");
        return;
      }
      // Cancelled while waiting: answered without running.
      for (auto it = queue_.begin(); it != queue_.end();) {
        if (!it->handle->cancelled()) {
          ++it;
          continue;
        }
        JobOutput delta;
        delta.done = true;
        delta.finish = Finish::kCancelled;
        it->handle->publish(std::move(delta));
        it = queue_.erase(it);
      }
      // Free slots to waiting jobs, first come first served: the slot sharing the longest prefix, else the one
      // idle longest.
      while (!queue_.empty()) {
        Slot* best = nullptr;
        size_t best_prefix = 0;
        for (auto& s : slots_) {
          if (s->busy()) continue;
          const size_t p = common_prefix(s->cached, queue_.front().job.prompt);
          if (best == nullptr || p > best_prefix || (p == best_prefix && s->last_used < best->last_used)) {
            best = s.get();
            best_prefix = p;
          }
        }
        if (best == nullptr) break;
        Queued q = std::move(queue_.front());
        queue_.pop_front();
        assign(std::move(q), *best);
      }
      update_gauges();
    }
    try {
      // Cancelled jobs (client gone) leave their slots now.
      for (auto& s : slots_)
        if (s->busy() && s->handle->cancelled()) {
          s->gen->end(Finish::kCancelled);
          publish(*s);
        }
      // 1. One token for every generating slot, in one forward.
      std::vector<SeqBatch> batch;
      std::vector<Slot*> decoding;
      for (auto& s : slots_)
        if (s->generating()) {
          s->feed = s->gen->last_token();
          batch.push_back({&s->cache, &s->feed, 1, s->logits.data()});
          decoding.push_back(s.get());
        }
      if (!batch.empty()) {
        engine_.forward(batch.data(), batch.size());
        {
          std::lock_guard<std::mutex> lock(mu_);
          metrics_.decode_steps += 1;
        }
        for (Slot* s : decoding) {
          s->cached.push_back(s->feed);
          s->gen->step(s->logits.data(), V);
          publish(*s);
        }
      }
      // 2. Prompt chunks within the step's budget (the whole prompt when nothing else is generating).
      int64_t budget = decoding.empty() ? std::numeric_limits<int64_t>::max() : options_.prefill_chunk;
      for (auto& s : slots_) {
        if (budget <= 0) break;
        if (!s->busy() || s->pending.empty()) continue;
        const int64_t left = static_cast<int64_t>(s->pending.size());
        const int64_t chunk = std::min(left, budget);
        const bool last = chunk == left;
        const SeqBatch one{&s->cache, s->pending.data(), chunk, last ? s->logits.data() : nullptr};
        engine_.forward(&one, 1);
        s->cached.insert(s->cached.end(), s->pending.begin(), s->pending.begin() + chunk);
        s->pending.erase(s->pending.begin(), s->pending.begin() + chunk);
        budget -= chunk;
        if (last) {
          s->gen->prompt_done(s->prompt_tokens - s->cached_tokens);
          s->gen->step(s->logits.data(), V);
          publish(*s);
        }
      }
    } catch (const std::exception& e) {
      fail_all(e.what());
    }
  }
}

}  // namespace dsmoe::serve
