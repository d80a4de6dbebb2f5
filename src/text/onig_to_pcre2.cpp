// Oniguruma -> PCRE2 pattern translation (onig_to_pcre2, declared in pretokenizer.h): the escapes, character
// classes, properties and options whose meaning differs between the two dialects, and the repair of
// NFC-damaged character classes. Compiling and matching the result is in pretokenizer.cpp (class Regex).
#include "text/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

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
  pcre2_code* c =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
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
  static const std::pair<const char*, const char*> kCategories[] = {{"letter", "L"},
                                                                    {"casedletter", "L&"},
                                                                    {"uppercaseletter", "Lu"},
                                                                    {"lowercaseletter", "Ll"},
                                                                    {"titlecaseletter", "Lt"},
                                                                    {"modifierletter", "Lm"},
                                                                    {"otherletter", "Lo"},
                                                                    {"mark", "M"},
                                                                    {"combiningmark", "M"},
                                                                    {"nonspacingmark", "Mn"},
                                                                    {"spacingmark", "Mc"},
                                                                    {"enclosingmark", "Me"},
                                                                    {"number", "N"},
                                                                    {"decimalnumber", "Nd"},
                                                                    {"digit", "Nd"},
                                                                    {"letternumber", "Nl"},
                                                                    {"othernumber", "No"},
                                                                    {"punctuation", "P"},
                                                                    {"punct", "P"},
                                                                    {"connectorpunctuation", "Pc"},
                                                                    {"dashpunctuation", "Pd"},
                                                                    {"openpunctuation", "Ps"},
                                                                    {"closepunctuation", "Pe"},
                                                                    {"initialpunctuation", "Pi"},
                                                                    {"finalpunctuation", "Pf"},
                                                                    {"otherpunctuation", "Po"},
                                                                    {"symbol", "S"},
                                                                    {"mathsymbol", "Sm"},
                                                                    {"currencysymbol", "Sc"},
                                                                    {"modifiersymbol", "Sk"},
                                                                    {"othersymbol", "So"},
                                                                    {"separator", "Z"},
                                                                    {"spaceseparator", "Zs"},
                                                                    {"lineseparator", "Zl"},
                                                                    {"paragraphseparator", "Zp"},
                                                                    {"other", "C"},
                                                                    {"control", "Cc"},
                                                                    {"cntrl", "Cc"},
                                                                    {"format", "Cf"},
                                                                    {"surrogate", "Cs"},
                                                                    {"privateuse", "Co"},
                                                                    {"unassigned", "Cn"},
                                                                    {"lc", "L&"}};
  for (const auto& [lng, shrt] : kCategories)
    if (key == lng) return neg + shrt;
  if (name.find(':') == std::string::npos && pcre2_compiles("\\p{sc:" + name + "}")) return neg + "sc:" + name;
  return body;
}

struct ClassItem {
  enum Kind { Char, Range, Raw, NotWord } kind;
  char32_t lo = 0, hi = 0;
  std::string raw;
  explicit ClassItem(Kind k, char32_t l = 0, char32_t h = 0, std::string r = {})
      : kind(k), lo(l), hi(h), raw(std::move(r)) {}
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

  [[noreturn]] void error(const std::string& what) const {
    fail("regex {:?}: {} (at byte {})", std::string(p_), what, i_);
  }

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
      case 's':
        out_ += fmt::format("[{}]", kSpaceItems);
        i_ += 2;
        return;
      case 'S':
        out_ += fmt::format("[^{}]", kSpaceItems);
        i_ += 2;
        return;
      case 'w':
        out_ += fmt::format("[{}]", kWordItems);
        i_ += 2;
        return;
      case 'W':
        out_ += fmt::format("[^{}]", kWordItems);
        i_ += 2;
        return;
      case 'h':
        out_ += "[0-9a-fA-F]";
        i_ += 2;
        return;
      case 'H':
        out_ += "[^0-9a-fA-F]";
        i_ += 2;
        return;
      case 'v':
        out_ += "\\x{0B}";
        i_ += 2;
        return;
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
      default: break;
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
      case '0':
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7': {
        char32_t v = static_cast<char32_t>(e - '0');
        for (int k = 0; k < 2 && i_ < p_.size() && p_[i_] >= '0' && p_[i_] <= '7'; ++k) v = v * 8 + (p_[i_++] - '0');
        return ch(v);
      }
      default: {
        if (std::isalpha(static_cast<unsigned char>(e)))
          error(fmt::format("unsupported escape \\{} in character class", e));
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
      if (c == '&' && i_ + 1 < p_.size() && p_[i_ + 1] == '&')
        error("character class intersection (&&) is not supported");
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
      return body.empty() ? fmt::format("[^{}]", kWordItemsInClass)
                          : fmt::format("(?:[{}]|[^{}])", body, kWordItemsInClass);
    return body.empty() ? fmt::format("[{}]", kWordItemsInClass)
                        : fmt::format("(?:(?![{}])[{}])", body, kWordItemsInClass);
  }

  std::string_view p_;
  size_t i_ = 0;
  std::string out_;
};

}  // namespace

std::string onig_to_pcre2(std::string_view pattern) { return Translator(pattern).run(); }

}  // namespace dsmoe::text::detail
