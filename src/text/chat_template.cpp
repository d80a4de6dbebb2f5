// A small Jinja interpreter for Hugging Face chat templates. Layout of this file:
//   1. values (Python-like: undefined, none, bool, int, float, string, list, dict) and their operations
//   2. scanning: template text -> text pieces and tags, with HF's whitespace rules; tag text -> tokens
//   3. the syntax tree and its evaluation (expressions, filters, tests, functions, methods, statements)
//   4. the parser
//   5. the public API
// Semantics follow Jinja 3 as configured by transformers (trim_blocks, lstrip_blocks, keep_trailing_newline off,
// the default Undefined: printing it gives "", using it in arithmetic or taking its attributes is an error).
#include "text/chat_template.h"

#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <initializer_list>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"

namespace dsmoe::text {
namespace {

// The `chat_template` of deepseek-ai's DeepSeek LLM / DeepSeekMoE chat tokenizer_config.json, verbatim. Its
// string literals '\n\n' hold real newlines (the JSON has "\n"), hence the line breaks inside the raw string.
const char* const kDeepSeekTemplate = R"JINJA({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '

' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}{{ message['content'] + '

' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %})JINJA";

// Limits that keep a hostile template from exhausting memory or the stack.
constexpr int kMaxNesting = 200;                 // parser recursion (expressions and statements)
constexpr int64_t kMaxRange = 100'000;           // range() length
constexpr size_t kMaxString = 64u << 20;         // string/list repetition results, and the rendered output
constexpr int64_t kMaxIterations = 1'000'000;    // loop iterations per render (nested range() loops)

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

bool one_of(std::string_view s, const std::vector<std::string_view>& set) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

// =================================================================================================================
// 1. Values

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, like a Python dict

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Function };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                // String; Function: its name; Undefined: the expression, for messages
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;   // shared: a namespace() is mutated through every copy of it
  bool is_namespace = false;
  bool is_tuple = false;        // a List written (a, b): prints as (a, b) and never equals a list, as in Python
};
using Kind = Value::Kind;

Value of_kind(Kind kind) {
  Value v;
  v.kind = kind;
  return v;
}
Value undefined(std::string what) {
  Value v;
  v.s = std::move(what);
  return v;
}
Value none() { return of_kind(Kind::None); }
Value boolean(bool b) {
  Value v = of_kind(Kind::Bool);
  v.b = b;
  return v;
}
Value integer(int64_t i) {
  Value v = of_kind(Kind::Int);
  v.i = i;
  return v;
}
Value real(double f) {
  Value v = of_kind(Kind::Float);
  v.f = f;
  return v;
}
Value string(std::string s) {
  Value v = of_kind(Kind::String);
  v.s = std::move(s);
  return v;
}
Value list(List items) {
  Value v = of_kind(Kind::List);
  v.list = std::make_shared<List>(std::move(items));
  return v;
}
Value tuple(List items) {
  Value v = list(std::move(items));
  v.is_tuple = true;
  return v;
}
Value dict(Dict items) {
  Value v = of_kind(Kind::Dict);
  v.dict = std::make_shared<Dict>(std::move(items));
  return v;
}

const char* type_name(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return "undefined";
    case Kind::None: return "none";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "string";
    case Kind::List: return "list";
    case Kind::Dict: return v.is_namespace ? "namespace" : "dict";
    case Kind::Function: return "function";
  }
  return "?";
}

[[noreturn]] void undefined_fail(const Value& v) { eval_fail("'{}' is undefined", v.s.empty() ? "value" : v.s); }

bool truthy(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return v.b;
    case Kind::Int: return v.i != 0;
    case Kind::Float: return v.f != 0;
    case Kind::String: return !v.s.empty();
    case Kind::List: return !v.list->empty();
    case Kind::Dict: return !v.dict->empty();
    case Kind::Function: return true;
  }
  return false;
}

// Python's bool is an int: True + 1 == 2, True == 1.
bool is_number(const Value& v) { return v.kind == Kind::Bool || v.kind == Kind::Int || v.kind == Kind::Float; }
int64_t as_int(const Value& v) { return v.kind == Kind::Bool ? v.b : v.i; }
double as_double(const Value& v) { return v.kind == Kind::Float ? v.f : static_cast<double>(as_int(v)); }

const Value* dict_find(const Dict& d, std::string_view key) {
  for (const auto& [k, v] : d)
    if (k == key) return &v;
  return nullptr;
}

// --- UTF-8: Python strings index, slice and measure by code point ---

std::vector<int32_t> decode_utf8(std::string_view s) {
  std::vector<int32_t> cps;
  cps.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) {  // invalid byte: keep going, one replacement character per bad byte
      cp = 0xFFFD;
      n = 1;
    }
    cps.push_back(cp);
    p += n;
    left -= n;
  }
  return cps;
}

void append_utf8(std::string& out, int32_t cp) {
  utf8proc_uint8_t buf[4];
  const utf8proc_ssize_t n = utf8proc_encode_char(cp, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

std::string encode_utf8(const std::vector<int32_t>& cps) {
  std::string out;
  for (int32_t cp : cps) append_utf8(out, cp);
  return out;
}

// str.isspace() for one code point.
bool is_space(int32_t c) {
  return (c >= 9 && c <= 13) || (c >= 28 && c <= 32) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// --- Printing ---

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", d);  // shortest round-trip digits, as Python's repr
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string repr(const Value& v);

// What {{ value }} prints: Python's str().
std::string to_str(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return v.b ? "True" : "False";
    case Kind::Int: return std::to_string(v.i);
    case Kind::Float: return float_repr(v.f);
    case Kind::String: return v.s;
    case Kind::List:
    case Kind::Dict: return repr(v);
    case Kind::Function: return "<built-in function " + v.s + ">";
  }
  return "";
}

std::string string_repr(const std::string& s) {
  const char quote = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    if (c == quote || c == '\\') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) out += fmt::format("\\x{:02x}", c);
    else out += c;
  }
  return out + quote;
}

// Python's repr(), used when a list or dict is printed.
std::string repr(const Value& v) {
  if (v.kind == Kind::Undefined) return "Undefined";  // Jinja's Undefined inside a printed list
  if (v.kind == Kind::String) return string_repr(v.s);
  if (v.kind == Kind::List) {
    std::string out = v.is_tuple ? "(" : "[";
    for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + repr((*v.list)[k]);
    if (v.is_tuple) return out + (v.list->size() == 1 ? ",)" : ")");
    return out + "]";
  }
  if (v.kind == Kind::Dict) {
    std::string out = v.is_namespace ? "<Namespace {" : "{";
    for (size_t k = 0; k < v.dict->size(); ++k)
      out += (k ? ", " : "") + string_repr((*v.dict)[k].first) + ": " + repr((*v.dict)[k].second);
    return out + (v.is_namespace ? "}>" : "}");
  }
  return to_str(v);
}

// json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=sort_keys): what HF's `tojson` filter does.
void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += c;
    }
  }
  out += '"';
}

void to_json(std::string& out, const Value& v, int indent, bool sort_keys, int depth) {
  const auto newline = [&](int d) {
    if (indent >= 0) out += '\n' + std::string(static_cast<size_t>(indent * d), ' ');
  };
  const char* comma = indent >= 0 ? "," : ", ";
  switch (v.kind) {
    case Kind::Undefined: undefined_fail(v);
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += v.b ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(v.i); return;
    case Kind::Float:
      out += std::isfinite(v.f) ? float_repr(v.f) : std::isnan(v.f) ? "NaN" : v.f > 0 ? "Infinity" : "-Infinity";
      return;
    case Kind::String: json_string(out, v.s); return;
    case Kind::Function: eval_fail("cannot convert a function to JSON");
    case Kind::List:
      if (v.list->empty()) return void(out += "[]");
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += comma;
        newline(depth + 1);
        to_json(out, (*v.list)[k], indent, sort_keys, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    case Kind::Dict: {
      if (v.dict->empty()) return void(out += "{}");
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : *v.dict) items.push_back(&kv);
      if (sort_keys) std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += comma;
        newline(depth + 1);
        json_string(out, items[k]->first);
        out += ": ";
        to_json(out, items[k]->second, indent, sort_keys, depth + 1);
      }
      newline(depth);
      out += '}';
      return;
    }
  }
}

// Works for nlohmann::json (keys sorted) and nlohmann::ordered_json (keys in document order, as Python keeps them;
// this matters to templates that print tools with tojson).
template <typename Json>
Value from_json(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return none();
    case Json::value_t::boolean: return boolean(j.template get<bool>());
    case Json::value_t::number_integer: return integer(j.template get<int64_t>());
    case Json::value_t::number_unsigned: {
      const uint64_t u = j.template get<uint64_t>();
      return u <= static_cast<uint64_t>(INT64_MAX) ? integer(static_cast<int64_t>(u)) : real(static_cast<double>(u));
    }
    case Json::value_t::number_float: return real(j.template get<double>());
    case Json::value_t::string: return string(j.template get<std::string>());
    case Json::value_t::array: {
      List items;
      for (const auto& e : j) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case Json::value_t::object: {
      Dict items;
      for (auto it = j.begin(); it != j.end(); ++it) items.emplace_back(it.key(), from_json(it.value()));
      return dict(std::move(items));
    }
    default: fail("chat template variables: unsupported JSON value of type {}", j.type_name());
  }
}

// --- Comparison ---

bool equal(const Value& a, const Value& b) {
  if (is_number(a) && is_number(b)) {
    if (a.kind == Kind::Float || b.kind == Kind::Float) return as_double(a) == as_double(b);
    return as_int(a) == as_int(b);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::Undefined:
    case Kind::None: return true;
    case Kind::String:
    case Kind::Function: return a.s == b.s;
    case Kind::List:
      return a.is_tuple == b.is_tuple && a.list->size() == b.list->size() &&
             std::equal(a.list->begin(), a.list->end(), b.list->begin(), [](auto& x, auto& y) { return equal(x, y); });
    case Kind::Dict: {
      if (a.dict == b.dict) return true;
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, v] : *a.dict) {
        const Value* other = dict_find(*b.dict, k);
        if (other == nullptr || !equal(v, *other)) return false;
      }
      return true;
    }
    default: return false;
  }
}

// <0, 0, >0 like Python's ordering; only numbers, strings and lists are ordered.
int compare(const Value& a, const Value& b) {
  if (a.kind == Kind::Undefined) undefined_fail(a);
  if (b.kind == Kind::Undefined) undefined_fail(b);
  if (is_number(a) && is_number(b)) {
    const double x = as_double(a), y = as_double(b);
    if (a.kind != Kind::Float && b.kind != Kind::Float) return as_int(a) < as_int(b) ? -1 : as_int(a) > as_int(b);
    return x < y ? -1 : x > y;
  }
  if (a.kind == Kind::String && b.kind == Kind::String) return a.s.compare(b.s);  // UTF-8 order = code point order
  if (a.kind == Kind::List && b.kind == Kind::List) {
    for (size_t k = 0; k < a.list->size() && k < b.list->size(); ++k)
      if (int c = compare((*a.list)[k], (*b.list)[k]); c != 0) return c;
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size();
  }
  eval_fail("cannot compare {} with {}", type_name(a), type_name(b));
}

// `needle in haystack`.
bool contains(const Value& haystack, const Value& needle) {
  switch (haystack.kind) {
    case Kind::Undefined: return false;  // Jinja's Undefined iterates as empty
    case Kind::String:
      if (needle.kind != Kind::String) eval_fail("'in <string>' needs a string on the left, got {}", type_name(needle));
      return haystack.s.find(needle.s) != std::string::npos;
    case Kind::List:
      return std::any_of(haystack.list->begin(), haystack.list->end(), [&](auto& x) { return equal(x, needle); });
    case Kind::Dict: return needle.kind == Kind::String && dict_find(*haystack.dict, needle.s) != nullptr;
    default: eval_fail("cannot use 'in' on {}", type_name(haystack));
  }
}

// The items a for loop or a filter walks: list elements, dict keys, string characters.
List iterate(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return {};
    case Kind::List: return *v.list;
    case Kind::Dict: {
      List keys;
      for (const auto& kv : *v.dict) keys.push_back(string(kv.first));
      return keys;
    }
    case Kind::String: {
      List chars;
      for (int32_t cp : decode_utf8(v.s)) chars.push_back(string(encode_utf8({cp})));
      return chars;
    }
    default: eval_fail("cannot iterate over {}", type_name(v));
  }
}

// --- Arithmetic (Python semantics; integer overflow is an error, not a wrong answer) ---

// a+b, a-b, a*b on int64, failing on overflow.
template <typename Op>
int64_t checked(Op op, int64_t a, int64_t b) {
  int64_t r = 0;
  if (op(a, b, &r)) eval_fail("integer overflow");
  return r;
}
constexpr auto kAdd = [](int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); };
constexpr auto kSub = [](int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); };
constexpr auto kMul = [](int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); };

Value repeat(const Value& seq, int64_t times) {
  const size_t n = static_cast<size_t>(std::max<int64_t>(times, 0));
  if (seq.kind == Kind::String) {
    if (n > 0 && seq.s.size() > kMaxString / n) eval_fail("string repetition too large");
    std::string out;
    for (size_t k = 0; k < n; ++k) out += seq.s;
    return string(std::move(out));
  }
  if (n > 0 && seq.list->size() > kMaxString / sizeof(Value) / n) eval_fail("list repetition too large");
  List out;
  for (size_t k = 0; k < n; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return seq.is_tuple ? tuple(std::move(out)) : list(std::move(out));
}

Value arithmetic(std::string_view op, const Value& a, const Value& b) {
  if (a.kind == Kind::Undefined) undefined_fail(a);
  if (b.kind == Kind::Undefined) undefined_fail(b);
  if (op == "+" && a.kind == Kind::String && b.kind == Kind::String) return string(a.s + b.s);
  if (op == "+" && a.kind == Kind::List && b.kind == Kind::List) {
    if (a.is_tuple != b.is_tuple) eval_fail("cannot concatenate a list and a tuple");
    List out = *a.list;
    out.insert(out.end(), b.list->begin(), b.list->end());
    return a.is_tuple ? tuple(std::move(out)) : list(std::move(out));
  }
  if (op == "*" && (a.kind == Kind::String || a.kind == Kind::List) && (b.kind == Kind::Int || b.kind == Kind::Bool))
    return repeat(a, as_int(b));
  if (op == "*" && (b.kind == Kind::String || b.kind == Kind::List) && (a.kind == Kind::Int || a.kind == Kind::Bool))
    return repeat(b, as_int(a));
  if (!is_number(a) || !is_number(b))
    eval_fail("unsupported operand types for {}: {} and {}", op, type_name(a), type_name(b));

  const bool floats = a.kind == Kind::Float || b.kind == Kind::Float;
  if (op == "/") {
    if (as_double(b) == 0) eval_fail("division by zero");
    return real(as_double(a) / as_double(b));
  }
  if (floats) {
    const double x = as_double(a), y = as_double(b);
    if (op == "+") return real(x + y);
    if (op == "-") return real(x - y);
    if (op == "*") return real(x * y);
    if (op == "**") {
      if (x == 0 && y < 0) eval_fail("0.0 cannot be raised to a negative power");
      return real(std::pow(x, y));
    }
    if (y == 0) eval_fail("division by zero");
    if (op == "//") return real(std::floor(x / y));
    return real(x - y * std::floor(x / y));  // %: the sign follows the divisor, as in Python
  }
  const int64_t x = as_int(a), y = as_int(b);
  if (op == "+") return integer(checked(kAdd, x, y));
  if (op == "-") return integer(checked(kSub, x, y));
  if (op == "*") return integer(checked(kMul, x, y));
  if (op == "**") {
    if (y < 0 && x == 0) eval_fail("0 cannot be raised to a negative power");
    if (y < 0) return real(std::pow(static_cast<double>(x), static_cast<double>(y)));
    int64_t result = 1, base = x;  // square-and-multiply; base is squared only while a higher bit needs it
    for (int64_t e = y; e > 0;) {
      if (e & 1) result = checked(kMul, result, base);
      e >>= 1;
      if (e > 0) base = checked(kMul, base, base);
    }
    return integer(result);
  }
  if (y == 0) eval_fail("division by zero");
  if (x == INT64_MIN && y == -1) eval_fail("integer overflow");
  int64_t q = x / y, m = x % y;
  if (m != 0 && ((m < 0) != (y < 0))) q -= 1, m += y;  // floor division, as in Python
  return integer(op == "//" ? q : m);
}

// --- Indexing ---

// list[i], string[i] (negative from the end), dict[key]; anything missing is undefined, as in Jinja.
Value get_item(const Value& obj, const Value& key, const std::string& what) {
  if (obj.kind == Kind::Undefined) undefined_fail(obj);
  if (obj.kind == Kind::Dict) {
    if (key.kind != Kind::String) return undefined(what);
    const Value* v = dict_find(*obj.dict, key.s);
    return v ? *v : undefined(what);
  }
  if ((obj.kind == Kind::List || obj.kind == Kind::String) && (key.kind == Kind::Int || key.kind == Kind::Bool)) {
    if (obj.kind == Kind::List) {
      const int64_t n = static_cast<int64_t>(obj.list->size());
      int64_t k = as_int(key);
      if (k < 0) k += n;
      return k >= 0 && k < n ? (*obj.list)[static_cast<size_t>(k)] : undefined(what);
    }
    const std::vector<int32_t> cps = decode_utf8(obj.s);
    const int64_t n = static_cast<int64_t>(cps.size());
    int64_t k = as_int(key);
    if (k < 0) k += n;
    return k >= 0 && k < n ? string(encode_utf8({cps[static_cast<size_t>(k)]})) : undefined(what);
  }
  return undefined(what);
}

// Python's slice index rules (clamping, negative steps).
std::vector<int64_t> slice_indices(int64_t n, const Value& start, const Value& stop, const Value& step) {
  const auto given = [](const Value& v) { return v.kind != Kind::Undefined && v.kind != Kind::None; };
  for (const Value* v : {&start, &stop, &step})
    if (given(*v) && v->kind != Kind::Int && v->kind != Kind::Bool) eval_fail("slice indices must be integers");
  const int64_t st = given(step) ? as_int(step) : 1;
  if (st == 0) eval_fail("slice step cannot be zero");
  const auto clamp = [&](const Value& v, int64_t dflt) {
    if (!given(v)) return dflt;
    int64_t k = as_int(v);
    if (k < 0) k += n;
    if (st > 0) return std::clamp<int64_t>(k, 0, n);
    return std::clamp<int64_t>(k, -1, n - 1);
  };
  const int64_t lo = clamp(start, st > 0 ? 0 : n - 1), hi = clamp(stop, st > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t k = lo; st > 0 ? k < hi : k > hi; k += st) idx.push_back(k);
  return idx;
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.kind == Kind::Undefined) undefined_fail(obj);
  if (obj.kind == Kind::List) {
    List out;
    for (int64_t k : slice_indices(static_cast<int64_t>(obj.list->size()), start, stop, step))
      out.push_back((*obj.list)[static_cast<size_t>(k)]);
    return obj.is_tuple ? tuple(std::move(out)) : list(std::move(out));
  }
  if (obj.kind == Kind::String) {
    const std::vector<int32_t> cps = decode_utf8(obj.s);
    std::vector<int32_t> out;
    for (int64_t k : slice_indices(static_cast<int64_t>(cps.size()), start, stop, step))
      out.push_back(cps[static_cast<size_t>(k)]);
    return string(encode_utf8(out));
  }
  eval_fail("cannot slice {}", type_name(obj));
}

// =================================================================================================================
// 2. Scanning

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
  std::string text;            // Text
  std::vector<Token> tokens;   // Output / Statement, ending with an End token
  int line = 0;
};

std::string describe(const Token& t) {
  if (t.kind == TokKind::End) return "end of tag";
  if (t.kind == TokKind::String) return string_repr(t.text);
  return "'" + t.text + "'";
}

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
      if (s[k] != '\r') out += s[k];
      else if (k + 1 < s.size() && s[k + 1] == '\n') continue;  // "\r\n": the '\n' comes next
      else out += '\n';
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
    static constexpr std::string_view kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~",
                                                "(",  ")",  "[",  "]",  "{",  "}",  ".", ",", ":", "|", "=", "<", ">"};
    for (std::string_view op : kOps)
      if (src_.substr(p).starts_with(op)) {
        t.text = op;
        p += op.size();
        return t;
      }
    parse_fail(line, "unexpected character '{}' in tag", c);
  }

  Token number(size_t& p, int line) const {
    const size_t start = p;
    while (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) ++p;
    const bool is_float = p + 1 < src_.size() && src_[p] == '.' && std::isdigit(static_cast<unsigned char>(src_[p + 1]));
    if (is_float) {
      ++p;
      while (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) ++p;
    }
    const std::string text(src_.substr(start, p - start));
    Token t{is_float ? TokKind::Float : TokKind::Int, text, 0, 0, line};
    try {
      if (is_float) t.f = std::stod(text);
      else t.i = std::stoll(text);
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

// =================================================================================================================
// 3. The syntax tree and its evaluation

struct Context {
  // [0] holds the template's variables; each for-loop iteration adds a scope, so a `set` inside a loop does not
  // leak out of it (Jinja's rule; templates use namespace() to carry values out).
  std::vector<std::unordered_map<std::string, Value>> scopes;
  int64_t iterations = 0;  // for-loop iterations so far, against kMaxIterations

  Value lookup(const std::string& name) const {
    for (auto s = scopes.rbegin(); s != scopes.rend(); ++s)
      if (auto it = s->find(name); it != s->end()) return it->second;
    return undefined(name);
  }
  void assign(const std::string& name, Value v) { scopes.back()[name] = std::move(v); }
};

struct Expr {
  int line = 0;
  virtual ~Expr() = default;
  virtual Value eval(Context& ctx) const = 0;
  // How the expression reads, for "'x' is undefined" messages.
  virtual std::string describe() const { return "expression"; }
};
using ExprPtr = std::unique_ptr<Expr>;

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

struct ArgExprs {
  std::vector<ExprPtr> pos;
  std::vector<std::pair<std::string, ExprPtr>> kw;

  CallArgs eval(Context& ctx) const {
    CallArgs a;
    for (const auto& e : pos) a.pos.push_back(e->eval(ctx));
    for (const auto& [k, e] : kw) a.kw.emplace_back(k, e->eval(ctx));
    return a;
  }
};

// Binds arguments to named parameters, Python style (positionals first, then keywords). A parameter not passed
// is returned as undefined.
std::vector<Value> bind(const CallArgs& a, std::string_view what, std::initializer_list<std::string_view> params,
                        size_t required = 0) {
  if (a.pos.size() > params.size())
    eval_fail("{} takes at most {} argument(s), got {}", what, params.size(), a.pos.size());
  std::vector<Value> out(params.size());
  for (size_t k = 0; k < a.pos.size(); ++k) out[k] = a.pos[k];
  for (const auto& [name, v] : a.kw) {
    const auto it = std::find(params.begin(), params.end(), name);
    if (it == params.end()) eval_fail("{} got an unexpected keyword argument '{}'", what, name);
    out[static_cast<size_t>(it - params.begin())] = v;
  }
  for (size_t k = 0; k < required; ++k)
    if (out[k].kind == Kind::Undefined && k >= a.pos.size())
      eval_fail("{} is missing argument '{}'", what, *(params.begin() + static_cast<ptrdiff_t>(k)));
  return out;
}

bool given(const Value& v) { return v.kind != Kind::Undefined; }

const std::string& need_string(const Value& v, std::string_view what) {
  if (v.kind == Kind::Undefined) undefined_fail(v);
  if (v.kind != Kind::String) eval_fail("{} expects a string, got {}", what, type_name(v));
  return v.s;
}

// --- String helpers (Python str methods) ---

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
  return encode_utf8(std::vector<int32_t>(cps.begin() + static_cast<ptrdiff_t>(lo), cps.begin() + static_cast<ptrdiff_t>(hi)));
}

enum class Case { Upper, Lower, Title, Capitalize, JinjaTitle };

// Upper/Lower/Capitalize: Python's str methods. Title: str.title() (a letter after a cased letter is lowercased).
// JinjaTitle: the `title` filter, which capitalises the first character after whitespace or one of -({[<.
std::string change_case(const std::string& s, Case mode) {
  std::string out;
  bool after_cased = false, after_separator = true, first = true;
  for (int32_t c : decode_utf8(s)) {
    bool up = mode == Case::Upper;
    if (mode == Case::Title) up = !after_cased;
    if (mode == Case::Capitalize) up = first;
    if (mode == Case::JinjaTitle) up = after_separator;
    append_utf8(out, up ? utf8proc_toupper(c) : utf8proc_tolower(c));
    after_cased = utf8proc_toupper(c) != c || utf8proc_tolower(c) != c;
    after_separator = is_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    first = false;
  }
  return out;
}

List split(const std::string& s, const Value& sep, const Value& maxsplit) {
  int64_t limit = given(maxsplit) ? as_int(maxsplit) : -1;
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
  if (from.empty()) eval_fail("replace: empty search string is not supported");
  std::string out;
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

int64_t length(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return 0;
    case Kind::String: return static_cast<int64_t>(decode_utf8(v.s).size());
    case Kind::List: return static_cast<int64_t>(v.list->size());
    case Kind::Dict: return static_cast<int64_t>(v.dict->size());
    default: eval_fail("{} has no length", type_name(v));
  }
}

// --- Tests: `x is name(args)` ---

// str.islower() / str.isupper(): some cased character, and none of the other case.
bool has_only_case(const std::string& s, Case mode) {
  bool cased = false;
  for (int32_t c : decode_utf8(s)) {
    const bool is_lower = utf8proc_toupper(c) != c, is_upper = utf8proc_tolower(c) != c;
    if ((mode == Case::Lower && is_upper) || (mode == Case::Upper && is_lower)) return false;
    cased = cased || is_lower || is_upper;
  }
  return cased;
}

using TestFn = bool (*)(const Value&, const std::vector<Value>&);

const Value& arg0(const std::vector<Value>& args, std::string_view test) {
  if (args.size() != 1) eval_fail("test '{}' takes one argument, got {}", test, args.size());
  return args[0];
}

const std::unordered_map<std::string, TestFn>& tests() {
  using V = const Value&;
  using A = const std::vector<Value>&;
  static const std::unordered_map<std::string, TestFn> t = {
      {"defined", [](V v, A) { return v.kind != Kind::Undefined; }},
      {"undefined", [](V v, A) { return v.kind == Kind::Undefined; }},
      {"none", [](V v, A) { return v.kind == Kind::None; }},
      {"boolean", [](V v, A) { return v.kind == Kind::Bool; }},
      {"true", [](V v, A) { return v.kind == Kind::Bool && v.b; }},
      {"false", [](V v, A) { return v.kind == Kind::Bool && !v.b; }},
      {"integer", [](V v, A) { return v.kind == Kind::Int; }},
      {"float", [](V v, A) { return v.kind == Kind::Float; }},
      {"number", [](V v, A) { return is_number(v); }},
      {"string", [](V v, A) { return v.kind == Kind::String; }},
      {"mapping", [](V v, A) { return v.kind == Kind::Dict; }},
      {"iterable", [](V v, A) { return v.kind == Kind::List || v.kind == Kind::Dict || v.kind == Kind::String; }},
      {"sequence", [](V v, A) { return v.kind == Kind::List || v.kind == Kind::Dict || v.kind == Kind::String; }},
      {"odd", [](V v, A) { return equal(arithmetic("%", v, integer(2)), integer(1)); }},
      {"even", [](V v, A) { return equal(arithmetic("%", v, integer(2)), integer(0)); }},
      {"divisibleby", [](V v, A a) { return equal(arithmetic("%", v, arg0(a, "divisibleby")), integer(0)); }},
      {"eq", [](V v, A a) { return equal(v, arg0(a, "eq")); }},
      {"equalto", [](V v, A a) { return equal(v, arg0(a, "equalto")); }},
      {"==", [](V v, A a) { return equal(v, arg0(a, "==")); }},
      {"ne", [](V v, A a) { return !equal(v, arg0(a, "ne")); }},
      {"!=", [](V v, A a) { return !equal(v, arg0(a, "!=")); }},
      {"lt", [](V v, A a) { return compare(v, arg0(a, "lt")) < 0; }},
      {"lessthan", [](V v, A a) { return compare(v, arg0(a, "lessthan")) < 0; }},
      {"<", [](V v, A a) { return compare(v, arg0(a, "<")) < 0; }},
      {"le", [](V v, A a) { return compare(v, arg0(a, "le")) <= 0; }},
      {"<=", [](V v, A a) { return compare(v, arg0(a, "<=")) <= 0; }},
      {"gt", [](V v, A a) { return compare(v, arg0(a, "gt")) > 0; }},
      {"greaterthan", [](V v, A a) { return compare(v, arg0(a, "greaterthan")) > 0; }},
      {">", [](V v, A a) { return compare(v, arg0(a, ">")) > 0; }},
      {"ge", [](V v, A a) { return compare(v, arg0(a, "ge")) >= 0; }},
      {">=", [](V v, A a) { return compare(v, arg0(a, ">=")) >= 0; }},
      {"in", [](V v, A a) { return contains(arg0(a, "in"), v); }},
      {"lower", [](V v, A) { return has_only_case(to_str(v), Case::Lower); }},
      {"upper", [](V v, A) { return has_only_case(to_str(v), Case::Upper); }},
  };
  return t;
}

bool run_test(const std::string& name, const Value& v, const std::vector<Value>& args) {
  const auto it = tests().find(name);
  if (it == tests().end()) eval_fail("unknown test '{}'", name);
  return it->second(v, args);
}

// --- Filters: `x | name(args)` ---

using FilterFn = Value (*)(const Value&, const CallArgs&);
Value apply_filter(const std::string& name, const Value& v, const CallArgs& args);

// select/reject/selectattr/rejectattr: keep the items whose test (the first argument, after the attribute for the
// *attr forms) matches `keep`.
Value select_items(const Value& seq, const CallArgs& a, bool by_attr, bool keep) {
  if (!a.kw.empty()) eval_fail("select/reject filters take no keyword arguments");
  size_t k = 0;
  std::string attr;
  if (by_attr) {
    if (a.pos.empty()) eval_fail("selectattr/rejectattr need an attribute name");
    attr = need_string(a.pos[k++], "selectattr");
  }
  std::string test = "truthy";
  if (k < a.pos.size()) test = need_string(a.pos[k++], "select test name");
  const std::vector<Value> test_args(a.pos.begin() + static_cast<ptrdiff_t>(k), a.pos.end());
  List out;
  for (const Value& item : iterate(seq)) {
    const Value subject = by_attr ? get_item(item, string(attr), attr) : item;
    const bool match = test == "truthy" ? truthy(subject) : run_test(test, subject, test_args);
    if (match == keep) out.push_back(item);
  }
  return list(std::move(out));
}

const std::unordered_map<std::string, FilterFn>& filters() {
  using V = const Value&;
  using A = const CallArgs&;
  static const std::unordered_map<std::string, FilterFn> f = {
      {"trim",
       [](V v, A a) {
         const auto p = bind(a, "trim", {"chars"});
         return string(strip(to_str(v), p[0], true, true));
       }},
      {"length", [](V v, A a) { return bind(a, "length", {}), integer(length(v)); }},
      {"count", [](V v, A a) { return bind(a, "count", {}), integer(length(v)); }},
      {"upper", [](V v, A a) { return bind(a, "upper", {}), string(change_case(to_str(v), Case::Upper)); }},
      {"lower", [](V v, A a) { return bind(a, "lower", {}), string(change_case(to_str(v), Case::Lower)); }},
      {"title", [](V v, A a) { return bind(a, "title", {}), string(change_case(to_str(v), Case::JinjaTitle)); }},
      {"capitalize",
       [](V v, A a) { return bind(a, "capitalize", {}), string(change_case(to_str(v), Case::Capitalize)); }},
      {"string", [](V v, A a) { return bind(a, "string", {}), string(to_str(v)); }},
      {"safe", [](V v, A a) { return bind(a, "safe", {}), v; }},
      {"default",
       [](V v, A a) {
         const auto p = bind(a, "default", {"default_value", "boolean"});
         const bool use_default = v.kind == Kind::Undefined || (truthy(p[1]) && !truthy(v));
         return use_default ? (given(p[0]) ? p[0] : string("")) : v;
       }},
      {"int",
       [](V v, A a) {
         const auto p = bind(a, "int", {"default"});
         const Value dflt = given(p[0]) ? p[0] : integer(0);
         if (v.kind == Kind::Undefined) undefined_fail(v);
         if (v.kind == Kind::Int || v.kind == Kind::Bool) return integer(as_int(v));
         if (v.kind == Kind::Float) return std::isfinite(v.f) ? integer(static_cast<int64_t>(v.f)) : dflt;
         if (v.kind != Kind::String) return dflt;
         try {
           size_t used = 0;
           const std::string t = strip(v.s, Value{}, true, true);
           const int64_t r = std::stoll(t, &used);
           return used == t.size() ? integer(r) : dflt;
         } catch (const std::exception&) {
           return dflt;
         }
       }},
      {"float",
       [](V v, A a) {
         const auto p = bind(a, "float", {"default"});
         const Value dflt = given(p[0]) ? p[0] : real(0);
         if (v.kind == Kind::Undefined) undefined_fail(v);
         if (is_number(v)) return real(as_double(v));
         if (v.kind != Kind::String) return dflt;
         try {
           size_t used = 0;
           const std::string t = strip(v.s, Value{}, true, true);
           const double r = std::stod(t, &used);
           return used == t.size() ? real(r) : dflt;
         } catch (const std::exception&) {
           return dflt;
         }
       }},
      {"abs",
       [](V v, A a) {
         bind(a, "abs", {});
         if (v.kind == Kind::Float) return real(std::fabs(v.f));
         if (!is_number(v)) eval_fail("abs of {}", type_name(v));
         if (as_int(v) == INT64_MIN) eval_fail("integer overflow");
         return integer(std::llabs(as_int(v)));
       }},
      {"first",
       [](V v, A a) {
         bind(a, "first", {});
         const List items = iterate(v);
         return items.empty() ? undefined("first item") : items.front();
       }},
      {"last",
       [](V v, A a) {
         bind(a, "last", {});
         const List items = iterate(v);
         return items.empty() ? undefined("last item") : items.back();
       }},
      {"list", [](V v, A a) { return bind(a, "list", {}), list(iterate(v)); }},
      {"reverse",
       [](V v, A a) {
         bind(a, "reverse", {});
         if (v.kind == Kind::String) {
           std::vector<int32_t> cps = decode_utf8(v.s);
           std::reverse(cps.begin(), cps.end());
           return string(encode_utf8(cps));
         }
         List items = iterate(v);
         std::reverse(items.begin(), items.end());
         return list(std::move(items));
       }},
      {"items",
       [](V v, A a) {
         bind(a, "items", {});
         if (v.kind == Kind::Undefined) return list({});
         if (v.kind != Kind::Dict) eval_fail("items filter expects a dict, got {}", type_name(v));
         List out;
         for (const auto& [k, x] : *v.dict) out.push_back(list({string(k), x}));
         return list(std::move(out));
       }},
      {"join",
       [](V v, A a) {
         const auto p = bind(a, "join", {"d", "attribute"});
         List items = iterate(v);
         if (given(p[1]))
           for (Value& item : items) item = get_item(item, p[1], to_str(p[1]));
         return string(join(items, given(p[0]) ? to_str(p[0]) : ""));
       }},
      {"replace",
       [](V v, A a) {
         const auto p = bind(a, "replace", {"old", "new", "count"}, 2);
         return string(replace(to_str(v), need_string(p[0], "replace"), need_string(p[1], "replace"),
                               given(p[2]) ? as_int(p[2]) : -1));
       }},
      {"tojson",
       [](V v, A a) {
         const auto p = bind(a, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
         if (truthy(p[0])) eval_fail("tojson(ensure_ascii=true) is not supported");
         if (given(p[2]) && p[2].kind != Kind::None) eval_fail("tojson(separators=...) is not supported");
         const int indent = given(p[1]) && p[1].kind != Kind::None ? static_cast<int>(as_int(p[1])) : -1;
         std::string out;
         to_json(out, v, indent, truthy(p[3]), 0);
         return string(std::move(out));
       }},
      {"map",
       [](V v, A a) {
         List items = iterate(v);
         if (a.pos.empty()) {
           const auto p = bind(a, "map", {"attribute", "default"}, 1);
           for (Value& item : items) {
             item = get_item(item, p[0], to_str(p[0]));
             if (item.kind == Kind::Undefined && given(p[1])) item = p[1];
           }
         } else {
           const std::string name = need_string(a.pos[0], "map filter name");
           const CallArgs rest{std::vector<Value>(a.pos.begin() + 1, a.pos.end()), a.kw};
           for (Value& item : items) item = apply_filter(name, item, rest);
         }
         return list(std::move(items));
       }},
      {"select", [](V v, A a) { return select_items(v, a, false, true); }},
      {"reject", [](V v, A a) { return select_items(v, a, false, false); }},
      {"selectattr", [](V v, A a) { return select_items(v, a, true, true); }},
      {"rejectattr", [](V v, A a) { return select_items(v, a, true, false); }},
  };
  return f;
}

Value apply_filter(const std::string& name, const Value& v, const CallArgs& args) {
  const auto it = filters().find(name);
  if (it == filters().end()) eval_fail("unknown filter '{}'", name);
  return it->second(v, args);
}

// --- Global functions and methods ---

const std::vector<std::string_view> kFunctions = {"raise_exception", "namespace", "range", "strftime_now"};
bool is_function_name(std::string_view name) { return one_of(name, kFunctions); }
const std::vector<std::string_view> kMethods = {"strip", "lstrip",  "rstrip", "startswith", "endswith", "upper",
                                                "lower", "title",   "capitalize", "split", "replace",  "join",
                                                "get",   "items",   "keys",  "values"};

Value call_function(const std::string& name, const CallArgs& a) {
  if (name == "raise_exception") {
    const auto p = bind(a, "raise_exception", {"message"}, 1);
    throw Error(fmt::format("chat template: {}", to_str(p[0])));  // the template's own message, no line noise
  }
  if (name == "namespace") {
    Dict attrs;
    if (a.pos.size() > 1) eval_fail("namespace() takes at most one positional argument");
    if (!a.pos.empty()) {
      if (a.pos[0].kind != Kind::Dict) eval_fail("namespace() expects a dict, got {}", type_name(a.pos[0]));
      attrs = *a.pos[0].dict;
    }
    for (const auto& [k, v] : a.kw) attrs.emplace_back(k, v);
    Value ns = dict(std::move(attrs));
    ns.is_namespace = true;
    return ns;
  }
  if (name == "strftime_now") {  // HF's helper for templates that print today's date (Llama 3.x)
    const auto p = bind(a, "strftime_now", {"format"}, 1);
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buf[512];
    const size_t n = std::strftime(buf, sizeof buf, need_string(p[0], "strftime_now").c_str(), &local);
    return string(std::string(buf, n));
  }
  // range(stop) / range(start, stop[, step])
  if (a.pos.empty() || a.pos.size() > 3 || !a.kw.empty()) eval_fail("range() takes 1 to 3 positional arguments");
  for (const Value& v : a.pos)
    if (v.kind != Kind::Int && v.kind != Kind::Bool) eval_fail("range() arguments must be integers");
  const int64_t start = a.pos.size() > 1 ? as_int(a.pos[0]) : 0;
  const int64_t stop = a.pos.size() > 1 ? as_int(a.pos[1]) : as_int(a.pos[0]);
  const int64_t step = a.pos.size() > 2 ? as_int(a.pos[2]) : 1;
  if (step == 0) eval_fail("range() step must not be zero");
  List out;
  for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
    if (static_cast<int64_t>(out.size()) >= kMaxRange) eval_fail("range() longer than {} items", kMaxRange);
    out.push_back(integer(k));
  }
  return list(std::move(out));
}

bool prefix_match(const std::string& s, const Value& prefix, bool at_start) {
  const auto one = [&](const Value& p) {
    const std::string& t = need_string(p, at_start ? "startswith" : "endswith");
    return at_start ? s.starts_with(t) : s.ends_with(t);
  };
  if (prefix.kind == Kind::List) return std::any_of(prefix.list->begin(), prefix.list->end(), one);
  return one(prefix);
}

Value string_method(const std::string& s, const std::string& m, const CallArgs& a) {
  const std::string what = "str." + m + "()";
  if (m == "strip" || m == "lstrip" || m == "rstrip") {
    const auto p = bind(a, what, {"chars"});
    return string(strip(s, p[0], m != "rstrip", m != "lstrip"));
  }
  if (m == "startswith" || m == "endswith") {
    const auto p = bind(a, what, {"prefix"}, 1);
    return boolean(prefix_match(s, p[0], m == "startswith"));
  }
  if (m == "upper") return bind(a, what, {}), string(change_case(s, Case::Upper));
  if (m == "lower") return bind(a, what, {}), string(change_case(s, Case::Lower));
  if (m == "title") return bind(a, what, {}), string(change_case(s, Case::Title));
  if (m == "capitalize") return bind(a, what, {}), string(change_case(s, Case::Capitalize));
  if (m == "split") {
    const auto p = bind(a, what, {"sep", "maxsplit"});
    return list(split(s, p[0], p[1]));
  }
  if (m == "replace") {
    const auto p = bind(a, what, {"old", "new", "count"}, 2);
    return string(replace(s, need_string(p[0], what), need_string(p[1], what), given(p[2]) ? as_int(p[2]) : -1));
  }
  if (m == "join") {
    const auto p = bind(a, what, {"iterable"}, 1);
    return string(join(iterate(p[0]), s));
  }
  eval_fail("string has no method '{}'", m);
}

Value dict_method(const Dict& d, const std::string& m, const CallArgs& a) {
  const std::string what = "dict." + m + "()";
  if (m == "get") {
    const auto p = bind(a, what, {"key", "default"}, 1);
    const Value* v = p[0].kind == Kind::String ? dict_find(d, p[0].s) : nullptr;
    return v ? *v : given(p[1]) ? p[1] : none();
  }
  bind(a, what, {});
  List out;
  for (const auto& [k, v] : d) {
    if (m == "items") out.push_back(list({string(k), v}));
    else if (m == "keys") out.push_back(string(k));
    else if (m == "values") out.push_back(v);
    else eval_fail("dict has no method '{}'", m);
  }
  return list(std::move(out));
}

// --- Expression nodes ---

struct Literal : Expr {
  Value value;
  Value eval(Context&) const override { return value; }
};

struct ListExpr : Expr {  // [a, b] or (a, b)
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  Value eval(Context& ctx) const override {
    List out;
    for (const auto& e : items) out.push_back(e->eval(ctx));
    return is_tuple ? tuple(std::move(out)) : list(std::move(out));
  }
};

struct DictExpr : Expr {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
  Value eval(Context& ctx) const override {
    Dict out;
    for (const auto& [k, v] : items) {
      const Value key = k->eval(ctx);
      if (key.kind != Kind::String) eval_fail("dict keys must be strings, got {}", type_name(key));
      Value val = v->eval(ctx);
      auto it = std::find_if(out.begin(), out.end(), [&](auto& kv) { return kv.first == key.s; });
      if (it != out.end()) it->second = std::move(val);
      else out.emplace_back(key.s, std::move(val));
    }
    return dict(std::move(out));
  }
};

bool is_function_name(std::string_view name);

struct NameExpr : Expr {
  std::string name;
  Value eval(Context& ctx) const override {
    Value v = ctx.lookup(name);
    if (v.kind == Kind::Undefined && is_function_name(name)) {  // `strftime_now is defined` holds, as in HF
      v.kind = Kind::Function;
      v.s = name;
    }
    return v;
  }
  std::string describe() const override { return name; }
};

struct AttrExpr : Expr {  // obj.name: a dict key (dicts are the only objects here)
  ExprPtr obj;
  std::string name;
  Value eval(Context& ctx) const override { return get_item(obj->eval(ctx), string(name), describe()); }
  std::string describe() const override { return obj->describe() + "." + name; }
};

struct ItemExpr : Expr {  // obj[index]
  ExprPtr obj, index;
  Value eval(Context& ctx) const override {
    const Value o = obj->eval(ctx);
    const Value k = index->eval(ctx);
    return get_item(o, k, obj->describe() + "[" + repr(k) + "]");
  }
  std::string describe() const override { return obj->describe() + "[...]"; }
};

struct SliceExpr : Expr {  // obj[start:stop:step]
  ExprPtr obj, start, stop, step;
  Value eval(Context& ctx) const override {
    const Value o = obj->eval(ctx);
    const Value a = start ? start->eval(ctx) : Value{};
    const Value b = stop ? stop->eval(ctx) : Value{};
    const Value c = step ? step->eval(ctx) : Value{};
    return slice(o, a, b, c);
  }
};

struct UnaryExpr : Expr {
  std::string op;  // not, -, +
  ExprPtr operand;
  Value eval(Context& ctx) const override {
    const Value v = operand->eval(ctx);
    if (op == "not") return boolean(!truthy(v));
    if (v.kind == Kind::Undefined) undefined_fail(v);
    if (!is_number(v)) eval_fail("bad operand type for unary {}: {}", op, type_name(v));
    if (op == "+") return v.kind == Kind::Float ? v : integer(as_int(v));
    if (v.kind == Kind::Float) return real(-v.f);
    if (as_int(v) == INT64_MIN) eval_fail("integer overflow");
    return integer(-as_int(v));
  }
};

struct BinaryExpr : Expr {  // + - * / // % ** ~
  std::string op;
  ExprPtr left, right;
  Value eval(Context& ctx) const override {
    const Value a = left->eval(ctx);
    const Value b = right->eval(ctx);
    if (op == "~") return string(to_str(a) + to_str(b));
    return arithmetic(op, a, b);
  }
};

struct LogicExpr : Expr {  // and / or: short-circuit, returning an operand as Python does
  bool is_and;
  ExprPtr left, right;
  Value eval(Context& ctx) const override {
    Value a = left->eval(ctx);
    if (truthy(a) != is_and) return a;
    return right->eval(ctx);
  }
};

struct CompareExpr : Expr {  // a < b <= c ... chains as in Python
  ExprPtr first;
  std::vector<std::pair<std::string, ExprPtr>> rest;
  static bool holds(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return equal(a, b);
    if (op == "!=") return !equal(a, b);
    if (op == "in") return contains(b, a);
    if (op == "not in") return !contains(b, a);
    const int c = compare(a, b);
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    return c >= 0;
  }
  Value eval(Context& ctx) const override {
    Value a = first->eval(ctx);
    for (const auto& [op, e] : rest) {
      Value b = e->eval(ctx);
      if (!holds(op, a, b)) return boolean(false);
      a = std::move(b);
    }
    return boolean(true);
  }
};

struct CondExpr : Expr {  // then if cond else otherwise (no else: undefined)
  ExprPtr then, cond, otherwise;
  Value eval(Context& ctx) const override {
    if (truthy(cond->eval(ctx))) return then->eval(ctx);
    return otherwise ? otherwise->eval(ctx) : undefined("conditional expression without else");
  }
};

struct FilterExpr : Expr {
  ExprPtr obj;
  std::string name;
  ArgExprs args;
  Value eval(Context& ctx) const override {
    const Value v = obj->eval(ctx);
    return apply_filter(name, v, args.eval(ctx));
  }
};

struct TestExpr : Expr {
  ExprPtr obj;
  std::string name;
  bool negate = false;
  ArgExprs args;
  Value eval(Context& ctx) const override {
    const Value v = obj->eval(ctx);
    const CallArgs a = args.eval(ctx);
    if (!a.kw.empty()) eval_fail("test '{}' takes no keyword arguments", name);
    return boolean(run_test(name, v, a.pos) != negate);
  }
};

struct CallExpr : Expr {  // a global function: raise_exception, namespace, range
  std::string name;
  ArgExprs args;
  Value eval(Context& ctx) const override { return call_function(name, args.eval(ctx)); }
};

struct MethodExpr : Expr {  // obj.method(args)
  ExprPtr obj;
  std::string name;
  ArgExprs args;
  Value eval(Context& ctx) const override {
    const Value o = obj->eval(ctx);
    const CallArgs a = args.eval(ctx);
    if (o.kind == Kind::String) return string_method(o.s, name, a);
    if (o.kind == Kind::Dict) return dict_method(*o.dict, name, a);
    if (o.kind == Kind::Undefined) undefined_fail(o);
    eval_fail("{} has no method '{}'", type_name(o), name);
  }
};

// --- Statement nodes ---

enum class Flow { Normal, Break, Continue };

struct Node {
  int line = 0;
  virtual ~Node() = default;
  virtual Flow render(Context& ctx, std::string& out) const = 0;
};
using Body = std::vector<std::unique_ptr<Node>>;

Flow render_body(const Body& body, Context& ctx, std::string& out) {
  for (const auto& node : body) {
    Flow flow;
    try {
      flow = node->render(ctx, out);
    } catch (const EvalError& e) {
      fail("chat template line {}: {}", node->line, e.message);
    }
    if (flow != Flow::Normal) return flow;
  }
  return Flow::Normal;
}

void append_output(std::string& out, const std::string& text) {
  if (out.size() + text.size() > kMaxString) eval_fail("rendered output larger than {} bytes", kMaxString);
  out += text;
}

struct TextNode : Node {
  std::string text;
  Flow render(Context&, std::string& out) const override {
    append_output(out, text);
    return Flow::Normal;
  }
};

struct OutputNode : Node {
  ExprPtr expr;
  Flow render(Context& ctx, std::string& out) const override {
    append_output(out, to_str(expr->eval(ctx)));
    return Flow::Normal;
  }
};

struct IfNode : Node {
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body otherwise;
  Flow render(Context& ctx, std::string& out) const override {
    for (const auto& [cond, body] : branches)
      if (truthy(cond->eval(ctx))) return render_body(body, ctx, out);
    return render_body(otherwise, ctx, out);
  }
};

struct ForNode : Node {
  std::vector<std::string> targets;
  ExprPtr iterable, filter;
  Body body, otherwise;

  void bind_targets(Context& ctx, const Value& item) const {
    if (targets.size() == 1) return ctx.assign(targets[0], item);
    if (item.kind != Kind::List || item.list->size() != targets.size())
      eval_fail("cannot unpack {} into {} loop variables", type_name(item), targets.size());
    for (size_t k = 0; k < targets.size(); ++k) ctx.assign(targets[k], (*item.list)[k]);
  }

  static Value loop_info(const List& items, size_t k) {
    const int64_t n = static_cast<int64_t>(items.size()), i = static_cast<int64_t>(k);
    return dict({{"index0", integer(i)},
                 {"index", integer(i + 1)},
                 {"revindex0", integer(n - i - 1)},
                 {"revindex", integer(n - i)},
                 {"first", boolean(i == 0)},
                 {"last", boolean(i == n - 1)},
                 {"length", integer(n)},
                 {"previtem", k > 0 ? items[k - 1] : undefined("loop.previtem")},
                 {"nextitem", i + 1 < n ? items[k + 1] : undefined("loop.nextitem")}});
  }

  // Each iteration runs in a fresh scope holding the loop variables, `loop`, and whatever the body sets: as in
  // Jinja, a `set` inside the loop lasts until the end of its iteration.
  struct IterationScope {
    Context& ctx;
    explicit IterationScope(Context& c) : ctx(c) { ctx.scopes.emplace_back(); }
    ~IterationScope() { ctx.scopes.pop_back(); }
  };

  Flow render(Context& ctx, std::string& out) const override {
    List items = iterate(iterable->eval(ctx));
    if (filter) {  // `for x in xs if cond`: loop.* count only the kept items
      List kept;
      for (Value& item : items) {
        IterationScope scope(ctx);
        bind_targets(ctx, item);
        if (truthy(filter->eval(ctx))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) return render_body(otherwise, ctx, out);
    for (size_t k = 0; k < items.size(); ++k) {
      if (++ctx.iterations > kMaxIterations) eval_fail("more than {} loop iterations", kMaxIterations);
      IterationScope scope(ctx);
      bind_targets(ctx, items[k]);
      ctx.assign("loop", loop_info(items, k));
      if (render_body(body, ctx, out) == Flow::Break) break;
    }
    return Flow::Normal;
  }
};

struct SetNode : Node {
  std::string name, attr;  // attr: `set ns.attr = ...`
  ExprPtr value;
  Flow render(Context& ctx, std::string&) const override {
    Value v = value->eval(ctx);
    if (attr.empty()) {
      ctx.assign(name, std::move(v));
      return Flow::Normal;
    }
    const Value ns = ctx.lookup(name);
    if (!ns.is_namespace) eval_fail("cannot set '{}.{}': '{}' is not a namespace()", name, attr, name);
    for (auto& [k, x] : *ns.dict)
      if (k == attr) {
        x = std::move(v);
        return Flow::Normal;
      }
    ns.dict->emplace_back(attr, std::move(v));
    return Flow::Normal;
  }
};

struct LoopControlNode : Node {
  Flow flow;
  Flow render(Context&, std::string&) const override { return flow; }
};

struct BlockNode : Node {  // {% generation %}: HF marks assistant text with it; it renders its body unchanged
  Body body;
  Flow render(Context& ctx, std::string& out) const override { return render_body(body, ctx, out); }
};

// =================================================================================================================
// 4. The parser: recursive descent over the segments, Jinja's operator precedence (loosest first):
//    a if c else b | or | and | not | comparisons, in | + - | ~ | * / // % | ** | unary - + |
//    primary with postfix (.attr [index] (call)) and filters/tests (| f, is t)

const std::vector<std::string_view> kUnsupportedTags = {
    "macro", "endmacro", "call", "endcall", "filter", "endfilter", "block", "endblock", "extends", "include",
    "import", "from", "raw", "endraw", "with", "endwith", "autoescape", "endautoescape", "do", "trans", "endset"};
const std::vector<std::string_view> kReserved = {"and", "or", "not", "in", "is", "if", "else", "elif"};


class Parser {
 public:
  explicit Parser(std::vector<Segment> segs) : segs_(std::move(segs)) {}

  Body parse_template() {
    std::string stop;
    return parse_body({}, "", 0, stop);
  }

 private:
  std::vector<Segment> segs_;
  size_t seg_ = 0;
  const std::vector<Token>* toks_ = nullptr;
  size_t tok_ = 0;
  int loop_depth_ = 0;
  int nesting_ = 0;

  // --- token cursor within the current tag ---
  const Token& peek(size_t ahead = 0) const { return (*toks_)[std::min(tok_ + ahead, toks_->size() - 1)]; }
  const Token& advance() { return (*toks_)[tok_ < toks_->size() - 1 ? tok_++ : tok_]; }
  bool peek_op(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).kind == TokKind::Op && peek(ahead).text == op;
  }
  bool peek_name(std::string_view name, size_t ahead = 0) const {
    return peek(ahead).kind == TokKind::Name && peek(ahead).text == name;
  }
  bool accept_op(std::string_view op) { return peek_op(op) && (advance(), true); }
  bool accept_name(std::string_view name) { return peek_name(name) && (advance(), true); }
  void expect_op(std::string_view op) {
    if (!accept_op(op)) parse_fail(peek().line, "expected '{}', got {}", op, describe(peek()));
  }
  std::string expect_name(std::string_view what) {
    if (peek().kind != TokKind::Name) parse_fail(peek().line, "expected {}, got {}", what, describe(peek()));
    return advance().text;
  }
  // The tag must end here; move on to the next segment.
  void finish_tag() {
    if (peek().kind != TokKind::End) parse_fail(peek().line, "unexpected {} in tag", describe(peek()));
    ++seg_;
  }

  struct Nest {  // bounds recursion so that deeply nested input is an error, not a stack overflow
    Parser& p;
    explicit Nest(Parser& parser, int line) : p(parser) {
      if (++p.nesting_ > kMaxNesting) parse_fail(line, "template nested too deeply");
    }
    ~Nest() { --p.nesting_; }
  };

  template <typename T>
  std::unique_ptr<T> make(int line) {
    auto n = std::make_unique<T>();
    n->line = line;
    return n;
  }

  // --- statements ---

  // Parses nodes until a statement tag named in `stops` (left unconsumed, its name in `stop`) or the end.
  Body parse_body(std::initializer_list<std::string_view> stops, std::string_view opener, int open_line,
                  std::string& stop) {
    Nest nest(*this, open_line);
    Body body;
    while (seg_ < segs_.size()) {
      const Segment& s = segs_[seg_];
      if (s.kind == SegKind::Text) {
        auto t = make<TextNode>(s.line);
        t->text = s.text;
        body.push_back(std::move(t));
        ++seg_;
        continue;
      }
      toks_ = &s.tokens;
      tok_ = 0;
      if (s.kind == SegKind::Output) {
        if (peek().kind == TokKind::End) parse_fail(s.line, "empty expression '{{{{ }}}}'");
        auto o = make<OutputNode>(s.line);
        o->expr = parse_expression();
        finish_tag();
        body.push_back(std::move(o));
        continue;
      }
      if (peek().kind != TokKind::Name) parse_fail(s.line, "expected a tag name after '{{%', got {}", describe(peek()));
      if (std::find(stops.begin(), stops.end(), peek().text) != stops.end()) {
        stop = peek().text;
        return body;
      }
      body.push_back(parse_statement(advance().text, s.line));
    }
    if (stops.size() > 0)
      parse_fail(open_line, "unclosed '{{% {} %}}': missing '{{% {} %}}'", opener, *(stops.end() - 1));
    return body;
  }

  std::unique_ptr<Node> parse_statement(const std::string& tag, int line) {
    if (tag == "if") return parse_if(line);
    if (tag == "for") return parse_for(line);
    if (tag == "set") return parse_set(line);
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) parse_fail(line, "'{{% {} %}}' outside a for loop", tag);
      auto n = make<LoopControlNode>(line);
      n->flow = tag == "break" ? Flow::Break : Flow::Continue;
      finish_tag();
      return n;
    }
    if (tag == "generation") {
      auto n = make<BlockNode>(line);
      finish_tag();
      std::string stop;
      n->body = parse_body({"endgeneration"}, "generation", line, stop);
      advance();
      finish_tag();
      return n;
    }
    if (one_of(tag, kUnsupportedTags))
      parse_fail(line, "unsupported tag '{{% {} %}}' (supported: if, for, set, break, continue, generation)", tag);
    if (tag == "elif" || tag == "else" || tag.starts_with("end"))
      parse_fail(line, "unexpected '{{% {} %}}' without a matching opening tag", tag);
    parse_fail(line, "unknown tag '{{% {} %}}'", tag);
  }

  std::unique_ptr<Node> parse_if(int line) {
    auto n = make<IfNode>(line);
    ExprPtr cond = parse_expression();
    finish_tag();
    for (;;) {
      std::string stop;
      Body body = parse_body({"elif", "else", "endif"}, "if", line, stop);
      n->branches.emplace_back(std::move(cond), std::move(body));
      advance();
      if (stop == "elif") {
        cond = parse_expression();
        finish_tag();
        continue;
      }
      finish_tag();
      if (stop == "else") {
        n->otherwise = parse_body({"endif"}, "if", line, stop);
        advance();
        finish_tag();
      }
      return n;
    }
  }

  std::unique_ptr<Node> parse_for(int line) {
    auto n = make<ForNode>(line);
    do n->targets.push_back(expect_name("a loop variable name"));
    while (accept_op(","));
    if (!accept_name("in")) parse_fail(line, "expected 'in' in for loop, got {}", describe(peek()));
    n->iterable = parse_expression(/*allow_conditional=*/false);
    if (accept_name("if")) n->filter = parse_expression(false);
    if (peek_name("recursive")) parse_fail(line, "recursive for loops are not supported");
    finish_tag();
    std::string stop;
    ++loop_depth_;
    n->body = parse_body({"else", "endfor"}, "for", line, stop);
    --loop_depth_;
    advance();
    finish_tag();
    if (stop == "else") {
      n->otherwise = parse_body({"endfor"}, "for", line, stop);
      advance();
      finish_tag();
    }
    return n;
  }

  std::unique_ptr<Node> parse_set(int line) {
    auto n = make<SetNode>(line);
    n->name = expect_name("a variable name");
    if (accept_op(".")) n->attr = expect_name("an attribute name");
    if (peek_op(",")) parse_fail(line, "tuple assignment in '{{% set %}}' is not supported");
    if (peek().kind == TokKind::End)
      parse_fail(line, "block assignment '{{% set {} %}}...{{% endset %}}' is not supported", n->name);
    expect_op("=");
    n->value = parse_expression();
    finish_tag();
    return n;
  }

  // --- expressions ---

  ExprPtr parse_expression(bool allow_conditional = true) {
    Nest nest(*this, peek().line);
    ExprPtr e = parse_or();
    while (allow_conditional && peek_name("if")) {
      const int line = advance().line;
      auto c = make<CondExpr>(line);
      c->then = std::move(e);
      c->cond = parse_or();
      if (accept_name("else")) c->otherwise = parse_expression();
      e = std::move(c);
    }
    return e;
  }

  ExprPtr parse_logic(bool is_and) {
    ExprPtr left = is_and ? parse_not() : parse_logic(true);
    while (peek_name(is_and ? "and" : "or")) {
      auto n = make<LogicExpr>(advance().line);
      n->is_and = is_and;
      n->left = std::move(left);
      n->right = is_and ? parse_not() : parse_logic(true);
      left = std::move(n);
    }
    return left;
  }
  ExprPtr parse_or() { return parse_logic(false); }

  ExprPtr parse_not() {
    if (peek_name("not")) {
      Nest nest(*this, peek().line);
      auto n = make<UnaryExpr>(advance().line);
      n->op = "not";
      n->operand = parse_not();
      return n;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr first = parse_math1();
    std::vector<std::pair<std::string, ExprPtr>> rest;
    for (;;) {
      std::string op;
      if (peek().kind == TokKind::Op && one_of(peek().text, {"==", "!=", "<", ">", "<=", ">="})) op = advance().text;
      else if (accept_name("in")) op = "in";
      else if (peek_name("not") && peek_name("in", 1)) {
        advance(), advance();
        op = "not in";
      } else break;
      rest.emplace_back(op, parse_math1());
    }
    if (rest.empty()) return first;
    auto n = make<CompareExpr>(first->line);
    n->first = std::move(first);
    n->rest = std::move(rest);
    return n;
  }

  // One level of left-associative binary operators.
  template <typename Next>
  ExprPtr parse_binary(std::initializer_list<std::string_view> ops, Next next) {
    ExprPtr left = (this->*next)();
    while (peek().kind == TokKind::Op && std::find(ops.begin(), ops.end(), peek().text) != ops.end()) {
      auto n = make<BinaryExpr>(peek().line);
      n->op = advance().text;
      n->left = std::move(left);
      n->right = (this->*next)();
      left = std::move(n);
    }
    return left;
  }
  ExprPtr parse_math1() { return parse_binary({"+", "-"}, &Parser::parse_concat); }
  ExprPtr parse_concat() { return parse_binary({"~"}, &Parser::parse_math2); }
  ExprPtr parse_math2() { return parse_binary({"*", "/", "//", "%"}, &Parser::parse_pow); }
  ExprPtr parse_pow() { return parse_binary({"**"}, &Parser::parse_unary_filtered); }
  ExprPtr parse_unary_filtered() { return parse_unary(true); }

  ExprPtr parse_unary(bool with_filters) {
    Nest nest(*this, peek().line);
    ExprPtr e;
    if (peek_op("-") || peek_op("+")) {
      auto n = make<UnaryExpr>(peek().line);
      n->op = advance().text;
      n->operand = parse_unary(false);
      e = std::move(n);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    return with_filters ? parse_filters(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    const int line = t.line;
    if (t.kind == TokKind::Name) {
      if (one_of(t.text, kReserved)) parse_fail(line, "unexpected '{}' where a value was expected", t.text);
      auto lit = make<Literal>(line);
      const std::string name = advance().text;
      if (name == "true" || name == "True") lit->value = boolean(true);
      else if (name == "false" || name == "False") lit->value = boolean(false);
      else if (name == "none" || name == "None") lit->value = none();
      else {
        auto n = make<NameExpr>(line);
        n->name = name;
        return n;
      }
      return lit;
    }
    if (t.kind == TokKind::String) {
      std::string s;
      while (peek().kind == TokKind::String) s += advance().text;  // 'a' 'b' == 'ab'
      auto lit = make<Literal>(line);
      lit->value = string(std::move(s));
      return lit;
    }
    if (t.kind == TokKind::Int || t.kind == TokKind::Float) {
      auto lit = make<Literal>(line);
      lit->value = t.kind == TokKind::Int ? integer(t.i) : real(t.f);
      advance();
      return lit;
    }
    if (accept_op("(")) return parse_parenthesised(line);
    if (accept_op("[")) {
      auto n = make<ListExpr>(line);
      n->items = parse_sequence("]");
      return n;
    }
    if (accept_op("{")) return parse_dict(line);
    if (t.kind == TokKind::End) parse_fail(line, "expected a value, got end of tag");
    parse_fail(line, "unexpected {} where a value was expected", describe(t));
  }

  // (expr) or a tuple: (), (a,), (a, b).
  ExprPtr parse_parenthesised(int line) {
    auto n = make<ListExpr>(line);
    n->is_tuple = true;
    if (accept_op(")")) return n;
    ExprPtr e = parse_expression();
    if (accept_op(")")) return e;
    expect_op(",");
    n->items.push_back(std::move(e));
    for (ExprPtr& item : parse_sequence(")")) n->items.push_back(std::move(item));
    return n;
  }

  // Comma-separated expressions up to `close` (consumed); a trailing comma is allowed.
  std::vector<ExprPtr> parse_sequence(std::string_view close) {
    std::vector<ExprPtr> items;
    while (!accept_op(close)) {
      items.push_back(parse_expression());
      if (!accept_op(",")) {
        expect_op(close);
        break;
      }
    }
    return items;
  }

  ExprPtr parse_dict(int line) {
    auto n = make<DictExpr>(line);
    while (!accept_op("}")) {
      ExprPtr key = parse_expression();
      expect_op(":");
      n->items.emplace_back(std::move(key), parse_expression());
      if (!accept_op(",")) {
        expect_op("}");
        break;
      }
    }
    return n;
  }

  ArgExprs parse_args() {
    ArgExprs args;
    expect_op("(");
    while (!accept_op(")")) {
      if (peek().kind == TokKind::Name && peek_op("=", 1)) {
        std::string name = advance().text;
        advance();
        args.kw.emplace_back(std::move(name), parse_expression());
      } else {
        if (peek_op("*") || peek_op("**")) parse_fail(peek().line, "*args/**kwargs are not supported");
        if (!args.kw.empty()) parse_fail(peek().line, "positional argument after keyword argument");
        args.pos.push_back(parse_expression());
      }
      if (!accept_op(",")) {
        expect_op(")");
        break;
      }
    }
    return args;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    for (;;) {
      const int line = peek().line;
      if (accept_op(".")) {
        if (peek().kind == TokKind::Int) {  // foo.0 == foo[0]
          auto n = make<ItemExpr>(line);
          n->obj = std::move(e);
          auto lit = make<Literal>(line);
          lit->value = integer(advance().i);
          n->index = std::move(lit);
          e = std::move(n);
          continue;
        }
        std::string name = expect_name("an attribute name after '.'");
        if (peek_op("(")) {
          if (!one_of(name, kMethods)) parse_fail(line, "unsupported method '.{}()'", name);
          auto n = make<MethodExpr>(line);
          n->obj = std::move(e);
          n->name = std::move(name);
          n->args = parse_args();
          e = std::move(n);
        } else {
          auto n = make<AttrExpr>(line);
          n->obj = std::move(e);
          n->name = std::move(name);
          e = std::move(n);
        }
      } else if (accept_op("[")) {
        e = parse_subscript(std::move(e), line);
      } else if (peek_op("(")) {
        auto* name = dynamic_cast<NameExpr*>(e.get());
        if (name == nullptr) parse_fail(line, "only named functions can be called");
        if (!one_of(name->name, kFunctions))
          parse_fail(line, "unknown function '{}' (supported: raise_exception, namespace, range, strftime_now)",
                     name->name);
        auto n = make<CallExpr>(line);
        n->name = name->name;
        n->args = parse_args();
        e = std::move(n);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    ExprPtr start, stop, step;
    if (!peek_op(":")) start = parse_expression();
    if (!accept_op(":")) {
      expect_op("]");
      auto n = make<ItemExpr>(line);
      n->obj = std::move(obj);
      n->index = std::move(start);
      return n;
    }
    if (!peek_op(":") && !peek_op("]")) stop = parse_expression();
    if (accept_op(":") && !peek_op("]")) step = parse_expression();
    expect_op("]");
    auto n = make<SliceExpr>(line);
    n->obj = std::move(obj);
    n->start = std::move(start);
    n->stop = std::move(stop);
    n->step = std::move(step);
    return n;
  }

  // `| filter(args)` and `is [not] test(args)`, left to right.
  ExprPtr parse_filters(ExprPtr e) {
    for (;;) {
      const int line = peek().line;
      if (accept_op("|")) {
        auto n = make<FilterExpr>(line);
        n->name = expect_name("a filter name after '|'");
        if (!filters().contains(n->name)) parse_fail(line, "unknown filter '{}'", n->name);
        n->obj = std::move(e);
        if (peek_op("(")) n->args = parse_args();
        e = std::move(n);
      } else if (accept_name("is")) {
        auto n = make<TestExpr>(line);
        n->negate = accept_name("not");
        n->name = expect_name("a test name after 'is'");
        if (!tests().contains(n->name)) parse_fail(line, "unknown test '{}'", n->name);
        n->obj = std::move(e);
        if (peek_name("is")) parse_fail(line, "cannot chain tests with 'is'");  // Jinja's rule, e.g. `is a is b`
        if (peek_op("(")) n->args = parse_args();
        else if (starts_test_argument()) n->args.pos.push_back(parse_postfix(parse_primary()));  // `is divisibleby 3`
        e = std::move(n);
      } else {
        return e;
      }
    }
  }

  // Jinja's rule for a test argument without parentheses: any value token except the names else/or/and/is
  // (so `x is none if c else y` is a syntax error there too).
  bool starts_test_argument() const {
    const Token& t = peek();
    if (t.kind == TokKind::String || t.kind == TokKind::Int || t.kind == TokKind::Float) return true;
    if (t.kind == TokKind::Name) return !one_of(t.text, {"else", "or", "and", "is"});
    return peek_op("[") || peek_op("{");
  }
};

}  // namespace

// =================================================================================================================
// 5. Public API

struct ChatTemplate::Program {
  std::string source;
  Body body;
};

ChatTemplate ChatTemplate::from_jinja(const std::string& source) {
  auto program = std::make_shared<Program>();
  program->source = source;
  program->body = Parser(Scanner(source).scan()).parse_template();
  return ChatTemplate(std::move(program));
}

ChatTemplate ChatTemplate::deepseek() {
  static const ChatTemplate t = from_jinja(kDeepSeekTemplate);  // parsed once; programs are immutable and shared
  return t;
}

const std::string& ChatTemplate::source() const { return program_->source; }

namespace {
template <typename Json>
std::string render_program(const ChatTemplate::Program& program, const Json& variables) {
  check(variables.is_object(), "chat template variables must be a JSON object, got {}", variables.type_name());
  Context ctx;
  ctx.scopes.emplace_back();
  for (auto it = variables.begin(); it != variables.end(); ++it) ctx.scopes[0][it.key()] = from_json(it.value());
  std::string out;
  render_body(program.body, ctx, out);  // break/continue outside loops are rejected by the parser
  return out;
}
}  // namespace

std::string ChatTemplate::render(const nlohmann::json& variables) const { return render_program(*program_, variables); }

std::string ChatTemplate::render(const nlohmann::ordered_json& variables) const {
  return render_program(*program_, variables);
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 const std::string& bos_token, const std::string& eos_token) const {
  nlohmann::json vars = {{"add_generation_prompt", add_generation_prompt},
                         {"bos_token", bos_token},
                         {"eos_token", eos_token},
                         {"messages", nlohmann::json::array()}};
  for (const ChatMessage& m : messages) vars["messages"].push_back({{"role", m.role}, {"content", m.content}});
  return render(vars);
}

std::vector<ChatMessage> chat_messages_from_json(const nlohmann::json& j) {
  check(j.is_array(), "chat messages must be a JSON array of {{\"role\", \"content\"}} objects, got {}", j.type_name());
  std::vector<ChatMessage> messages;
  for (size_t k = 0; k < j.size(); ++k) {
    const nlohmann::json& m = j[k];
    check(m.is_object(), "messages[{}]: expected an object with \"role\" and \"content\", got {}", k, m.type_name());
    check(m.contains("role"), "messages[{}]: missing \"role\"", k);
    check(m.contains("content"), "messages[{}]: missing \"content\"", k);
    check(m["role"].is_string(), "messages[{}]: \"role\" must be a string, got {}", k, m["role"].type_name());
    check(m["content"].is_string(), "messages[{}]: \"content\" must be a string, got {}", k, m["content"].type_name());
    const std::string role = m["role"].get<std::string>();
    check(role == "user" || role == "assistant" || role == "system",
          "messages[{}]: unknown role '{}' (expected user, assistant or system)", k, role);
    messages.push_back({role, m["content"].get<std::string>()});
  }
  return messages;
}

bool chat_has_system_message(const std::vector<ChatMessage>& messages) {
  return std::any_of(messages.begin(), messages.end(), [](const ChatMessage& m) { return m.role == "system"; });
}

}  // namespace dsmoe::text
