// The text pipeline in front of the BPE model (pretokenizer.h): compiling and matching regexes with PCRE2
// (per-thread match state, JIT), HF's split behaviours over the match spans, the normalizers and the
// pre-tokenizer steps, and their construction from tokenizer.json. The Oniguruma -> PCRE2 pattern translation
// is in onig_to_pcre2.cpp. Regex::search stays in this file, beside split_regex, its per-match caller.
#include "text/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>

#include <fmt/format.h>

#include "core/error.h"
#include "text/unicode.h"

namespace dsmoe::text::detail {
namespace {

using unicode::next_cp;

// ---------------------------------------------------------------------------------------------------------
// Per-thread PCRE2 state
// ---------------------------------------------------------------------------------------------------------

struct ThreadMatchState {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* js = nullptr;
  ThreadMatchState() {
    md = pcre2_match_data_create(1, nullptr);
    mc = pcre2_match_context_create(nullptr);
    js = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
    if (mc && js) pcre2_jit_stack_assign(mc, nullptr, js);
  }
  ~ThreadMatchState() {
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_jit_stack_free(js);
  }
};

ThreadMatchState& thread_state() {
  thread_local ThreadMatchState st;
  return st;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// A PCRE2 pattern matching s literally: ASCII punctuation and controls escaped, NUL as \x{0}.
std::string regex_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u == 0) {
      out += "\\x{0}";
      continue;
    }
    if (u < 0x80 && !std::isalnum(u)) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

Regex::Regex(const std::string& onig_pattern, bool literal) : pattern_(onig_pattern) {
  translated_ = literal ? regex_escape(onig_pattern) : onig_to_pcre2(onig_pattern);
  pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
  pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
  int err;
  PCRE2_SIZE off;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated_.data()), translated_.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &off, cc);
  pcre2_compile_context_free(cc);
  if (!code_)
    fail("regex {:?} (as PCRE2 {:?}): {} at offset {}", pattern_, translated_, pcre2_message(err),
         static_cast<size_t>(off));
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(code_); }

bool Regex::search(std::string_view subject, size_t from, size_t& match_start, size_t& match_end) const {
  ThreadMatchState& st = thread_state();
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const int rc = jit_ ? pcre2_jit_match(code_, s, subject.size(), from, PCRE2_NO_UTF_CHECK, st.md, st.mc)
                      : pcre2_match(code_, s, subject.size(), from, PCRE2_NO_UTF_CHECK, st.md, st.mc);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) fail("regex {:?}: match failed: {}", pattern_, pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md);
  match_start = ov[0];
  match_end = ov[1];
  return true;
}

SplitBehavior parse_split_behavior(const std::string& name) {
  std::string k;
  for (char c : name) k.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (k == "removed") return SplitBehavior::Removed;
  if (k == "isolated") return SplitBehavior::Isolated;
  if (k == "mergedwithprevious") return SplitBehavior::MergedWithPrevious;
  if (k == "mergedwithnext") return SplitBehavior::MergedWithNext;
  if (k == "contiguous") return SplitBehavior::Contiguous;
  fail("unknown split behavior {:?} (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)",
       name);
}

namespace {

// ---------------------------------------------------------------------------------------------------------
// Splitting: HF NormalizedString::split over the (offsets, is_match) spans of a pattern, streamed.
// ---------------------------------------------------------------------------------------------------------

class SpanSplitter {
 public:
  SpanSplitter(std::string_view s, bool at_start, SplitBehavior b, bool invert, PieceSink next)
      : s_(s), at_start_(at_start), b_(b), invert_(invert), next_(next) {}

  void span(size_t start, size_t end, bool match) {
    match ^= invert_;
    switch (b_) {
      case SplitBehavior::Isolated: emit(start, end); break;
      case SplitBehavior::Removed:
        if (!match) emit(start, end);
        break;
      case SplitBehavior::MergedWithPrevious:
        if (match && !prev_match_ && have_) {
          cur_end_ = end;
        } else {
          flush();
          set(start, end);
        }
        prev_match_ = match;
        break;
      case SplitBehavior::MergedWithNext:
        if (have_) {
          if (pending_match_ && !match) {
            emit(cur_start_, end);
            have_ = false;
            break;
          }
          flush();
        }
        set(start, end);
        pending_match_ = match;
        break;
      case SplitBehavior::Contiguous:
        if (have_ && match == prev_match_) {
          cur_end_ = end;
        } else {
          flush();
          set(start, end);
        }
        prev_match_ = match;
        break;
    }
  }
  void finish() { flush(); }

 private:
  void set(size_t a, size_t b) {
    cur_start_ = a;
    cur_end_ = b;
    have_ = true;
  }
  void flush() {
    if (have_) emit(cur_start_, cur_end_);
    have_ = false;
  }
  void emit(size_t a, size_t b) {
    if (b > a) next_(s_.substr(a, b - a), at_start_ && a == 0);
  }

  std::string_view s_;
  bool at_start_;
  SplitBehavior b_;
  bool invert_;
  PieceSink next_;
  bool have_ = false, prev_match_ = false, pending_match_ = false;
  size_t cur_start_ = 0, cur_end_ = 0;
};

void split_regex(const Regex& re, std::string_view s, bool at_start, SplitBehavior b, bool invert, PieceSink next) {
  SpanSplitter sp(s, at_start, b, invert, next);
  size_t prev = 0;
  for_each_match(re, s, [&](size_t ms, size_t me) {
    if (prev != ms) sp.span(prev, ms, false);
    sp.span(ms, me, true);
    prev = me;
  });
  if (prev != s.size()) sp.span(prev, s.size(), false);
  sp.finish();
}

template <class Pred>
void split_chars(Pred pred, std::string_view s, bool at_start, SplitBehavior b, PieceSink next) {
  SpanSplitter sp(s, at_start, b, false, next);
  size_t last = 0, i = 0;
  while (i < s.size()) {
    const size_t start = i;
    const char32_t c = next_cp(s, i);
    if (pred(c)) {
      if (last < start) sp.span(last, start, false);
      sp.span(start, i, true);
      last = i;
    }
  }
  if (last < s.size()) sp.span(last, s.size(), false);
  sp.finish();
}

bool get_bool(const nlohmann::json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  check(it->is_boolean(), "field {:?} must be a boolean", key);
  return it->get<bool>();
}

std::string get_string(const nlohmann::json& j, const char* key, const std::string& dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  check(it->is_string(), "field {:?} must be a string", key);
  return it->get<std::string>();
}

std::string type_of(const nlohmann::json& j, const char* what) {
  check(j.is_object(), "{} must be a JSON object", what);
  auto it = j.find("type");
  check(it != j.end() && it->is_string(), "{} has no \"type\"", what);
  return it->get<std::string>();
}

// Split pattern: {"Regex": "..."} or {"String": "..."}.
std::unique_ptr<Regex> split_pattern(const nlohmann::json& j, const char* what) {
  check(j.is_object() && j.size() == 1, "{} pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}", what);
  if (auto it = j.find("Regex"); it != j.end()) {
    check(it->is_string(), "{} Regex pattern must be a string", what);
    return std::make_unique<Regex>(it->get<std::string>());
  }
  if (auto it = j.find("String"); it != j.end()) {
    check(it->is_string(), "{} String pattern must be a string", what);
    return std::make_unique<Regex>(it->get<std::string>(), /*literal=*/true);
  }
  fail("{} pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}", what);
}

// ---------------------------------------------------------------------------------------------------------
// Normalizers
// ---------------------------------------------------------------------------------------------------------

class UnicodeNorm final : public Normalizer {
 public:
  explicit UnicodeNorm(unicode::NormForm f) : f_(f) {}
  std::string apply(std::string_view s) const override {
    bool ascii = true;
    for (char c : s) ascii &= static_cast<unsigned char>(c) < 0x80;
    return ascii ? std::string(s) : unicode::normalize(s, f_);
  }

 private:
  unicode::NormForm f_;
};

class LowercaseNorm final : public Normalizer {
 public:
  std::string apply(std::string_view s) const override { return unicode::lowercase(s); }
};

class StripNorm final : public Normalizer {
 public:
  StripNorm(bool left, bool right) : left_(left), right_(right) {}
  std::string apply(std::string_view s) const override {
    size_t b = 0, e = s.size();
    if (left_)
      while (b < e) {
        size_t i = b;
        if (!unicode::is_whitespace(next_cp(s, i))) break;
        b = i;
      }
    if (right_)
      while (e > b) {
        size_t k = e - 1;
        while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        size_t i = k;
        if (!unicode::is_whitespace(next_cp(s, i))) break;
        e = k;
      }
    return std::string(s.substr(b, e - b));
  }

 private:
  bool left_, right_;
};

class StripAccentsNorm final : public Normalizer {
 public:
  std::string apply(std::string_view s) const override {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
      const size_t st = i;
      const char32_t c = next_cp(s, i);
      if (!unicode::is_nonspacing_mark(c)) out.append(s.substr(st, i - st));
    }
    return out;
  }
};

class ReplaceNorm final : public Normalizer {
 public:
  ReplaceNorm(std::unique_ptr<Regex> re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  std::string apply(std::string_view s) const override {
    std::string out;
    size_t prev = 0;
    for_each_match(*re_, s, [&](size_t ms, size_t me) {
      out.append(s.substr(prev, ms - prev));
      out += content_;
      prev = me;
    });
    out.append(s.substr(prev));
    return out;
  }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

class PrependNorm final : public Normalizer {
 public:
  explicit PrependNorm(std::string p) : p_(std::move(p)) {}
  std::string apply(std::string_view s) const override { return s.empty() ? std::string() : p_ + std::string(s); }

 private:
  std::string p_;
};

class ByteLevelNorm final : public Normalizer {
 public:
  std::string apply(std::string_view s) const override {
    const auto& a = byte_level_alphabet();
    std::string out;
    for (unsigned char c : s) out += a[c];
    return out;
  }
};

void add_normalizers(const nlohmann::json& j, std::vector<std::unique_ptr<Normalizer>>& out) {
  if (j.is_null()) return;
  const std::string t = type_of(j, "normalizer");
  if (t == "Sequence") {
    auto it = j.find("normalizers");
    check(it != j.end() && it->is_array(), "normalizer Sequence needs a \"normalizers\" array");
    for (const auto& n : *it) add_normalizers(n, out);
  } else if (t == "NFC") {
    out.push_back(std::make_unique<UnicodeNorm>(unicode::NormForm::NFC));
  } else if (t == "NFD") {
    out.push_back(std::make_unique<UnicodeNorm>(unicode::NormForm::NFD));
  } else if (t == "NFKC") {
    out.push_back(std::make_unique<UnicodeNorm>(unicode::NormForm::NFKC));
  } else if (t == "NFKD") {
    out.push_back(std::make_unique<UnicodeNorm>(unicode::NormForm::NFKD));
  } else if (t == "Lowercase") {
    out.push_back(std::make_unique<LowercaseNorm>());
  } else if (t == "Strip") {
    out.push_back(std::make_unique<StripNorm>(get_bool(j, "strip_left", true), get_bool(j, "strip_right", true)));
  } else if (t == "StripAccents") {
    out.push_back(std::make_unique<StripAccentsNorm>());
  } else if (t == "Replace") {
    check(j.contains("pattern") && j.contains("content"), "normalizer Replace needs \"pattern\" and \"content\"");
    out.push_back(
        std::make_unique<ReplaceNorm>(split_pattern(j["pattern"], "normalizer Replace"), get_string(j, "content", "")));
  } else if (t == "Prepend") {
    out.push_back(std::make_unique<PrependNorm>(get_string(j, "prepend", "")));
  } else if (t == "ByteLevel") {
    out.push_back(std::make_unique<ByteLevelNorm>());
  } else {
    fail(
        "normalizer type {:?} is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Strip, "
        "StripAccents, Replace, Prepend, ByteLevel)",
        t);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Pre-tokenizer steps
// ---------------------------------------------------------------------------------------------------------

class SplitStep final : public PreTokenizerStep {
 public:
  SplitStep(std::unique_ptr<Regex> re, SplitBehavior b, bool invert) : re_(std::move(re)), b_(b), invert_(invert) {}
  void run(std::string_view piece, bool at_start, PieceSink next) const override {
    split_regex(*re_, piece, at_start, b_, invert_, next);
  }

 private:
  std::unique_ptr<Regex> re_;
  SplitBehavior b_;
  bool invert_;
};

class DigitsStep final : public PreTokenizerStep {
 public:
  explicit DigitsStep(bool individual) : individual_(individual) {}
  void run(std::string_view piece, bool at_start, PieceSink next) const override {
    split_chars(unicode::is_numeric, piece, at_start, individual_ ? SplitBehavior::Isolated : SplitBehavior::Contiguous,
                next);
  }

 private:
  bool individual_;
};

// GPT-2's pattern, as HF ByteLevel compiles it (Oniguruma syntax).
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelStep final : public PreTokenizerStep {
 public:
  ByteLevelStep(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) re_ = std::make_unique<Regex>(kGpt2Pattern);
    const auto& a = byte_level_alphabet();
    for (int b = 0; b < 256; ++b) {
      map_[b].len = static_cast<uint8_t>(a[b].size());
      std::copy(a[b].begin(), a[b].end(), map_[b].bytes);
    }
  }
  void run(std::string_view piece, bool at_start, PieceSink next) const override {
    std::string prefixed;
    if (add_prefix_space_ && piece[0] != ' ') {
      prefixed.reserve(piece.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(piece);
      piece = prefixed;
    }
    auto mapped = [&](std::string_view sub, bool sub_at_start) {
      char small[128];
      std::string big;
      char* out = small;
      if (sub.size() * 2 > sizeof small) {
        big.resize(sub.size() * 2);
        out = big.data();
      }
      size_t n = 0;
      for (unsigned char c : sub) {
        const Mapped& mp = map_[c];
        out[n] = mp.bytes[0];
        out[n + 1] = mp.bytes[1];  // harmless when len == 1: overwritten or past the end of the result
        n += mp.len;
      }
      next(std::string_view(out, n), sub_at_start);
    };
    if (re_)
      split_regex(*re_, piece, at_start, SplitBehavior::Isolated, false, mapped);
    else
      mapped(piece, at_start);
  }

 private:
  struct Mapped {
    char bytes[2];
    uint8_t len;
  };
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
  std::array<Mapped, 256> map_{};
};

class WhitespaceStep final : public PreTokenizerStep {
 public:
  // HF Whitespace: the spans of \w+|[^\w\s]+ are kept (Rust regex \w and \s: Unicode Word and White_Space).
  WhitespaceStep()
      : re_(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}]+|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}\s]+)") {
  }
  void run(std::string_view piece, bool at_start, PieceSink next) const override {
    split_regex(re_, piece, at_start, SplitBehavior::Removed, /*invert=*/true, next);
  }

 private:
  Regex re_;
};

class WhitespaceSplitStep final : public PreTokenizerStep {
 public:
  void run(std::string_view piece, bool at_start, PieceSink next) const override {
    split_chars(unicode::is_whitespace, piece, at_start, SplitBehavior::Removed, next);
  }
};

class MetaspaceStep final : public PreTokenizerStep {
 public:
  enum class Prepend { Always, First, Never };
  MetaspaceStep(std::string replacement, Prepend prepend, bool split)
      : rep_(std::move(replacement)), prepend_(prepend), split_(split) {
    size_t i = 0;
    rep_cp_ = next_cp(rep_, i);
  }
  void run(std::string_view piece, bool at_start, PieceSink next) const override {
    std::string s;
    s.reserve(piece.size() + 8);
    for (char c : piece) {
      if (c == ' ')
        s += rep_;
      else
        s.push_back(c);
    }
    const bool starts = s.compare(0, rep_.size(), rep_) == 0;
    if (!starts && (prepend_ == Prepend::Always || (prepend_ == Prepend::First && at_start))) s.insert(0, rep_);
    if (!split_) {
      next(s, at_start);
      return;
    }
    const char32_t rc = rep_cp_;
    split_chars([rc](char32_t c) { return c == rc; }, s, at_start, SplitBehavior::MergedWithNext, next);
  }

 private:
  std::string rep_;
  char32_t rep_cp_ = 0;
  Prepend prepend_;
  bool split_;
};

void add_steps(const nlohmann::json& j, std::vector<std::unique_ptr<PreTokenizerStep>>& out) {
  if (j.is_null()) return;
  const std::string t = type_of(j, "pre_tokenizer");
  if (t == "Sequence") {
    auto it = j.find("pretokenizers");
    check(it != j.end() && it->is_array(), "pre_tokenizer Sequence needs a \"pretokenizers\" array");
    for (const auto& p : *it) add_steps(p, out);
  } else if (t == "Split") {
    check(j.contains("pattern"), "pre_tokenizer Split has no \"pattern\"");
    out.push_back(std::make_unique<SplitStep>(split_pattern(j["pattern"], "pre_tokenizer Split"),
                                              parse_split_behavior(get_string(j, "behavior", "")),
                                              get_bool(j, "invert", false)));
  } else if (t == "Digits") {
    out.push_back(std::make_unique<DigitsStep>(get_bool(j, "individual_digits", false)));
  } else if (t == "ByteLevel") {
    out.push_back(
        std::make_unique<ByteLevelStep>(get_bool(j, "add_prefix_space", true), get_bool(j, "use_regex", true)));
  } else if (t == "Whitespace") {
    out.push_back(std::make_unique<WhitespaceStep>());
  } else if (t == "WhitespaceSplit") {
    out.push_back(std::make_unique<WhitespaceSplitStep>());
  } else if (t == "Metaspace") {
    std::string rep = get_string(j, "replacement", "\xE2\x96\x81");
    check(!rep.empty(), "pre_tokenizer Metaspace replacement must not be empty");
    MetaspaceStep::Prepend pre = MetaspaceStep::Prepend::Always;
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
      const std::string s = get_string(j, "prepend_scheme", "always");
      if (s == "always")
        pre = MetaspaceStep::Prepend::Always;
      else if (s == "first")
        pre = MetaspaceStep::Prepend::First;
      else if (s == "never")
        pre = MetaspaceStep::Prepend::Never;
      else
        fail("pre_tokenizer Metaspace prepend_scheme {:?} is not one of always, first, never", s);
    } else if (!get_bool(j, "add_prefix_space", true)) {
      pre = MetaspaceStep::Prepend::Never;
    }
    out.push_back(std::make_unique<MetaspaceStep>(rep, pre, get_bool(j, "split", true)));
  } else {
    fail(
        "pre_tokenizer type {:?} is not supported (supported: Sequence, Split, Digits, ByteLevel, Whitespace, "
        "WhitespaceSplit, Metaspace)",
        t);
  }
}

}  // namespace

std::vector<std::unique_ptr<Normalizer>> build_normalizers(const nlohmann::json& j) {
  std::vector<std::unique_ptr<Normalizer>> out;
  add_normalizers(j, out);
  return out;
}

std::vector<std::unique_ptr<PreTokenizerStep>> build_pre_tokenizer(const nlohmann::json& j) {
  std::vector<std::unique_ptr<PreTokenizerStep>> out;
  add_steps(j, out);
  return out;
}

void PreTokenizer::run_from(size_t step, std::string_view s, bool at_start,
                            FunctionRef<void(std::string_view)> sink) const {
  if (step == steps_.size()) {
    sink(s);
    return;
  }
  steps_[step]->run(s, at_start,
                    [&](std::string_view sub, bool sub_at_start) { run_from(step + 1, sub, sub_at_start, sink); });
}

}  // namespace dsmoe::text::detail
