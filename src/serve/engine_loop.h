// The server's engine loop: one thread owns the model and `parallel` slots (a KV cache of `ctx` positions each)
// and runs steps. A step
//   1. drops cancelled work, and gives queued jobs free slots (the slot whose cached tokens share the longest
//      prefix with the prompt, else the one idle longest), reusing that prefix of the cache;
//   2. decodes one token for every generating slot in one batched forward (each weight matrix, each chosen expert,
//      streamed once for all of them; batching does not change any stream's tokens: engine.h);
//   3. spends a budget of prompt tokens on slots still reading their prompt, one chunk each, so that a long prompt
//      does not freeze the streams (with no stream generating, a prompt runs whole).
// It knows nothing of HTTP: requests come in as Jobs, results go out through each job's JobHandle, which the
// caller polls from its own thread.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "infer/engine.h"
#include "infer/generation.h"

namespace dsmoe::text {
class Tokenizer;
}

namespace dsmoe::serve {

struct Job {
  std::vector<int32_t> prompt;  // non-empty, shorter than the slot context
  GenerationOptions options;    // max_tokens is capped to the room the context leaves
};

// What a job produced since the caller last asked, and how it ended.
struct JobOutput {
  std::string text;                    // newly safe text (see Generation::take_text)
  std::vector<int32_t> tokens;         // newly generated tokens
  std::vector<TokenLogprob> logprobs;  // theirs, when asked for
  bool done = false;
  Finish finish = Finish::kNone;
  std::string error;              // set when the engine failed on this job (done is then true)
  int64_t prompt_tokens = 0;      // the prompt's length
  int64_t cached_tokens = 0;      // of which were reused from the slot's cache
  int64_t completion_tokens = 0;  // generated so far
  GenerationTimings timings;
};

// Shared by the engine thread (producer) and the request's thread (consumer).
class JobHandle {
 public:
  // Waits until there is new output, the job is done, or `timeout` passes; moves what is new into `out` (text,
  // tokens and logprobs are appended; the rest is overwritten). Returns true once the job is done and drained.
  // until_done: sleep through partial output (a non-streamed request wants only the end).
  bool wait(JobOutput& out, std::chrono::milliseconds timeout, bool until_done = false);
  // Asks the engine to stop this job; it is dropped within one step (its slot freed).
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class EngineLoop;
  void publish(JobOutput&& delta);  // engine side
  std::mutex mu_;
  std::condition_variable cv_;
  JobOutput pending_;
  bool fresh_ = false;
  std::atomic<bool> cancelled_{false};
};

struct LoopOptions {
  int parallel = 1;             // slots
  int64_t ctx = 2048;           // positions per slot (ServerOptions: 0 = min(2048, max_position_embeddings))
  int64_t max_queue = 64;       // jobs waiting for a slot; submit() refuses more
  int64_t prefill_chunk = 256;  // prompt tokens per step while other slots generate
  QuantType kv_type = QuantType::F32;
};

// Counters for /metrics (monotonic totals since start, plus gauges).
struct LoopMetrics {
  int64_t prompt_tokens = 0, generated_tokens = 0, requests = 0, decode_steps = 0;
  double prompt_seconds = 0.0, generation_seconds = 0.0;
  int64_t processing = 0, queued = 0;    // gauges
  int64_t kv_used = 0, kv_capacity = 0;  // positions held in all slots' caches / total
};

class EngineLoop {
 public:
  EngineLoop(const InferModel& model, const text::Tokenizer* tok, LoopOptions options);
  ~EngineLoop();  // cancels everything and joins the thread
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  // Queues a job; nullptr when the queue is full (the caller answers 503).
  std::shared_ptr<JobHandle> submit(Job job);
  // Stops taking work, cancels every queued and running job, and joins the engine thread.
  void shutdown();
  LoopMetrics metrics() const;
  const LoopOptions& options() const { return options_; }

 private:
  struct Slot;
  struct Queued {
    Job job;
    std::shared_ptr<JobHandle> handle;
  };
  void run();
  void assign(Queued&& q, Slot& slot);
  void finish(Slot& slot);
  void publish(Slot& slot);
  void fail_all(const std::string& message);
  void update_gauges();  // with mu_ held

  const InferModel& model_;
  const text::Tokenizer* tok_;
  LoopOptions options_;
  Engine engine_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::thread thread_;
  mutable std::mutex mu_;  // guards queue_, stop_, metrics_
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  bool stop_ = false;
  LoopMetrics metrics_;
  uint64_t clock_ = 0;  // step counter: a slot's last use, for least-recently-used choice
};

}  // namespace dsmoe::serve
