// The text pipeline in front of the BPE model, with HF `tokenizers` semantics: normalizers, pre-tokenizers and
// the Oniguruma-compatible regex layer (Oniguruma patterns translated to PCRE2, JIT compiled).
//
// Internal to the tokenizer (namespace detail); src/text/tokenizer.h is the public interface.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

struct pcre2_real_code_8;

namespace dsmoe::text::detail {

// A non-owning reference to a callable (cheaper than std::function on the per-piece paths).
template <class Sig>
class FunctionRef;
template <class R, class... A>
class FunctionRef<R(A...)> {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT: implicit by design
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))), call_([](void* o, A... a) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...);
        }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

// Oniguruma (Ruby syntax, as HF `tokenizers` compiles it through the onig crate) -> PCRE2 pattern text.
// Differences that are bridged: \s (PCRE2 also counts U+180E), \w (Oniguruma: Alphabetic, marks, Nd, Pc and
// the Latin-1 No characters), \h (hex digit), \v (VT), \uHHHH, script properties (PCRE2's \p{Han} means the
// Script_Extensions), long general-category names, (?m) (= PCRE2 (?s)), {,n}, ^/$ (always multi-line).
// A character class with a descending range — which Oniguruma rejects ("empty range in char class") — is
// taken to be NFC-damaged: out-of-order endpoints are restored to their unique canonical-singleton pre-image
// that fits the class order (U+03CE -> U+1F7D, 'K' -> U+212A, ...); descending ranges left after that are
// dropped (Oniguruma's ONIG_SYN_ALLOW_EMPTY_RANGE_IN_CC behaviour). Throws dsmoe::Error on unsupported syntax.
std::string onig_to_pcre2(std::string_view pattern);

// A compiled pattern. Thread-safe: match data and JIT stacks are per thread.
class Regex {
 public:
  // `onig_pattern` is translated with onig_to_pcre2 unless `literal`, in which case it matches itself.
  explicit Regex(const std::string& onig_pattern, bool literal = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Leftmost match in subject at or after `from` (subject must be valid UTF-8, from on a char boundary).
  bool search(std::string_view subject, size_t from, size_t& match_start, size_t& match_end) const;
  const std::string& pattern() const { return pattern_; }
  const std::string& pcre2_pattern() const { return translated_; }

 private:
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
  std::string pattern_, translated_;
};

// onig's find_iter over subject (rust-onig: an empty match right after the previous match is skipped).
template <class F>
void for_each_match(const Regex& re, std::string_view s, F&& f) {
  size_t last_end = 0, last_match_end = std::string_view::npos;
  while (last_end <= s.size()) {
    size_t ms, me;
    if (!re.search(s, last_end, ms, me)) break;
    if (ms == me && last_match_end == me) {
      if (last_end >= s.size()) break;
      const auto b = static_cast<unsigned char>(s[last_end]);
      last_end += b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
      continue;
    }
    last_end = me;
    last_match_end = me;
    f(ms, me);
  }
}

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
SplitBehavior parse_split_behavior(const std::string& name);

// Pieces flow depth-first through the steps: (piece, starts at offset 0 of the original text).
using PieceSink = FunctionRef<void(std::string_view, bool)>;

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(std::string_view s) const = 0;
};

class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  virtual void run(std::string_view piece, bool at_start, PieceSink next) const = 0;
};

// Normalizer list from the tokenizer.json "normalizer" block (null -> empty; Sequence flattened).
std::vector<std::unique_ptr<Normalizer>> build_normalizers(const nlohmann::json& j);
// Step list from a "pre_tokenizer" block (null -> empty; Sequence flattened).
std::vector<std::unique_ptr<PreTokenizerStep>> build_pre_tokenizer(const nlohmann::json& j);

class PreTokenizer {
 public:
  PreTokenizer() = default;
  explicit PreTokenizer(std::vector<std::unique_ptr<PreTokenizerStep>> steps) : steps_(std::move(steps)) {}
  bool empty() const { return steps_.empty(); }
  // Calls sink for every non-empty pre-token of s, in order.
  void run(std::string_view s, bool at_start, FunctionRef<void(std::string_view)> sink) const {
    if (!s.empty()) run_from(0, s, at_start, sink);
  }

 private:
  void run_from(size_t step, std::string_view s, bool at_start, FunctionRef<void(std::string_view)> sink) const;
  std::vector<std::unique_ptr<PreTokenizerStep>> steps_;
};

}  // namespace dsmoe::text::detail
