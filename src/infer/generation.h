// One reply being generated: sample -> detokenize -> stop strings held back -> text to stream -> finish reason and
// timings. `dsmoe generate`, `dsmoe chat` and the server's engine loop all drive this one loop, so they stop, hold
// back, count and time tokens the same way. It knows nothing of where the logits come from (the caller runs the
// model) or where the text goes (the caller prints or streams it).
//
//   Generation gen(&tok, options, prompt);
//   const float* logits = <forward the prompt>;
//   gen.prompt_done(n_evaluated);
//   while (gen.step(logits, V)) { emit(gen.take_text()); if (<no room>) { gen.end(Finish::kLength); break; }
//                                 logits = <forward gen.last_token()>; }
//   emit(gen.take_text());  // the rest, up to a stop string
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "infer/json_constraint.h"
#include "infer/sampling.h"

namespace dsmoe {
namespace text {
class Tokenizer;
}

struct GenerationOptions {
  SamplingParams sampling;
  int64_t max_tokens = -1;          // new tokens at most; -1: no limit (the context is)
  std::vector<std::string> stops;   // stop strings: never emitted, nor anything after them
  std::vector<int32_t> eos_ids;     // tokens that end the reply (not emitted); empty: never stop on one
  bool skip_leading_space = false;  // chat: the template ends with "Assistant:"; leading whitespace is dropped
  int top_logprobs = -1;            // < 0: no log-probabilities; else also this many alternatives per token
  // Constrained output (response_format json_object / json_schema): tokens that cannot continue the value are
  // never sampled, and the reply ends when the value is complete. Needs a tokenizer.
  std::shared_ptr<const JsonConstraint> json;
};

enum class Finish {
  kNone,       // still generating
  kEos,        // an end-of-sequence token
  kStop,       // a stop string
  kLength,     // max_tokens reached, or the context is full
  kCancelled,  // the caller gave up (Ctrl-C, client gone)
};
// OpenAI's finish_reason: "stop" (EOS, stop string), "length", or "cancelled".
const char* finish_reason(Finish f);

// Log-probability of a chosen token under the sampling distribution's logits (log-softmax of the raw logits, as
// OpenAI reports them), with the most likely alternatives.
struct TokenLogprob {
  int32_t id = 0;
  double logprob = 0.0;
  std::vector<std::pair<int32_t, double>> top;  // (id, logprob), most likely first
};

struct GenerationTimings {
  int64_t prompt_tokens = 0;  // evaluated (cached ones not counted)
  int64_t generated = 0;
  double prompt_ms = 0.0, generation_ms = 0.0;
};

class Generation {
 public:
  // tok: detokenizes the reply (nullptr: ids only, no text and no stop strings). prompt: the history the
  // penalties see first.
  Generation(const text::Tokenizer* tok, GenerationOptions options, std::vector<int32_t> prompt);
  // Call once the prompt's logits are ready; n_evaluated = prompt tokens actually run (after cache reuse).
  void prompt_done(int64_t n_evaluated);
  // Samples the next token from logits [vocab] of the last position. Returns true when the reply goes on (then
  // last_token() must be run to get the next logits), false when it is over (finish() says why).
  bool step(const float* logits, int64_t vocab);
  // Ends the reply from outside (context full: kLength; client gone or Ctrl-C: kCancelled).
  void end(Finish why);
  // Text that became safe to emit since the last call: complete UTF-8 characters, nothing that could start a stop
  // string. Once finished, everything up to the stop string.
  std::string take_text();

  int32_t last_token() const { return last_token_; }
  Finish finish() const { return finish_; }
  bool finished() const { return finish_ != Finish::kNone; }
  const std::vector<int32_t>& history() const { return history_; }  // prompt + generated tokens
  std::vector<int32_t> generated_tokens() const;
  int64_t generated() const { return generated_; }
  std::string text() const;  // the whole reply as emitted (valid UTF-8)
  const std::vector<TokenLogprob>& logprobs() const { return logprobs_; }
  GenerationTimings timings() const;

 private:
  const text::Tokenizer* tok_;
  GenerationOptions options_;
  Sampler sampler_;
  std::vector<int32_t> history_;
  size_t prompt_size_;
  std::string raw_;           // detokenized bytes of the reply so far
  size_t begin_ = 0;          // first byte shown (after skipped leading whitespace)
  size_t emitted_ = 0;        // bytes of raw_ already handed out by take_text
  std::string emitted_text_;  // what take_text returned, concatenated
  int64_t generated_ = 0;
  int32_t last_token_ = -1;
  Finish finish_ = Finish::kNone;
  std::vector<TokenLogprob> logprobs_;
  std::optional<JsonConstraint> json_;
  std::vector<std::string> pieces_;  // bytes of every token id (constrained sampling checks them all each step)
  std::vector<float> masked_;
  std::chrono::steady_clock::time_point start_, prompt_end_, end_;
  int64_t prompt_evaluated_ = 0;
  bool prompt_timed_ = false;
};

}  // namespace dsmoe
