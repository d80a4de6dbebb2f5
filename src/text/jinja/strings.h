// Python's str semantics for the chat-template interpreter: strip/split/replace/join as the str methods do them,
// case mapping with Python's full Unicode mappings ('ß'.upper() is 'SS', the final sigma, titlecase letters), the
// islower/isupper tests, and int()/float() of a string (for the int and float filters).
// Internal to src/text (the public API is text/chat_template.h).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "text/jinja/value.h"

namespace dsmoe::text::jinja {

// str.strip/lstrip/rstrip: `chars` undefined or none strips whitespace (str.isspace()).
std::string strip(const std::string& s, const Value& chars, bool left, bool right);
// str.split(sep, maxsplit): sep undefined or none splits on runs of whitespace.
List split(const std::string& s, const Value& sep, const Value& maxsplit);
// str.replace(from, to, count); count < 0: all. An empty `from` inserts `to` at each code-point boundary, as Python.
std::string replace(const std::string& s, const std::string& from, const std::string& to, int64_t count);
// The items printed (str()) and joined by `sep`.
std::string join(const List& items, const std::string& sep);

enum class Case { Upper, Lower, Title, Capitalize, JinjaTitle };
// Upper/Lower/Title/Capitalize: the str methods; JinjaTitle: the `title` filter.
std::string change_case(const std::string& s, Case mode);
// str.islower() (mode Lower) / str.isupper() (mode Upper).
bool has_only_case(const std::string& s, Case mode);

// Python's int(text, base) and float(text); nullopt where Python raises ValueError.
std::optional<int64_t> parse_int(const std::string& text, int64_t base);
std::optional<double> parse_float(const std::string& text);

}  // namespace dsmoe::text::jinja
