#include "infer/generation.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "core/error.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace dsmoe {

const char* finish_reason(Finish f) {
  switch (f) {
    case Finish::kEos:
    case Finish::kStop: return "stop";
    case Finish::kLength: return "length";
    case Finish::kCancelled: return "cancelled";
    case Finish::kNone: break;
  }
  return "none";
}

namespace {
constexpr const char* kSpace = " \t\r\n";

// The largest cut <= end, not before `from`, that does not split a UTF-8 character whose lead byte is in
// [from, end): a lead byte announcing more continuation bytes than there are is left for later.
size_t utf8_safe_cut(const std::string& s, size_t from, size_t end) {
  for (size_t back = 1; back <= 3 && back <= end - from; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[end - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back for its lead
    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? end - back : end;
  }
  return end;
}

// log-softmax of logits [V] at `id`, and the `top` most likely ids with theirs.
TokenLogprob token_logprob(const float* logits, int64_t V, int32_t id, int top) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double log_z = mx + std::log(sum);
  TokenLogprob out;
  out.id = id;
  out.logprob = static_cast<double>(logits[id]) - log_z;
  if (top > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) ids[i] = static_cast<int32_t>(i);
    const size_t k = std::min<size_t>(static_cast<size_t>(top), ids.size());
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
                      [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; });
    for (size_t i = 0; i < k; ++i) out.top.emplace_back(ids[i], static_cast<double>(logits[ids[i]]) - log_z);
  }
  return out;
}
}  // namespace

Generation::Generation(const text::Tokenizer* tok, GenerationOptions options, std::vector<int32_t> prompt)
    : tok_(tok),
      options_(std::move(options)),
      sampler_(options_.sampling),
      history_(std::move(prompt)),
      prompt_size_(history_.size()),
      start_(std::chrono::steady_clock::now()) {
  check(tok_ != nullptr || options_.stops.empty(), "stop strings need a tokenizer");
  check(options_.max_tokens >= -1, "max_tokens must be >= 0, not {}", options_.max_tokens);
  check(tok_ != nullptr || !options_.json, "constrained JSON output needs a tokenizer");
  if (options_.json) json_.emplace(*options_.json);
  if (options_.max_tokens == 0) end(Finish::kLength);
}

void Generation::prompt_done(int64_t n_evaluated) {
  prompt_end_ = std::chrono::steady_clock::now();
  prompt_evaluated_ = n_evaluated;
  prompt_timed_ = true;
}

bool Generation::step(const float* logits, int64_t vocab) {
  if (finished()) return false;
  if (!prompt_timed_) prompt_done(0);
  auto is_eos = [&](int32_t t) {
    return std::find(options_.eos_ids.begin(), options_.eos_ids.end(), t) != options_.eos_ids.end();
  };
  const float* sample_from = logits;
  if (json_) {
    // Every token that cannot continue the JSON value gets probability 0; EOS only once the value is whole.
    if (pieces_.empty()) {
      pieces_.resize(static_cast<size_t>(vocab));
      // Special and undefined ids are never part of a JSON value (their text is not the model's to write).
      for (int64_t t = 0; t < vocab && t < tok_->vocab_size(); ++t)
        if (tok_->token_kind(static_cast<int32_t>(t)) == text::Tokenizer::TokenKind::Normal)
          pieces_[t] = tok_->token_bytes(static_cast<int32_t>(t));
    }
    // Within a token budget a token is allowed only if the value can still be completed in the tokens left after
    // it (each byte of the shortest completion is a token of a byte-level vocabulary), so that the reply is
    // complete JSON when the budget runs out. Without a feasible token (a budget too small from the start) the
    // budget is ignored and the reply may be cut.
    const int64_t remaining = options_.max_tokens >= 0 ? options_.max_tokens - generated_ : INT64_MAX;
    const bool may_end = json_->complete();
    bool any = false;
    for (int pass = remaining == INT64_MAX ? 1 : 0; pass < 2 && !any; ++pass) {
      masked_.assign(logits, logits + vocab);
      for (int64_t t = 0; t < vocab; ++t) {
        bool ok;
        if (is_eos(static_cast<int32_t>(t))) {
          ok = may_end;
        } else if (pass == 0) {
          const int after = json_->bytes_to_close_after(pieces_[t]);
          ok = after >= 0 && after <= remaining - 1;
        } else {
          ok = json_->accepts(pieces_[t]);
        }
        if (ok)
          any = true;
        else
          masked_[t] = -INFINITY;
      }
    }
    if (!any) {  // the vocabulary cannot continue the value (cannot happen with a byte-level vocabulary)
      end(Finish::kStop);
      return false;
    }
    sample_from = masked_.data();
  }
  const int32_t next = sampler_.sample(sample_from, vocab, history_);
  if (is_eos(next)) {
    end(Finish::kEos);
    return false;
  }
  if (options_.top_logprobs >= 0) logprobs_.push_back(token_logprob(logits, vocab, next, options_.top_logprobs));
  history_.push_back(next);
  last_token_ = next;
  ++generated_;
  if (json_) json_->advance(pieces_[next]);
  if (tok_ != nullptr) {
    raw_ += tok_->token_bytes(next);
    if (find_stop(raw_, options_.stops).stop_at != std::string::npos) {
      end(Finish::kStop);
      return false;
    }
  }
  if (json_ && json_->closed()) {  // the value is complete: nothing may follow
    end(Finish::kStop);
    return false;
  }
  if (options_.max_tokens >= 0 && generated_ >= options_.max_tokens) {
    end(Finish::kLength);
    return false;
  }
  return true;
}

void Generation::end(Finish why) {
  if (finished()) return;
  finish_ = why;
  end_ = std::chrono::steady_clock::now();
}

std::string Generation::take_text() {
  if (tok_ == nullptr) return "";
  if (options_.skip_leading_space && emitted_ == begin_) {  // nothing shown yet: skip whitespace as it comes
    const size_t b = raw_.find_first_not_of(kSpace, begin_);
    begin_ = emitted_ = b == std::string::npos ? raw_.size() : b;
  }
  const StopMatch m = find_stop(raw_, options_.stops);
  size_t cut = finished() ? std::min(raw_.size(), m.stop_at) : raw_.size() - m.hold_back;
  if (!finished()) cut = utf8_safe_cut(raw_, emitted_, cut);
  if (cut <= emitted_) return "";
  std::string piece = text::unicode::replace_invalid_utf8(std::string_view(raw_).substr(emitted_, cut - emitted_));
  emitted_ = cut;
  emitted_text_ += piece;
  return piece;
}

std::vector<int32_t> Generation::generated_tokens() const {
  return std::vector<int32_t>(history_.begin() + static_cast<std::ptrdiff_t>(prompt_size_), history_.end());
}

std::string Generation::text() const { return emitted_text_; }

GenerationTimings Generation::timings() const {
  using ms = std::chrono::duration<double, std::milli>;
  GenerationTimings t;
  t.prompt_tokens = prompt_evaluated_;
  t.generated = generated_;
  const auto now = std::chrono::steady_clock::now();
  if (prompt_timed_) {
    t.prompt_ms = ms(prompt_end_ - start_).count();
    t.generation_ms = ms((finished() ? end_ : now) - prompt_end_).count();
  }
  return t;
}

}  // namespace dsmoe
