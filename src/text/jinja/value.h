// The chat-template interpreter's values (Python-like: undefined, none, bool, int, float, string, list, dict) and
// what every other part of it shares: the limits against hostile templates, the two error kinds, UTF-8 helpers
// (Python strings index, slice and measure by code point), printing (str, repr, json.dumps), comparison,
// arithmetic and indexing with Python's semantics.
// Internal to src/text (the public API is text/chat_template.h).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace dsmoe::text::jinja {

// Limits that keep a hostile template from exhausting memory or the stack.
constexpr int kMaxNesting = 200;               // parser recursion (expressions and statements)
constexpr int64_t kMaxRange = 100'000;         // range() length
constexpr size_t kMaxString = 64u << 20;       // string/list repetition results, and the rendered output
constexpr int64_t kMaxIterations = 1'000'000;  // loop iterations per render (nested range() loops)

// Errors raised while evaluating an expression carry no line; the statement that runs it adds its line.
struct EvalError {
  std::string message;
};

template <typename... Args>
[[noreturn]] void eval_fail(fmt::format_string<Args...> format, Args&&... args) {
  throw EvalError{fmt::format(format, std::forward<Args>(args)...)};
}

template <typename... Args>
[[noreturn]] void parse_fail(int line, fmt::format_string<Args...> format, Args&&... args) {
  fail("chat template line {}: {}", line, fmt::format(format, std::forward<Args>(args)...));
}

inline bool one_of(std::string_view s, const std::vector<std::string_view>& set) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

// =================================================================================================================
// Values

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, like a Python dict

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Function };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // String; Function: its name; Undefined: the expression, for messages
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;  // shared: a namespace() is mutated through every copy of it
  bool is_namespace = false;
  bool is_tuple = false;  // a List written (a, b): prints as (a, b) and never equals a list, as in Python
};
using Kind = Value::Kind;

Value of_kind(Kind kind);
Value undefined(std::string what);
Value none();
Value boolean(bool b);
Value integer(int64_t i);
Value real(double f);
Value string(std::string s);
Value list(List items);
Value tuple(List items);
Value dict(Dict items);

const char* type_name(const Value& v);
[[noreturn]] void undefined_fail(const Value& v);
bool truthy(const Value& v);

// Arguments of filters, methods and functions: passed at all (undefined is "not passed"), a string, an int (a bool
// is one, as in Python; `fallback` when not passed). The wrong type is an error.
inline bool given(const Value& v) { return v.kind != Kind::Undefined; }
const std::string& need_string(const Value& v, std::string_view what);
int64_t need_int(const Value& v, std::string_view what, int64_t fallback);

// Python's bool is an int: True + 1 == 2, True == 1.
inline bool is_number(const Value& v) { return v.kind == Kind::Bool || v.kind == Kind::Int || v.kind == Kind::Float; }
inline int64_t as_int(const Value& v) { return v.kind == Kind::Bool ? v.b : v.i; }
inline double as_double(const Value& v) { return v.kind == Kind::Float ? v.f : static_cast<double>(as_int(v)); }

const Value* dict_find(const Dict& d, std::string_view key);
// Whether Python can hash it (as a dict key, or the left side of `in <dict>`): not a list or dict, nor a tuple
// holding one.
bool hashable(const Value& v);

// --- UTF-8: Python strings index, slice and measure by code point ---

std::vector<int32_t> decode_utf8(std::string_view s);  // an invalid byte becomes one U+FFFD
void append_utf8(std::string& out, int32_t cp);
std::string encode_utf8(const std::vector<int32_t>& cps);
// str.isspace() for one code point.
bool is_space(int32_t c);
inline bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// --- Printing ---

std::string float_repr(double d);
// What {{ value }} prints: Python's str().
std::string to_str(const Value& v);
std::string string_repr(const std::string& s);
// Python's repr(), used when a list or dict is printed.
std::string repr(const Value& v);
// json.dumps options, as HF's `tojson` filter passes them: indent < 0 is None; the separators default to Python's
// (", ", ": ") without indent and (",", ": ") with it.
struct JsonStyle {
  int indent = -1;
  bool sort_keys = false;
  bool ensure_ascii = false;  // non-ASCII code points as \uXXXX (surrogate pairs above U+FFFF)
  std::optional<std::string> item_separator, key_separator;
};
void json_string(std::string& out, const std::string& s, bool ensure_ascii = false);
void to_json(std::string& out, const Value& v, const JsonStyle& style, int depth = 0);
// Works for nlohmann::json (keys sorted) and nlohmann::ordered_json (keys in document order, as Python keeps them;
// this matters to templates that print tools with tojson). Instantiated for those two in value.cpp.
template <typename Json>
Value from_json(const Json& j);

// --- Comparison ---

bool equal(const Value& a, const Value& b);
// <0, 0, >0 like Python's ordering; only numbers, strings and lists are ordered.
int compare(const Value& a, const Value& b);
// `needle in haystack`.
bool contains(const Value& haystack, const Value& needle);
// The items a for loop or a filter walks: list elements, dict keys, string characters.
List iterate(const Value& v);

// --- Arithmetic (Python semantics; integer overflow is an error, not a wrong answer) ---

// + - * / // % ** on numbers; + on two strings or two lists (or tuples); * of a string or list by an int.
Value arithmetic(std::string_view op, const Value& a, const Value& b);

// --- Indexing ---

// list[i], string[i] (negative from the end), dict[key]; anything missing is undefined, as in Jinja.
Value get_item(const Value& obj, const Value& key, const std::string& what);
// obj[start:stop:step] with Python's slice index rules (clamping, negative steps).
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

}  // namespace dsmoe::text::jinja
