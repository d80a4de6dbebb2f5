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
// Oniguruma -> PCRE2 translation
// ---------------------------------------------------------------------------------------------------------

// Oniguruma's \s is White_Space (PCRE2 10.42 with UCP also matches U+180E).
constexpr const char* kSpaceItems = "\\x{09}-\\x{0D}\\x{85}\\p{Z}";
// Oniguruma's \w (checked code point by code point against onig 6.9.8): Alphabetic, marks, Nd, Pc, plus the
// Latin-1 No characters it classifies through its ISO-8859-1 table — but only outside a character class: inside
// one (e.g. [^\w\s]) those six count as non-word.
constexpr const char* kWordItems = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}";
constexpr const char* kWordItemsInClass = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}";

std::string hex_cp(char32_t c) { return fmt::format("\\x{{{:X}}}", static_cast<uint32_t>(c)); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool pcre2_compiles(const std::string& p) {
  int err;
  PCRE2_SIZE off;
  pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), PCRE2_UTF | PCRE2_UCP, &err,
                                &off, nullptr);
  if (!c) return false;
  pcre2_code_free(c);
  return true;
}

// \p{Name} body: long general-category names to PCRE2's short ones, scripts to sc: (Script, as Oniguruma,
// rather than PCRE2's default Script_Extensions).
std::string translate_property(const std::string& body) {
  std::string name = body;
  std::string neg;
  if (!name.empty() && name[0] == '^') {
    neg = "^";
    name = name.substr(1);
  }
  std::string key;
  for (char c : name)
    if (c != '_' && c != ' ' && c != '-') key.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  static const std::pair<const char*, const char*> kCategories[] = {
      {"letter", "L"}, {"casedletter", "L&"}, {"uppercaseletter", "Lu"}, {"lowercaseletter", "Ll"},
      {"titlecaseletter", "Lt"}, {"modifierletter", "Lm"}, {"otherletter", "Lo"}, {"mark", "M"},
      {"combiningmark", "M"}, {"nonspacingmark", "Mn"}, {"spacingmark", "Mc"}, {"enclosingmark", "Me"},
      {"number", "N"}, {"decimalnumber", "Nd"}, {"digit", "Nd"}, {"letternumber", "Nl"}, {"othernumber", "No"},
      {"punctuation", "P"}, {"punct", "P"}, {"connectorpunctuation", "Pc"}, {"dashpunctuation", "Pd"},
      {"openpunctuation", "Ps"}, {"closepunctuation", "Pe"}, {"initialpunctuation", "Pi"},
      {"finalpunctuation", "Pf"}, {"otherpunctuation", "Po"}, {"symbol", "S"}, {"mathsymbol", "Sm"},
      {"currencysymbol", "Sc"}, {"modifiersymbol", "Sk"}, {"othersymbol", "So"}, {"separator", "Z"},
      {"spaceseparator", "Zs"}, {"lineseparator", "Zl"}, {"paragraphseparator", "Zp"}, {"other", "C"},
      {"control", "Cc"}, {"cntrl", "Cc"}, {"format", "Cf"}, {"surrogate", "Cs"}, {"privateuse", "Co"},
      {"unassigned", "Cn"}, {"lc", "L&"}};
  for (const auto& [lng, shrt] : kCategories)
    if (key == lng) return neg + shrt;
  if (name.find(':') == std::string::npos && pcre2_compiles("\\p{sc:" + name + "}"))
    return neg + "sc:" + name;
  return body;
}

struct ClassItem {
  enum Kind { Char, Range, Raw, NotWord } kind;
  char32_t lo = 0, hi = 0;
  std::string raw;
  explicit ClassItem(Kind k, char32_t l = 0, char32_t h = 0, std::string r = {}) : kind(k), lo(l), hi(h), raw(std::move(r)) {}
};

class Translator {
 public:
  explicit Translator(std::string_view p) : p_(p) {}

  std::string run() {
    while (i_ < p_.size()) {
      const char c = p_[i_];
      if (c == '\\') {
        escape_outside();
      } else if (c == '[') {
        bool negated;
        std::vector<ClassItem> items;
        parse_class(negated, items);
        out_ += emit_class(negated, items);
      } else if (c == '(' && i_ + 1 < p_.size() && p_[i_ + 1] == '?') {
        group_options();
      } else if (c == '{' && i_ + 1 < p_.size() && p_[i_ + 1] == ',') {
        // Oniguruma's {,n} is {0,n}; PCRE2 10.42 would read it literally.
        size_t j = i_ + 2;
        while (j < p_.size() && std::isdigit(static_cast<unsigned char>(p_[j]))) ++j;
        if (j > i_ + 2 && j < p_.size() && p_[j] == '}') {
          out_ += "{0,";
          out_.append(p_.substr(i_ + 2, j + 1 - (i_ + 2)));
          i_ = j + 1;
        } else {
          out_ += "\\{";
          ++i_;
        }
      } else {
        copy_char();
      }
    }
    return out_;
  }

 private:
  void copy_char() {
    const size_t n = unicode::char_len(static_cast<unsigned char>(p_[i_]));
    out_.append(p_.substr(i_, n));
    i_ += n;
  }

  [[noreturn]] void error(const std::string& what) const { fail("regex {:?}: {} (at byte {})", std::string(p_), what, i_); }

  // (?imx-imx) and (?imx-imx:...): Oniguruma's Ruby 'm' is dot-all, PCRE2's 's'.
  void group_options() {
    size_t j = i_ + 2;
    std::string opts;
    while (j < p_.size() && (p_[j] == 'i' || p_[j] == 'm' || p_[j] == 'x' || p_[j] == '-')) {
      opts.push_back(p_[j] == 'm' ? 's' : p_[j]);
      ++j;
    }
    if (!opts.empty() && j < p_.size() && (p_[j] == ':' || p_[j] == ')')) {
      out_ += "(?" + opts + p_[j];
      i_ = j + 1;
      return;
    }
    out_ += "(?";
    i_ += 2;
  }

  std::string read_braced_property() {  // at '{' after \p
    const size_t close = p_.find('}', i_);
    if (close == std::string_view::npos) error("unterminated \\p{...}");
    std::string body(p_.substr(i_ + 1, close - i_ - 1));
    i_ = close + 1;
    return translate_property(body);
  }

  char32_t read_hex(size_t max_digits) {
    char32_t v = 0;
    size_t k = 0;
    while (k < max_digits && i_ < p_.size() && hex_value(p_[i_]) >= 0) {
      v = v * 16 + static_cast<char32_t>(hex_value(p_[i_]));
      ++i_;
      ++k;
    }
    if (k == 0) error("bad hex escape");
    return v;
  }

  void escape_outside() {
    if (i_ + 1 >= p_.size()) error("trailing backslash");
    const char e = p_[i_ + 1];
    switch (e) {
      case 's': out_ += fmt::format("[{}]", kSpaceItems); i_ += 2; return;
      case 'S': out_ += fmt::format("[^{}]", kSpaceItems); i_ += 2; return;
      case 'w': out_ += fmt::format("[{}]", kWordItems); i_ += 2; return;
      case 'W': out_ += fmt::format("[^{}]", kWordItems); i_ += 2; return;
      case 'h': out_ += "[0-9a-fA-F]"; i_ += 2; return;
      case 'H': out_ += "[^0-9a-fA-F]"; i_ += 2; return;
      case 'v': out_ += "\\x{0B}"; i_ += 2; return;
      case 'u': {
        i_ += 2;
        out_ += hex_cp(read_hex(4));
        return;
      }
      case 'p':
      case 'P':
        if (i_ + 2 < p_.size() && p_[i_ + 2] == '{') {
          i_ += 2;
          out_ += std::string("\\") + e + "{" + read_braced_property() + "}";
          return;
        }
        break;
      default:
        break;
    }
    out_.push_back('\\');
    ++i_;
    copy_char();
  }

  // One class atom. Returns a Char item for a single code point, Raw/NotWord for sets.
  ClassItem class_atom() {
    ClassItem it(ClassItem::Char);
    if (p_[i_] != '\\') {
      it.lo = it.hi = next_cp(p_, i_);
      return it;
    }
    if (i_ + 1 >= p_.size()) error("trailing backslash");
    const char e = p_[i_ + 1];
    i_ += 2;
    auto raw = [&](std::string r) {
      it.kind = ClassItem::Raw;
      it.raw = std::move(r);
      return it;
    };
    auto ch = [&](char32_t c) {
      it.lo = it.hi = c;
      return it;
    };
    switch (e) {
      case 's': return raw(kSpaceItems);
      case 'S': return raw("\\S\\x{180E}");
      case 'w': return raw(kWordItemsInClass);
      case 'W': it.kind = ClassItem::NotWord; return it;
      case 'h': return raw("0-9a-fA-F");
      case 'H': return raw("[:^xdigit:]");
      case 'd': return raw("\\d");
      case 'D': return raw("\\D");
      case 'p':
      case 'P':
        if (i_ < p_.size() && p_[i_] == '{') return raw(std::string("\\") + e + "{" + read_braced_property() + "}");
        error("bad \\p escape in character class");
      case 'u': return ch(read_hex(4));
      case 'x':
        if (i_ < p_.size() && p_[i_] == '{') {
          ++i_;
          const char32_t v = read_hex(8);
          if (i_ >= p_.size() || p_[i_] != '}') error("bad \\x{...} escape");
          ++i_;
          return ch(v);
        }
        return ch(read_hex(2));
      case 'n': return ch('\n');
      case 't': return ch('\t');
      case 'r': return ch('\r');
      case 'f': return ch('\f');
      case 'v': return ch(0x0B);
      case 'a': return ch(0x07);
      case 'b': return ch(0x08);  // backspace inside a class
      case 'e': return ch(0x1B);
      case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
        char32_t v = static_cast<char32_t>(e - '0');
        for (int k = 0; k < 2 && i_ < p_.size() && p_[i_] >= '0' && p_[i_] <= '7'; ++k) v = v * 8 + (p_[i_++] - '0');
        return ch(v);
      }
      default: {
        if (std::isalpha(static_cast<unsigned char>(e))) error(fmt::format("unsupported escape \\{} in character class", e));
        --i_;  // the escaped character itself, taken literally
        return ch(next_cp(p_, i_));
      }
    }
  }

  void parse_class(bool& negated, std::vector<ClassItem>& items) {
    ++i_;  // '['
    negated = false;
    if (i_ < p_.size() && p_[i_] == '^') {
      negated = true;
      ++i_;
    }
    bool first = true;
    for (;;) {
      if (i_ >= p_.size()) error("unterminated character class");
      const char c = p_[i_];
      if (c == ']' && !first) {
        ++i_;
        return;
      }
      first = false;
      if (c == '[') {
        if (i_ + 1 < p_.size() && p_[i_ + 1] == ':') {
          const size_t close = p_.find(":]", i_ + 2);
          if (close == std::string_view::npos) error("unterminated POSIX bracket");
          items.emplace_back(ClassItem::Raw, 0, 0, std::string(p_.substr(i_, close + 2 - i_)));
          i_ = close + 2;
          continue;
        }
        bool nested_neg;
        std::vector<ClassItem> nested;
        parse_class(nested_neg, nested);
        if (nested_neg) error("negated nested character classes are not supported");
        items.insert(items.end(), nested.begin(), nested.end());
        continue;
      }
      if (c == '&' && i_ + 1 < p_.size() && p_[i_ + 1] == '&') error("character class intersection (&&) is not supported");
      ClassItem a = class_atom();
      if (a.kind == ClassItem::Char && i_ + 1 < p_.size() && p_[i_] == '-' && p_[i_ + 1] != ']') {
        const size_t save = i_;
        ++i_;
        ClassItem b = class_atom();
        if (b.kind == ClassItem::Char) {
          items.emplace_back(ClassItem::Range, a.lo, b.lo);
          continue;
        }
        i_ = save;  // "a-\w": the '-' is literal
      }
      items.push_back(std::move(a));
    }
  }

  static void repair_descending(std::vector<ClassItem>& items) {
    bool descending = false;
    for (const auto& it : items) descending |= it.kind == ClassItem::Range && it.lo > it.hi;
    if (!descending) return;
    // NFC damage repair (see header). Only Char/Range items take part in the ordering.
    std::vector<size_t> idx;
    for (size_t k = 0; k < items.size(); ++k)
      if (items[k].kind == ClassItem::Char || items[k].kind == ClassItem::Range) idx.push_back(k);
    constexpr char32_t kWindow = 0x1000;
    char32_t run_max = 0;
    bool have_prev = false;
    for (size_t n = 0; n < idx.size(); ++n) {
      ClassItem& it = items[idx[n]];
      const char32_t next_lo = n + 1 < idx.size() ? items[idx[n + 1]].lo : 0x110000;
      if (it.kind == ClassItem::Range && it.lo > it.hi) {
        const char32_t bound = std::min<char32_t>(next_lo > it.lo ? next_lo : 0x110000, it.lo + kWindow);
        if (char32_t c = unicode::unique_nfc_preimage(it.hi, it.lo + 1, bound)) it.hi = c;
      }
      if (have_prev && it.lo < run_max) {
        const char32_t upper = it.kind == ClassItem::Range ? it.hi + 1 : next_lo;
        const char32_t bound = std::min<char32_t>(upper, run_max + 1 + kWindow);
        if (bound > run_max + 1)
          if (char32_t c = unicode::unique_nfc_preimage(it.lo, run_max + 1, bound)) {
            it.lo = c;
            if (it.kind == ClassItem::Char) it.hi = c;
          }
      }
      if (it.lo <= it.hi) {
        run_max = std::max(run_max, it.hi);
        have_prev = true;
      }
    }
    // Whatever is still descending is empty: dropped, as Oniguruma does with ALLOW_EMPTY_RANGE_IN_CC.
    std::erase_if(items, [](const ClassItem& it) { return it.kind == ClassItem::Range && it.lo > it.hi; });
  }

  static std::string emit_class(bool negated, std::vector<ClassItem>& items) {
    repair_descending(items);
    std::string body;
    bool not_word = false;
    for (const auto& it : items) {
      switch (it.kind) {
        case ClassItem::Char: body += hex_cp(it.lo); break;
        case ClassItem::Range: body += hex_cp(it.lo) + "-" + hex_cp(it.hi); break;
        case ClassItem::Raw: body += it.raw; break;
        case ClassItem::NotWord: not_word = true; break;
      }
    }
    if (!not_word) {
      if (body.empty()) return negated ? "[\\x{0}-\\x{10FFFF}]" : "[^\\x{0}-\\x{10FFFF}]";  // all / nothing
      return std::string(negated ? "[^" : "[") + body + "]";
    }
    // \W inside a class: PCRE2 classes cannot hold the complement of a set, so rewrite with a group.
    if (!negated)
      return body.empty() ? fmt::format("[^{}]", kWordItemsInClass) : fmt::format("(?:[{}]|[^{}])", body, kWordItemsInClass);
    return body.empty() ? fmt::format("[{}]", kWordItemsInClass) : fmt::format("(?:(?![{}])[{}])", body, kWordItemsInClass);
  }

  std::string_view p_;
  size_t i_ = 0;
  std::string out_;
};

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

std::string onig_to_pcre2(std::string_view pattern) { return Translator(pattern).run(); }

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
    fail("regex {:?} (as PCRE2 {:?}): {} at offset {}", pattern_, translated_, pcre2_message(err), static_cast<size_t>(off));
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
  fail("unknown split behavior {:?} (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)", name);
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
      case SplitBehavior::Removed: if (!match) emit(start, end); break;
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
  void set(size_t a, size_t b) { cur_start_ = a; cur_end_ = b; have_ = true; }
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
    out.push_back(std::make_unique<ReplaceNorm>(split_pattern(j["pattern"], "normalizer Replace"), get_string(j, "content", "")));
  } else if (t == "Prepend") {
    out.push_back(std::make_unique<PrependNorm>(get_string(j, "prepend", "")));
  } else if (t == "ByteLevel") {
    out.push_back(std::make_unique<ByteLevelNorm>());
  } else {
    fail("normalizer type {:?} is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Strip, "
         "StripAccents, Replace, Prepend, ByteLevel)", t);
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
    split_chars(unicode::is_numeric, piece, at_start,
                individual_ ? SplitBehavior::Isolated : SplitBehavior::Contiguous, next);
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
      : re_(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}]+|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}\s]+)") {}
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
      if (c == ' ') s += rep_;
      else s.push_back(c);
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
    out.push_back(std::make_unique<ByteLevelStep>(get_bool(j, "add_prefix_space", true), get_bool(j, "use_regex", true)));
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
      if (s == "always") pre = MetaspaceStep::Prepend::Always;
      else if (s == "first") pre = MetaspaceStep::Prepend::First;
      else if (s == "never") pre = MetaspaceStep::Prepend::Never;
      else fail("pre_tokenizer Metaspace prepend_scheme {:?} is not one of always, first, never", s);
    } else if (!get_bool(j, "add_prefix_space", true)) {
      pre = MetaspaceStep::Prepend::Never;
    }
    out.push_back(std::make_unique<MetaspaceStep>(rep, pre, get_bool(j, "split", true)));
  } else {
    fail("pre_tokenizer type {:?} is not supported (supported: Sequence, Split, Digits, ByteLevel, Whitespace, "
         "WhitespaceSplit, Metaspace)", t);
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
  steps_[step]->run(s, at_start, [&](std::string_view sub, bool sub_at_start) { run_from(step + 1, sub, sub_at_start, sink); });
}

}  // namespace dsmoe::text::detail
