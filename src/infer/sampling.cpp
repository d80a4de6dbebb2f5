// Token sampling; see sampling.h for the chain and its semantics.
#include "infer/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/rng.h"

namespace dsmoe {

void SamplingParams::validate() const {
  check(std::isfinite(temperature) && temperature >= 0, "sampling: temperature must be >= 0 (0 = greedy), got {}",
        temperature);
  check(top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got {}", top_k);
  check(std::isfinite(top_p) && top_p > 0 && top_p <= 1, "sampling: top_p must be in (0, 1] (1 = off), got {}", top_p);
  check(std::isfinite(min_p) && min_p >= 0 && min_p <= 1, "sampling: min_p must be in [0, 1] (0 = off), got {}", min_p);
  check(std::isfinite(repetition_penalty) && repetition_penalty > 0,
        "sampling: repetition_penalty must be > 0 (1 = off), got {}", repetition_penalty);
  check(std::isfinite(presence_penalty), "sampling: presence_penalty must be finite, got {}", presence_penalty);
  check(std::isfinite(frequency_penalty), "sampling: frequency_penalty must be finite, got {}", frequency_penalty);
  check(penalty_last_n >= -1, "sampling: penalty_last_n must be >= -1 (0 = off, -1 = whole history), got {}",
        penalty_last_n);
}

namespace {

bool penalties_on(const SamplingParams& p) {
  return p.penalty_last_n != 0 &&
         (p.repetition_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0);
}

// Calls f(id, count) once for every distinct token in the penalty window of `history`, in ascending id order.
template <typename F>
void for_each_penalised(const std::vector<int32_t>& history, int64_t vocab, const SamplingParams& p, F&& f) {
  if (!penalties_on(p) || history.empty()) return;
  const size_t n = history.size();
  const size_t start = p.penalty_last_n < 0 || static_cast<uint64_t>(p.penalty_last_n) >= n
                           ? 0
                           : n - static_cast<size_t>(p.penalty_last_n);
  std::vector<int32_t> window(history.begin() + static_cast<std::ptrdiff_t>(start), history.end());
  std::sort(window.begin(), window.end());
  for (size_t i = 0; i < window.size();) {
    const int32_t id = window[i];
    check(id >= 0 && id < vocab, "sampling: token id {} in the history is outside the vocabulary of {}", id, vocab);
    size_t j = i;
    while (j < window.size() && window[j] == id) ++j;
    f(id, static_cast<int64_t>(j - i));
    i = j;
  }
}

float penalised(float logit, int64_t count, const SamplingParams& p) {
  double l = logit;
  if (p.repetition_penalty != 1.0) l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
  l -= static_cast<double>(count) * p.frequency_penalty + p.presence_penalty;
  return static_cast<float>(l);
}

void check_vocab(int64_t vocab) {
  check(vocab > 0 && vocab <= std::numeric_limits<int32_t>::max(),
        "sampling: vocabulary size must be in [1, 2^31), "
        "got {}",
        vocab);
}

}  // namespace

void apply_penalties(float* logits, int64_t vocab, const std::vector<int32_t>& history, const SamplingParams& p) {
  check_vocab(vocab);
  for_each_penalised(history, vocab, p,
                     [&](int32_t id, int64_t count) { logits[id] = penalised(logits[id], count, p); });
}

Sampler::Sampler(SamplingParams p) : params_(p) {
  params_.validate();
  reset(params_.seed);
}

void Sampler::reset(uint64_t seed) {
  params_.seed = seed;
  state_ = seed;
}

// splitmix64 (core/rng.h): one 64-bit state, full period, good enough for sampling.
uint64_t Sampler::next_u64() { return splitmix64_next(state_); }

void Sampler::filter(const float* logits, int64_t vocab, const std::vector<int32_t>& history) {
  check_vocab(vocab);
  const SamplingParams& p = params_;
  const bool greedy = p.temperature == 0 || !std::isfinite(1.0 / p.temperature);
  if (greedy && (!penalties_on(p) || history.empty())) {
    // Greedy without penalties: one pass for the first maximum in id order (the same token as below), instead of
    // building the candidate list; it runs on the engine thread between the batched forwards of a server step.
    int64_t best = -1;
    float top = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < vocab; ++i) {
      const float l = logits[i];
      check(!std::isnan(l) && l != std::numeric_limits<float>::infinity(), "sampling: logit of token {} is {}", i, l);
      if (l > top) {
        top = l;
        best = i;
      }
    }
    check(best >= 0, "sampling: every logit is -inf, nothing to sample");
    cands_.assign(1, {static_cast<int32_t>(best), top});
    probs_.assign(1, 1.0);
    return;
  }
  cands_.resize(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) {
    const float l = logits[i];
    check(!std::isnan(l) && l != std::numeric_limits<float>::infinity(), "sampling: logit of token {} is {}", i, l);
    cands_[static_cast<size_t>(i)] = {static_cast<int32_t>(i), l};
  }
  for_each_penalised(history, vocab, p, [&](int32_t id, int64_t count) {
    cands_[static_cast<size_t>(id)].logit = penalised(cands_[static_cast<size_t>(id)].logit, count, p);
  });

  // Total order: higher logit first, lower id on ties — the sorted prefix is the same on every platform.
  const auto before = [](const Cand& a, const Cand& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  const auto max_logit = [&] {
    float m = -std::numeric_limits<float>::infinity();
    for (const Cand& c : cands_) m = std::max(m, c.logit);
    return m;
  };
  const float top = max_logit();
  check(top > -std::numeric_limits<float>::infinity(), "sampling: every logit is -inf, nothing to sample");

  // Greedy: the first maximum in id order (also for a temperature so small that 1/T overflows).
  if (greedy) {
    const auto it = std::find_if(cands_.begin(), cands_.end(), [&](const Cand& c) { return c.logit == top; });
    const Cand best = *it;
    cands_.assign(1, best);
    probs_.assign(1, 1.0);
    return;
  }

  // Top-k: select the k best without sorting the rest, then sort those k.
  bool sorted = false;
  const auto sort_prefix = [&](size_t k) {
    if (k < cands_.size())
      std::nth_element(cands_.begin(), cands_.begin() + static_cast<std::ptrdiff_t>(k), cands_.end(), before);
    std::sort(cands_.begin(), cands_.begin() + static_cast<std::ptrdiff_t>(k), before);
  };
  if (p.top_k > 0 && static_cast<uint64_t>(p.top_k) < cands_.size()) {
    const size_t k = static_cast<size_t>(p.top_k);
    if (k * 16 <= cands_.size()) {
      // Small k: one pass with a heap of the k best (its front is the worst kept); most tokens fail the first
      // comparison, which is several times faster than nth_element over the whole vocabulary.
      heap_.assign(cands_.begin(), cands_.begin() + static_cast<std::ptrdiff_t>(k));
      std::make_heap(heap_.begin(), heap_.end(), before);
      for (size_t i = k; i < cands_.size(); ++i) {
        if (!before(cands_[i], heap_.front())) continue;
        std::pop_heap(heap_.begin(), heap_.end(), before);
        heap_.back() = cands_[i];
        std::push_heap(heap_.begin(), heap_.end(), before);
      }
      std::sort_heap(heap_.begin(), heap_.end(), before);
      cands_.swap(heap_);
    } else {
      sort_prefix(k);
      cands_.resize(k);
    }
    sorted = true;
  }

  // Top-p: the smallest prefix (by descending probability) whose mass reaches p. Without top-k the vocabulary is
  // sorted only as far as needed: the sorted prefix grows 256, 1024, ... until it holds the mass.
  if (p.top_p < 1) {
    double total = 0;
    for (const Cand& c : cands_) total += std::exp(static_cast<double>(c.logit) - top);
    const double need = p.top_p * total;
    size_t k = sorted ? cands_.size() : std::min<size_t>(cands_.size(), 256);
    size_t keep = cands_.size();
    for (;;) {
      if (!sorted) sort_prefix(k);
      double cum = 0;
      size_t i = 0;
      for (; i < k; ++i) {
        cum += std::exp(static_cast<double>(cands_[i].logit) - top);
        if (cum >= need) break;
      }
      if (i < k) {
        keep = i + 1;
        break;
      }
      if (k == cands_.size()) break;  // rounding left the mass just short: keep everything
      k = std::min(cands_.size(), k * 4);
    }
    cands_.resize(keep);
  }

  // Min-p: keep p_i >= min_p * p_max, i.e. exp(l_i - l_max) >= min_p. Stable, so the order is kept.
  if (p.min_p > 0) {
    const double m = top;  // the maximum always survives top-k and top-p
    cands_.erase(std::remove_if(cands_.begin(), cands_.end(),
                                [&](const Cand& c) { return std::exp(static_cast<double>(c.logit) - m) < p.min_p; }),
                 cands_.end());
  }

  // Temperature, then softmax (unnormalised weights; sample() and distribution() divide by the sum).
  probs_.resize(cands_.size());
  const double inv_t = 1.0 / p.temperature;
  for (size_t i = 0; i < cands_.size(); ++i) probs_[i] = std::exp((static_cast<double>(cands_[i].logit) - top) * inv_t);
}

int32_t Sampler::sample(const float* logits, int64_t vocab, const std::vector<int32_t>& history) {
  filter(logits, vocab, history);
  if (cands_.size() == 1) return cands_[0].id;
  double total = 0;
  for (double w : probs_) total += w;
  // u in [0, 1) from the top 53 bits; the first candidate whose cumulative weight passes u * total.
  const double u = static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
  const double target = u * total;
  double cum = 0;
  int32_t last = cands_[0].id;
  for (size_t i = 0; i < cands_.size(); ++i) {
    if (probs_[i] <= 0) continue;
    cum += probs_[i];
    last = cands_[i].id;
    if (cum > target) return last;
  }
  return last;  // rounding at the very end of the cumulative sum
}

std::vector<TokenProb> Sampler::distribution(const float* logits, int64_t vocab, const std::vector<int32_t>& history) {
  filter(logits, vocab, history);
  double total = 0;
  for (double w : probs_) total += w;
  std::vector<TokenProb> out(cands_.size());
  for (size_t i = 0; i < cands_.size(); ++i) out[i] = {cands_[i].id, probs_[i] / total};
  return out;
}

StopMatch find_stop(const std::string& text, const std::vector<std::string>& stops) {
  size_t stop_at = std::string::npos;
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    stop_at = std::min(stop_at, text.find(s));
  }
  if (stop_at != std::string::npos) return {stop_at, text.size() - stop_at};
  // No match: the longest tail of text that is a proper prefix of a stop string.
  size_t hold = 0;
  for (const std::string& s : stops) {
    for (size_t k = std::min(text.size(), s.size() - (s.empty() ? 0 : 1)); k > hold; --k) {
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  return {std::string::npos, hold};
}

}  // namespace dsmoe
