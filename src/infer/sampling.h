// Token sampling: repetition/presence/frequency penalties, top-k, top-p, min-p, temperature, and a seeded draw.
// The chain and the semantics are llama.cpp's default order: penalties -> top-k -> top-p -> min-p -> temperature ->
// sample. Top-p and min-p look at the distribution before temperature (softmax of the penalised logits), exactly as
// llama.cpp does. The random numbers come from our own splitmix64 and an explicit inverse-CDF draw (no std::
// distributions), so a fixed seed gives the same tokens with every compiler and standard library.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dsmoe {

struct SamplingParams {
  double temperature = 0.8;         // 0 = greedy (argmax after penalties; lowest id on ties), deterministic
  int64_t top_k = 40;               // 0 = off
  double top_p = 0.95;              // in (0, 1]; 1 = off
  double min_p = 0.05;              // in [0, 1]; 0 = off; keeps p >= min_p * max p (llama.cpp semantics)
  double repetition_penalty = 1.0;  // > 0; 1 = off. CTRL/llama.cpp: logit/penalty if logit > 0 else logit*penalty
  double presence_penalty = 0.0;    // OpenAI: logit -= presence * (count > 0)
  double frequency_penalty = 0.0;   // OpenAI: logit -= frequency * count
  int64_t penalty_last_n = 64;      // window of the history the penalties look at; 0 = off, -1 = the whole history
  uint64_t seed = 0;
  void validate() const;  // throws dsmoe::Error naming the field and the value
};

// One entry of the final distribution: the token and its probability (after every filter and the temperature).
struct TokenProb {
  int32_t id;
  double p;
};

class Sampler {
 public:
  explicit Sampler(SamplingParams p);  // validates p
  // history = prompt + generated tokens so far (for the penalties). Throws on a NaN logit, an id outside the vocab
  // in the penalty window, or when every logit is -inf.
  int32_t sample(const float* logits, int64_t vocab, const std::vector<int32_t>& history);
  // The distribution sample() draws from (greedy: the argmax with p = 1), for tests and log-probabilities.
  // Entries are ordered by descending probability when a top-k/top-p filter sorted them, otherwise by id.
  std::vector<TokenProb> distribution(const float* logits, int64_t vocab, const std::vector<int32_t>& history);
  void reset(uint64_t seed);
  const SamplingParams& params() const { return params_; }

 private:
  struct Cand {
    int32_t id;
    float logit;
  };
  void filter(const float* logits, int64_t vocab, const std::vector<int32_t>& history);  // fills cands_/probs_
  uint64_t next_u64();

  SamplingParams params_;
  uint64_t state_ = 0;
  std::vector<Cand> cands_;    // reused between calls: no allocation per token for a fixed vocab
  std::vector<Cand> heap_;     // top-k selection buffer
  std::vector<double> probs_;  // probabilities of cands_ after filter()
};

// The penalties alone, applied in place to a full row of logits (what the Sampler does first).
void apply_penalties(float* logits, int64_t vocab, const std::vector<int32_t>& history, const SamplingParams& p);

// Stop strings. stop_at: where the earliest stop string starts in `text` (npos if none). hold_back: how many
// trailing bytes must not be streamed yet; text.size() - hold_back bytes are always safe to emit. Without a match
// it is the longest tail of `text` that is a proper prefix of some stop string; with a match it is
// text.size() - stop_at (the stop string and anything after it are never emitted). Empty stop strings are ignored.
// Lengths are in bytes; holding back an incomplete UTF-8 character is the caller's concern.
struct StopMatch {
  size_t stop_at;
  size_t hold_back;
};
StopMatch find_stop(const std::string& text, const std::vector<std::string>& stops);

}  // namespace dsmoe
