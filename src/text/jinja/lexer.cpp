// The chat-template scanner: segments and tokens (see lexer.h), with Jinja's newline normalisation, HF's
// whitespace control and Python's string literal escapes.
#include "text/jinja/lexer.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <exception>
#include <stdexcept>

#include "text/jinja/value.h"

namespace dsmoe::text::jinja {

std::string describe(const Token& t) {
  if (t.kind == TokKind::End) return "end of tag";
  if (t.kind == TokKind::String) return string_repr(t.text);
  return "'" + t.text + "'";
}

namespace {

class Scanner {
 public:
  // Jinja first turns every "\r\n" and "\r" of the source into "\n", then drops one trailing newline
  // (keep_trailing_newline=False).
  explicit Scanner(std::string_view source) : normalised_(normalise_newlines(source)), src_(normalised_) {
    if (!src_.empty() && src_.back() == '\n') src_.remove_suffix(1);
    for (size_t p = src_.find('\n'); p != std::string_view::npos; p = src_.find('\n', p + 1)) newlines_.push_back(p);
  }

  std::vector<Segment> scan() {
    size_t pos = 0;
    while (pos < src_.size()) {
      const size_t open = find_tag(pos);
      if (open > pos) {
        Piece text;
        text.seg.text = src_.substr(pos, open - pos);
        pieces_.push_back(std::move(text));
      }
      if (open == src_.size()) break;
      pos = tag(open);
    }
    apply_whitespace_rules();
    std::vector<Segment> segs;
    for (Piece& p : pieces_)
      if (!p.comment && !(p.seg.kind == SegKind::Text && p.seg.text.empty())) segs.push_back(std::move(p.seg));
    return segs;
  }

 private:
  struct Piece {
    Segment seg;
    bool comment = false;
    char left = 0, right = 0;  // whitespace-control signs just inside the delimiters: '-', '+' or none
    bool block() const { return comment || seg.kind == SegKind::Statement; }
  };
  std::string normalised_;
  std::string_view src_;
  std::vector<size_t> newlines_;  // positions of '\n', for line numbers
  std::vector<Piece> pieces_;

  static std::string normalise_newlines(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t k = 0; k < s.size(); ++k) {
      if (s[k] != '\r')
        out += s[k];
      else if (k + 1 < s.size() && s[k + 1] == '\n')
        continue;  // "\r\n": the '\n' comes next
      else
        out += '\n';
    }
    return out;
  }

  int line_at(size_t pos) const {
    return 1 + static_cast<int>(std::lower_bound(newlines_.begin(), newlines_.end(), pos) - newlines_.begin());
  }

  size_t find_tag(size_t from) const {
    for (size_t p = src_.find('{', from); p != std::string_view::npos; p = src_.find('{', p + 1))
      if (p + 1 < src_.size() && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#')) return p;
    return src_.size();
  }

  // Scans the tag opening at `open`; returns the position after it.
  size_t tag(size_t open) {
    Piece piece;
    piece.seg.line = line_at(open);
    const char kind = src_[open + 1];
    size_t p = open + 2;
    if (p < src_.size() && (src_[p] == '-' || (src_[p] == '+' && kind != '{'))) piece.left = src_[p++];
    if (kind == '#') {
      const size_t end = src_.find("#}", p);
      if (end == std::string_view::npos) parse_fail(piece.seg.line, "unclosed comment '{{#': missing '#}}'");
      if (end > p && (src_[end - 1] == '-' || src_[end - 1] == '+')) piece.right = src_[end - 1];
      piece.comment = true;
      piece.seg.kind = SegKind::Statement;  // for the whitespace rules a comment is a block tag
      pieces_.push_back(std::move(piece));
      return end + 2;
    }
    piece.seg.kind = kind == '{' ? SegKind::Output : SegKind::Statement;
    p = tokenize(p, piece);
    pieces_.push_back(std::move(piece));
    return p;
  }

  // Tokens up to the closing "}}" / "%}"; brackets must balance first, so "{{ {'a': {'b': 1}} }}" works as in Jinja.
  size_t tokenize(size_t p, Piece& piece) {
    const bool output = piece.seg.kind == SegKind::Output;
    const std::string_view close = output ? "}}" : "%}";
    const int line = piece.seg.line;
    std::vector<Token>& toks = piece.seg.tokens;
    int depth = 0;
    for (;;) {
      while (p < src_.size() && is_ascii_space(src_[p])) ++p;
      if (p >= src_.size()) parse_fail(line, "unclosed '{}': missing '{}'", output ? "{{" : "{%", close);
      const std::string_view rest = src_.substr(p);
      if (depth == 0 && rest.starts_with(close)) {
        toks.push_back({TokKind::End, "", 0, 0, line_at(p)});
        return p + 2;
      }
      if (depth == 0 && rest.size() > 2 && (rest[0] == '-' || (rest[0] == '+' && !output)) &&
          rest.substr(1).starts_with(close)) {
        piece.right = rest[0];
        toks.push_back({TokKind::End, "", 0, 0, line_at(p)});
        return p + 3;
      }
      Token t = next_token(p, line_at(p));
      if (t.kind == TokKind::Op) {
        if (t.text == "(" || t.text == "[" || t.text == "{") ++depth;
        if (t.text == ")" || t.text == "]" || t.text == "}") depth = std::max(0, depth - 1);
      }
      toks.push_back(std::move(t));
    }
  }

  Token next_token(size_t& p, int line) const {
    const char c = src_[p];
    Token t{TokKind::Op, "", 0, 0, line};
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      const size_t start = p;
      while (p < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) ++p;
      t.kind = TokKind::Name;
      t.text = src_.substr(start, p - start);
      return t;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return number(p, line);
    if (c == '\'' || c == '"') return string_literal(p, line);
    static constexpr std::string_view kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "(",
                                                ")",  "[",  "]",  "{",  "}",  ".",  ",", ":", "|", "=", "<", ">"};
    for (std::string_view op : kOps)
      if (src_.substr(p).starts_with(op)) {
        t.text = op;
        p += op.size();
        return t;
      }
    parse_fail(line, "unexpected character '{}' in tag", c);
  }

  // Jinja's number literals, tried in its order: a float (digits with single '_' between them, then a fraction
  // and/or an exponent; never right after a '.', so `x.1.2` is x[1][2]), else an integer (0b/0o/0x prefixed, or
  // decimal without leading zeros: "07" is 0 then 7, a syntax error). The '_' separators are dropped.
  Token number(size_t& p, int line) const {
    const auto dec = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; };
    const auto run = [&](size_t q) {  // (\d+_)*\d+ from q: its end, or q when there is no digit
      size_t end = q;
      while (end < src_.size() && dec(src_[end])) {
        while (end < src_.size() && dec(src_[end])) ++end;
        if (end + 1 < src_.size() && src_[end] == '_' && dec(src_[end + 1])) ++end;
      }
      return end;
    };
    const size_t start = p;
    size_t end = run(start);
    bool is_float = false;
    if (start == 0 || src_[start - 1] != '.') {
      size_t q = end;
      if (q + 1 < src_.size() && src_[q] == '.' && run(q + 1) > q + 1) q = run(q + 1), is_float = true;
      if (q < src_.size() && (src_[q] == 'e' || src_[q] == 'E')) {
        const size_t sign = q + 1 < src_.size() && (src_[q + 1] == '+' || src_[q + 1] == '-') ? q + 2 : q + 1;
        if (run(sign) > sign) q = run(sign), is_float = true;
      }
      if (is_float) end = q;
    }
    int base = 10;
    if (!is_float && src_[start] == '0') {
      const char x =
          start + 1 < src_.size() ? static_cast<char>(std::tolower(static_cast<unsigned char>(src_[start + 1]))) : 0;
      base = x == 'b' ? 2 : x == 'o' ? 8 : x == 'x' ? 16 : 10;
      const auto digit = [&](char c) {
        const unsigned char u = static_cast<unsigned char>(c);
        return (std::isdigit(u) ? c - '0' : std::isalpha(u) ? std::tolower(u) - 'a' + 10 : 99) < base;
      };
      size_t q = start + 2;
      while (base != 10 && q < src_.size() &&
             (digit(src_[q]) || (src_[q] == '_' && q + 1 < src_.size() && digit(src_[q + 1]))))
        q += src_[q] == '_' ? 2 : 1;
      if (base != 10 && q > start + 2) {  // 0b(_?[01])+, 0o(_?[0-7])+, 0x(_?[0-9a-f])+
        end = q;
      } else {  // 0(_?0)*
        base = 10;
        end = start + 1;
        while (end < src_.size() &&
               (src_[end] == '0' || (src_[end] == '_' && end + 1 < src_.size() && src_[end + 1] == '0')))
          end += src_[end] == '_' ? 2 : 1;
      }
    }
    p = end;
    const std::string text(src_.substr(start, end - start));
    std::string digits;
    for (char c : text.substr(base == 10 ? 0 : 2))
      if (c != '_') digits += c;
    Token t{is_float ? TokKind::Float : TokKind::Int, text, 0, 0, line};
    if (is_float) {
      t.f = std::strtod(digits.c_str(), nullptr);  // as Python: too large is inf, too small is 0
      return t;
    }
    try {
      size_t used = 0;
      t.i = std::stoll(digits, &used, base);
      if (used != digits.size()) throw std::invalid_argument(digits);
    } catch (const std::exception&) {
      parse_fail(line, "number {} out of range", text);
    }
    return t;
  }

  // A Python string literal: escapes \n \t \r \\ \' \" \xHH \uHHHH \UHHHHHHHH ...; unknown escapes keep the
  // backslash, as in Python.
  Token string_literal(size_t& p, int line) const {
    const char quote = src_[p++];
    Token t{TokKind::String, "", 0, 0, line};
    for (;;) {
      if (p >= src_.size()) parse_fail(line, "unterminated string literal");
      const char c = src_[p++];
      if (c == quote) return t;
      if (c != '\\') {
        t.text += c;
        continue;
      }
      if (p >= src_.size()) parse_fail(line, "unterminated string literal");
      const char e = src_[p++];
      switch (e) {
        case 'n': t.text += '\n'; break;
        case 't': t.text += '\t'; break;
        case 'r': t.text += '\r'; break;
        case 'b': t.text += '\b'; break;
        case 'f': t.text += '\f'; break;
        case 'v': t.text += '\v'; break;
        case 'a': t.text += '\a'; break;
        case '0': t.text += '\0'; break;
        case '\\': t.text += '\\'; break;
        case '\'': t.text += '\''; break;
        case '"': t.text += '"'; break;
        case '\n': break;  // line continuation
        case 'x': append_utf8(t.text, hex_escape(p, 2, line)); break;
        case 'u': append_utf8(t.text, hex_escape(p, 4, line)); break;
        case 'U': append_utf8(t.text, hex_escape(p, 8, line)); break;
        default: t.text += '\\', t.text += e;
      }
    }
  }

  int32_t hex_escape(size_t& p, int digits, int line) const {
    if (p + static_cast<size_t>(digits) > src_.size()) parse_fail(line, "truncated \\x/\\u escape in string literal");
    const std::string hex(src_.substr(p, static_cast<size_t>(digits)));
    if (!std::all_of(hex.begin(), hex.end(), [](char h) { return std::isxdigit(static_cast<unsigned char>(h)); }))
      parse_fail(line, "bad escape '{}' in string literal", hex);
    p += static_cast<size_t>(digits);
    const long cp = std::stol(hex, nullptr, 16);
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) parse_fail(line, "escape \\{} is not a valid code point", hex);
    return static_cast<int32_t>(cp);
  }

  // Whitespace control, as HF configures Jinja:
  //   '-' inside a delimiter strips all whitespace on that side ({%- x -%}, {{- x -}}, {#- x -#});
  //   trim_blocks: a block or comment tag eats the one newline right after it (unless it ends with '+%}');
  //   lstrip_blocks: spaces and tabs from the start of a line up to a block or comment tag are removed (unless it
  //   opens with '{%+').
  void apply_whitespace_rules() {
    for (size_t k = 0; k < pieces_.size(); ++k) {
      if (pieces_[k].seg.kind != SegKind::Text) continue;
      std::string& text = pieces_[k].seg.text;
      const Piece* prev = k > 0 ? &pieces_[k - 1] : nullptr;
      const Piece* next = k + 1 < pieces_.size() ? &pieces_[k + 1] : nullptr;
      bool line_start = prev == nullptr;  // does `text` begin at the start of a line?
      if (prev && prev->right == '-') {
        size_t n = 0;
        while (n < text.size() && is_ascii_space(text[n])) ++n;
        line_start = n > 0 && text[n - 1] == '\n';
        text.erase(0, n);
      } else if (prev && prev->block() && prev->right != '+' && !text.empty() && text[0] == '\n') {
        text.erase(0, 1);
        line_start = true;
      }
      if (next && next->left == '-') {
        while (!text.empty() && is_ascii_space(text.back())) text.pop_back();
      } else if (next && next->block() && next->left != '+') {
        const size_t nl = text.rfind('\n');
        const size_t line_begin = nl == std::string::npos ? 0 : nl + 1;
        const bool blank = std::all_of(text.begin() + static_cast<ptrdiff_t>(line_begin), text.end(),
                                       [](char c) { return c == ' ' || c == '\t'; });
        if ((nl != std::string::npos || line_start) && blank) text.erase(line_begin);
      }
    }
  }
};

}  // namespace

std::vector<Segment> scan(std::string_view source) { return Scanner(source).scan(); }

}  // namespace dsmoe::text::jinja
