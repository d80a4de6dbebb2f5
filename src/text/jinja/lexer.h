// The chat-template scanner: template text -> a list of segments (text pieces, {{ output }} tags and {% statement %}
// tags, comments dropped) with HF's whitespace rules applied (trim_blocks, lstrip_blocks, '-'/'+' controls), and
// the text of each tag -> tokens (names, string and number literals, operators).
// Internal to src/text (the public API is text/chat_template.h).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsmoe::text::jinja {

enum class TokKind { Name, String, Int, Float, Op, End };

struct Token {
  TokKind kind;
  std::string text;  // name, operator, or decoded string literal
  int64_t i = 0;
  double f = 0;
  int line = 0;
};

enum class SegKind { Text, Output, Statement };

struct Segment {
  SegKind kind = SegKind::Text;
  std::string text;           // Text
  std::vector<Token> tokens;  // Output / Statement, ending with an End token
  int line = 0;
};

// How a token reads in an error message.
std::string describe(const Token& t);

// Splits a template into segments; a scanning error (unclosed tag, bad literal) is a dsmoe::Error naming the line.
std::vector<Segment> scan(std::string_view source);

}  // namespace dsmoe::text::jinja
