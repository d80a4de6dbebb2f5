// Python's str semantics for the chat-template interpreter (see strings.h): stripping, splitting, replacing, joining,
// full Unicode case mapping (SpecialCasing, the final sigma, Other_Lowercase/Other_Uppercase), and int()/float() of
// a string.
#include "text/jinja/strings.h"

#include <utf8proc.h>

#include <cmath>
#include <cstdlib>
#include <iterator>

namespace dsmoe::text::jinja {

std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
  const std::vector<int32_t> cps = decode_utf8(s);
  std::vector<int32_t> set;
  if (given(chars) && chars.kind != Kind::None) set = decode_utf8(need_string(chars, "strip"));
  const auto drop = [&](int32_t c) {
    return given(chars) && chars.kind != Kind::None ? std::find(set.begin(), set.end(), c) != set.end() : is_space(c);
  };
  size_t lo = 0, hi = cps.size();
  while (left && lo < hi && drop(cps[lo])) ++lo;
  while (right && hi > lo && drop(cps[hi - 1])) --hi;
  return encode_utf8(
      std::vector<int32_t>(cps.begin() + static_cast<ptrdiff_t>(lo), cps.begin() + static_cast<ptrdiff_t>(hi)));
}

namespace {

// Python's full case mappings where one code point becomes several (SpecialCasing.txt's unconditional ones; Python
// 3.11, Unicode 14): the upper form, and the title form where it differs (nullptr: the same). ß -> SS / Ss, ...
struct FullCase {
  int32_t cp;
  const char* upper;
  const char* title;
};
// clang-format off
constexpr FullCase kFullCase[] = {
    {0x00DF, "SS", "Ss"}, {0x0149, "\u02BCN", nullptr}, {0x01F0, "J\u030C", nullptr},
    {0x0390, "\u0399\u0308\u0301", nullptr}, {0x03B0, "\u03A5\u0308\u0301", nullptr},
    {0x0587, "\u0535\u0552", "\u0535\u0582"}, {0x1E96, "H\u0331", nullptr}, {0x1E97, "T\u0308", nullptr},
    {0x1E98, "W\u030A", nullptr}, {0x1E99, "Y\u030A", nullptr}, {0x1E9A, "A\u02BE", nullptr},
    {0x1F50, "\u03A5\u0313", nullptr}, {0x1F52, "\u03A5\u0313\u0300", nullptr},
    {0x1F54, "\u03A5\u0313\u0301", nullptr}, {0x1F56, "\u03A5\u0313\u0342", nullptr},
    {0x1F80, "\u1F08\u0399", "\u1F88"}, {0x1F81, "\u1F09\u0399", "\u1F89"}, {0x1F82, "\u1F0A\u0399", "\u1F8A"},
    {0x1F83, "\u1F0B\u0399", "\u1F8B"}, {0x1F84, "\u1F0C\u0399", "\u1F8C"}, {0x1F85, "\u1F0D\u0399", "\u1F8D"},
    {0x1F86, "\u1F0E\u0399", "\u1F8E"}, {0x1F87, "\u1F0F\u0399", "\u1F8F"}, {0x1F88, "\u1F08\u0399", "\u1F88"},
    {0x1F89, "\u1F09\u0399", "\u1F89"}, {0x1F8A, "\u1F0A\u0399", "\u1F8A"}, {0x1F8B, "\u1F0B\u0399", "\u1F8B"},
    {0x1F8C, "\u1F0C\u0399", "\u1F8C"}, {0x1F8D, "\u1F0D\u0399", "\u1F8D"}, {0x1F8E, "\u1F0E\u0399", "\u1F8E"},
    {0x1F8F, "\u1F0F\u0399", "\u1F8F"}, {0x1F90, "\u1F28\u0399", "\u1F98"}, {0x1F91, "\u1F29\u0399", "\u1F99"},
    {0x1F92, "\u1F2A\u0399", "\u1F9A"}, {0x1F93, "\u1F2B\u0399", "\u1F9B"}, {0x1F94, "\u1F2C\u0399", "\u1F9C"},
    {0x1F95, "\u1F2D\u0399", "\u1F9D"}, {0x1F96, "\u1F2E\u0399", "\u1F9E"}, {0x1F97, "\u1F2F\u0399", "\u1F9F"},
    {0x1F98, "\u1F28\u0399", "\u1F98"}, {0x1F99, "\u1F29\u0399", "\u1F99"}, {0x1F9A, "\u1F2A\u0399", "\u1F9A"},
    {0x1F9B, "\u1F2B\u0399", "\u1F9B"}, {0x1F9C, "\u1F2C\u0399", "\u1F9C"}, {0x1F9D, "\u1F2D\u0399", "\u1F9D"},
    {0x1F9E, "\u1F2E\u0399", "\u1F9E"}, {0x1F9F, "\u1F2F\u0399", "\u1F9F"}, {0x1FA0, "\u1F68\u0399", "\u1FA8"},
    {0x1FA1, "\u1F69\u0399", "\u1FA9"}, {0x1FA2, "\u1F6A\u0399", "\u1FAA"}, {0x1FA3, "\u1F6B\u0399", "\u1FAB"},
    {0x1FA4, "\u1F6C\u0399", "\u1FAC"}, {0x1FA5, "\u1F6D\u0399", "\u1FAD"}, {0x1FA6, "\u1F6E\u0399", "\u1FAE"},
    {0x1FA7, "\u1F6F\u0399", "\u1FAF"}, {0x1FA8, "\u1F68\u0399", "\u1FA8"}, {0x1FA9, "\u1F69\u0399", "\u1FA9"},
    {0x1FAA, "\u1F6A\u0399", "\u1FAA"}, {0x1FAB, "\u1F6B\u0399", "\u1FAB"}, {0x1FAC, "\u1F6C\u0399", "\u1FAC"},
    {0x1FAD, "\u1F6D\u0399", "\u1FAD"}, {0x1FAE, "\u1F6E\u0399", "\u1FAE"}, {0x1FAF, "\u1F6F\u0399", "\u1FAF"},
    {0x1FB2, "\u1FBA\u0399", "\u1FBA\u0345"}, {0x1FB3, "\u0391\u0399", "\u1FBC"},
    {0x1FB4, "\u0386\u0399", "\u0386\u0345"}, {0x1FB6, "\u0391\u0342", nullptr},
    {0x1FB7, "\u0391\u0342\u0399", "\u0391\u0342\u0345"}, {0x1FBC, "\u0391\u0399", "\u1FBC"},
    {0x1FC2, "\u1FCA\u0399", "\u1FCA\u0345"}, {0x1FC3, "\u0397\u0399", "\u1FCC"},
    {0x1FC4, "\u0389\u0399", "\u0389\u0345"}, {0x1FC6, "\u0397\u0342", nullptr},
    {0x1FC7, "\u0397\u0342\u0399", "\u0397\u0342\u0345"}, {0x1FCC, "\u0397\u0399", "\u1FCC"},
    {0x1FD2, "\u0399\u0308\u0300", nullptr}, {0x1FD3, "\u0399\u0308\u0301", nullptr},
    {0x1FD6, "\u0399\u0342", nullptr}, {0x1FD7, "\u0399\u0308\u0342", nullptr},
    {0x1FE2, "\u03A5\u0308\u0300", nullptr}, {0x1FE3, "\u03A5\u0308\u0301", nullptr},
    {0x1FE4, "\u03A1\u0313", nullptr}, {0x1FE6, "\u03A5\u0342", nullptr}, {0x1FE7, "\u03A5\u0308\u0342", nullptr},
    {0x1FF2, "\u1FFA\u0399", "\u1FFA\u0345"}, {0x1FF3, "\u03A9\u0399", "\u1FFC"},
    {0x1FF4, "\u038F\u0399", "\u038F\u0345"}, {0x1FF6, "\u03A9\u0342", nullptr},
    {0x1FF7, "\u03A9\u0342\u0399", "\u03A9\u0342\u0345"}, {0x1FFC, "\u03A9\u0399", "\u1FFC"}, {0xFB00, "FF", "Ff"},
    {0xFB01, "FI", "Fi"}, {0xFB02, "FL", "Fl"}, {0xFB03, "FFI", "Ffi"}, {0xFB04, "FFL", "Ffl"}, {0xFB05, "ST", "St"},
    {0xFB06, "ST", "St"}, {0xFB13, "\u0544\u0546", "\u0544\u0576"}, {0xFB14, "\u0544\u0535", "\u0544\u0565"},
    {0xFB15, "\u0544\u053B", "\u0544\u056B"}, {0xFB16, "\u054E\u0546", "\u054E\u0576"},
    {0xFB17, "\u0544\u053D", "\u0544\u056D"}
};
// clang-format on

const FullCase* full_case(int32_t c) {
  const auto it = std::lower_bound(std::begin(kFullCase), std::end(kFullCase), c,
                                   [](const FullCase& f, int32_t cp) { return f.cp < cp; });
  return it != std::end(kFullCase) && it->cp == c ? it : nullptr;
}

// Python's Lowercase and Uppercase properties also hold for letters without a case mapping: Other_Lowercase
// modifier letters (ª º ʰ ᴬ ...) and Other_Uppercase squared letters (🄰 ...), as Python 3.11 has them.
constexpr std::pair<int32_t, int32_t> kOtherLowercase[] = {
    {0xAA, 0xAA},       {0xBA, 0xBA},       {0x2B0, 0x2B8},    {0x2C0, 0x2C1},   {0x2E0, 0x2E4},   {0x37A, 0x37A},
    {0x1D2C, 0x1D6A},   {0x1D78, 0x1D78},   {0x1D9B, 0x1DBF},  {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C},
    {0x2C7C, 0x2C7D},   {0xA69C, 0xA69D},   {0xA770, 0xA770},  {0xA7F8, 0xA7F9}, {0xAB5C, 0xAB5F}, {0x10780, 0x10780},
    {0x10783, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA}};
constexpr std::pair<int32_t, int32_t> kOtherUppercase[] = {{0x1F130, 0x1F149}, {0x1F150, 0x1F169}, {0x1F170, 0x1F189}};

template <size_t N>
bool in_ranges(int32_t c, const std::pair<int32_t, int32_t> (&ranges)[N]) {
  return std::any_of(std::begin(ranges), std::end(ranges), [&](auto& r) { return c >= r.first && c <= r.second; });
}

// str.islower() / str.isupper() / str.istitle() of one code point.
bool is_lowercase(int32_t c) {
  const auto cat = utf8proc_category(c);
  return cat == UTF8PROC_CATEGORY_LL || (cat != UTF8PROC_CATEGORY_LT && utf8proc_toupper(c) != c) ||
         in_ranges(c, kOtherLowercase);
}
bool is_uppercase(int32_t c) {
  const auto cat = utf8proc_category(c);
  return cat == UTF8PROC_CATEGORY_LU || (cat != UTF8PROC_CATEGORY_LT && utf8proc_tolower(c) != c) ||
         in_ranges(c, kOtherUppercase);
}
bool is_titlecase(int32_t c) { return utf8proc_category(c) == UTF8PROC_CATEGORY_LT; }

// Python's "cased" (lowercase, uppercase or titlecase) and "case-ignorable" (marks, format characters, modifiers, and
// the apostrophes, dots and colons inside words) properties.
bool is_cased(int32_t c) { return is_lowercase(c) || is_uppercase(c) || is_titlecase(c); }
bool is_case_ignorable(int32_t c) {
  static constexpr int32_t kWordPunctuation[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,  0x5F4,  0x2018, 0x2019,
                                                 0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
  const auto cat = utf8proc_category(c);
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK ||
         std::find(std::begin(kWordPunctuation), std::end(kWordPunctuation), c) != std::end(kWordPunctuation);
}

void append_upper(std::string& out, int32_t c) {
  if (const FullCase* f = full_case(c))
    out += f->upper;
  else
    append_utf8(out, utf8proc_toupper(c));
}
void append_title(std::string& out, int32_t c) {
  if (const FullCase* f = full_case(c))
    out += f->title ? f->title : f->upper;
  else
    append_utf8(out, utf8proc_totitle(c));
}
// cps[k] lowercased as Python does: İ becomes i + combining dot, and Σ a final ς when it ends a word (a cased letter
// before it, none after it, case-ignorable characters skipped). The look-back stops at `begin`.
void append_lower(std::string& out, const std::vector<int32_t>& cps, size_t k, size_t begin) {
  const int32_t c = cps[k];
  if (c == 0x130) return void(out += "i\u0307");
  if (c != 0x3A3) return append_utf8(out, utf8proc_tolower(c));
  size_t j = k;
  while (j > begin && is_case_ignorable(cps[j - 1])) --j;
  bool final = j > begin && is_cased(cps[j - 1]);
  size_t n = k + 1;
  while (n < cps.size() && is_case_ignorable(cps[n])) ++n;
  final = final && (n == cps.size() || !is_cased(cps[n]));
  append_utf8(out, final ? 0x3C2 : 0x3C3);
}

}  // namespace

// Upper/Lower/Capitalize: Python's str methods. Title: str.title() (a letter after a cased letter is lowercased).
// JinjaTitle: the `title` filter, which capitalises the first character after whitespace or one of -({[<.
// Python's full mappings throughout: 'ß'.upper() is 'SS', 'ǆ'.capitalize() is 'ǅ' (titlecase).
std::string change_case(const std::string& s, Case mode) {
  std::string out;
  const std::vector<int32_t> cps = decode_utf8(s);
  bool after_cased = false, after_separator = true;
  size_t word_tail =
      0;  // JinjaTitle lowers each word's tail as a string of its own (Jinja: w[0].upper() + w[1:].lower())
  for (size_t k = 0; k < cps.size(); ++k) {
    const int32_t c = cps[k];
    switch (mode) {
      case Case::Upper: append_upper(out, c); break;
      case Case::Lower: append_lower(out, cps, k, 0); break;
      case Case::Title: after_cased ? append_lower(out, cps, k, 0) : append_title(out, c); break;
      case Case::Capitalize: k == 0 ? append_title(out, c) : append_lower(out, cps, k, 0); break;
      case Case::JinjaTitle:
        if (after_separator) word_tail = k + 1;
        after_separator ? append_upper(out, c) : append_lower(out, cps, k, word_tail);
        break;
    }
    after_cased = is_cased(c);
    after_separator = is_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
  }
  return out;
}

List split(const std::string& s, const Value& sep, const Value& maxsplit) {
  int64_t limit = need_int(maxsplit, "split", -1);
  List parts;
  if (!given(sep) || sep.kind == Kind::None) {  // runs of whitespace, ends ignored
    const std::vector<int32_t> cps = decode_utf8(s);
    size_t k = 0;
    while (k < cps.size()) {
      while (k < cps.size() && is_space(cps[k])) ++k;
      if (k == cps.size()) break;
      size_t end = k;
      if (limit == 0) end = cps.size();  // maxsplit reached: the rest is one part, trailing space included
      while (end < cps.size() && !is_space(cps[end])) ++end;
      const std::vector<int32_t> word(cps.begin() + static_cast<ptrdiff_t>(k),
                                      cps.begin() + static_cast<ptrdiff_t>(end));
      parts.push_back(string(encode_utf8(word)));
      if (limit > 0) --limit;
      k = end;
    }
    return parts;
  }
  const std::string& d = need_string(sep, "split");
  if (d.empty()) eval_fail("split: empty separator");
  size_t start = 0;
  for (size_t p; limit != 0 && (p = s.find(d, start)) != std::string::npos; start = p + d.size(), --limit)
    parts.push_back(string(s.substr(start, p - start)));
  parts.push_back(string(s.substr(start)));
  return parts;
}

std::string replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` at every code-point boundary, the first `count` of them
    for (size_t i = 0;;) {
      if (count != 0) {
        out += to;
        if (count > 0) --count;
      }
      if (i == s.size()) return out;
      size_t next = i + 1;
      while (next < s.size() && (static_cast<unsigned char>(s[next]) & 0xC0) == 0x80) ++next;
      out.append(s, i, next - i);
      i = next;
    }
  }
  size_t start = 0;
  for (size_t p; count != 0 && (p = s.find(from, start)) != std::string::npos; start = p + from.size(), --count)
    out += s.substr(start, p - start) + to;
  return out + s.substr(start);
}

std::string join(const List& items, const std::string& sep) {
  std::string out;
  for (size_t k = 0; k < items.size(); ++k) out += (k ? sep : "") + to_str(items[k]);
  return out;
}

// Python's int(text, base), base 2..36 or 0: surrounding whitespace, a sign, a 0b/0o/0x prefix matching the base
// (any of them for base 0, which refuses other leading zeros), digits with single '_' between them. nullopt where
// Python raises ValueError; beyond int64 is an error (Python's ints are unbounded).
std::optional<int64_t> parse_int(const std::string& text, int64_t base) {
  if (base != 0 && (base < 2 || base > 36)) return std::nullopt;
  const std::string t = strip(text, Value{}, true, true);
  size_t p = 0;
  const bool negative = p < t.size() && t[p] == '-';
  if (p < t.size() && (t[p] == '+' || t[p] == '-')) ++p;
  bool prefixed = false;
  for (const auto& [letter, radix] : {std::pair{'b', 2}, {'o', 8}, {'x', 16}})
    if ((base == 0 || base == radix) && p + 1 < t.size() && t[p] == '0' && std::tolower(t[p + 1]) == letter)
      base = radix, prefixed = true, p += 2;
  const bool leading_zero = base == 0 && p < t.size() && t[p] == '0';
  if (base == 0) base = 10;
  int64_t value = 0;  // negated while accumulating, so that INT64_MIN fits
  size_t digits = 0;
  for (; p < t.size(); ++p) {
    if (t[p] == '_' && (digits > 0 || prefixed) && p + 1 < t.size() && t[p + 1] != '_') continue;
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(t[p])));
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'z' ? c - 'a' + 10 : 99;
    if (d >= base) return std::nullopt;
    if (__builtin_mul_overflow(value, base, &value) || __builtin_sub_overflow(value, d, &value))
      eval_fail("integer overflow");
    ++digits;
  }
  if (digits == 0 || (leading_zero && value != 0)) return std::nullopt;
  if (!negative && value == INT64_MIN) eval_fail("integer overflow");
  return negative ? value : -value;
}

// Python's float(text): surrounding whitespace, a sign, then inf, infinity or nan (any case), or digits with an
// optional fraction and exponent ('_' only between digits). nullopt where Python raises ValueError.
std::optional<double> parse_float(const std::string& text) {
  const std::string t = strip(text, Value{}, true, true);
  std::string lower;
  for (char c : t) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const size_t sign = !t.empty() && (t[0] == '+' || t[0] == '-') ? 1 : 0;
  const std::string word = lower.substr(sign);
  if (word == "inf" || word == "infinity") return t[0] == '-' ? -HUGE_VAL : HUGE_VAL;
  if (word == "nan") return std::nan("");
  std::string clean = t.substr(0, sign);
  size_t p = sign, mantissa_digits = 0;
  const auto run = [&]() {  // digits with single '_' between them, appended to `clean` without the '_'
    size_t n = 0;
    while (p < t.size() &&
           (std::isdigit(static_cast<unsigned char>(t[p])) ||
            (t[p] == '_' && n > 0 && p + 1 < t.size() && std::isdigit(static_cast<unsigned char>(t[p + 1]))))) {
      if (t[p] != '_') clean += t[p], ++n;
      ++p;
    }
    return n;
  };
  mantissa_digits += run();
  if (p < t.size() && t[p] == '.') clean += t[p++], mantissa_digits += run();
  if (mantissa_digits == 0) return std::nullopt;
  if (p < t.size() && (t[p] == 'e' || t[p] == 'E')) {
    clean += t[p++];
    if (p < t.size() && (t[p] == '+' || t[p] == '-')) clean += t[p++];
    if (run() == 0) return std::nullopt;
  }
  if (p != t.size()) return std::nullopt;
  return std::strtod(clean.c_str(), nullptr);  // as Python: too large is inf, too small is 0
}

// str.islower() / str.isupper(): some character of that case, and none of the other case nor titlecase.
bool has_only_case(const std::string& s, Case mode) {
  bool cased = false;
  for (int32_t c : decode_utf8(s)) {
    if (is_titlecase(c) || (mode == Case::Lower ? is_uppercase(c) : is_lowercase(c))) return false;
    cased = cased || (mode == Case::Lower ? is_lowercase(c) : is_uppercase(c));
  }
  return cased;
}

}  // namespace dsmoe::text::jinja
