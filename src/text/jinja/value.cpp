// The chat-template interpreter's values and their operations: constructors, truthiness, UTF-8 helpers,
// printing (Python's str() and repr(), json.dumps for `tojson`), conversion from JSON variables, comparison,
// containment, iteration, arithmetic and indexing/slicing, all with Python's semantics as Jinja 3 exposes them.
#include "text/jinja/value.h"

#include <utf8proc.h>

#include <cmath>
#include <initializer_list>

#include <nlohmann/json.hpp>

namespace dsmoe::text::jinja {

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

const std::string& need_string(const Value& v, std::string_view what) {
  if (v.kind == Kind::Undefined) undefined_fail(v);
  if (v.kind != Kind::String) eval_fail("{} expects a string, got {}", what, type_name(v));
  return v.s;
}

int64_t need_int(const Value& v, std::string_view what, int64_t fallback) {
  if (!given(v)) return fallback;
  if (v.kind != Kind::Int && v.kind != Kind::Bool) eval_fail("{} expects an integer, got {}", what, type_name(v));
  return as_int(v);
}

const Value* dict_find(const Dict& d, std::string_view key) {
  for (const auto& [k, v] : d)
    if (k == key) return &v;
  return nullptr;
}

// Whether Python can hash it (as a dict key, or the left side of `in <dict>`): not a list or dict, nor a tuple
// holding one.
bool hashable(const Value& v) {
  if (v.kind == Kind::Dict) return v.is_namespace;
  if (v.kind == Kind::List) return v.is_tuple && std::all_of(v.list->begin(), v.list->end(), hashable);
  return true;
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

namespace {

// str.isprintable() for a code point above ASCII: not a control, format, surrogate, private-use or unassigned code
// point, nor a separator.
bool is_printable(int32_t c) {
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
  }
}

}  // namespace

// Python's repr() of a str: backslash escapes, and \xhh, \uhhhh or \Uhhhhhhhh for what is not printable.
std::string string_repr(const std::string& s) {
  const char quote = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (int32_t c : decode_utf8(s)) {
    if (c == quote || c == '\\')
      out += '\\', out += static_cast<char>(c);
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\t')
      out += "\\t";
    else if (c < 0x20 || c == 0x7F)
      out += fmt::format("\\x{:02x}", c);
    else if (c < 0x7F || is_printable(c))
      append_utf8(out, c);
    else if (c <= 0xFF)
      out += fmt::format("\\x{:02x}", c);
    else if (c <= 0xFFFF)
      out += fmt::format("\\u{:04x}", c);
    else
      out += fmt::format("\\U{:08x}", c);
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

// json.dumps(value, ensure_ascii=..., indent=..., separators=..., sort_keys=...): what HF's `tojson` filter does.
void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || (ensure_ascii && c == 0x7F)) {  // ensure_ascii: DEL too, as Python
          out += fmt::format("\\u{:04x}", c);
        } else if (ensure_ascii && static_cast<unsigned char>(c) >= 0x80) {
          // One UTF-8 sequence -> its code point, written as Python writes it: \uXXXX, a surrogate pair above U+FFFF.
          const unsigned char lead = static_cast<unsigned char>(c);
          const int extra = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : 1;
          uint32_t cp = lead & (0x3F >> extra);
          for (int k = 0; k < extra && i + 1 < s.size(); ++k)
            cp = (cp << 6) | (static_cast<unsigned char>(s[++i]) & 0x3F);
          if (cp >= 0x10000) {
            cp -= 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
          } else {
            out += fmt::format("\\u{:04x}", cp);
          }
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void to_json(std::string& out, const Value& v, const JsonStyle& style, int depth) {
  const int indent = style.indent;
  const auto newline = [&](int d) {
    if (indent >= 0) out += '\n' + std::string(static_cast<size_t>(indent * d), ' ');
  };
  const std::string comma = style.item_separator.value_or(indent >= 0 ? "," : ", ");
  const std::string colon = style.key_separator.value_or(": ");
  switch (v.kind) {
    case Kind::Undefined: undefined_fail(v);
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += v.b ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(v.i); return;
    case Kind::Float:
      out += std::isfinite(v.f) ? float_repr(v.f) : std::isnan(v.f) ? "NaN" : v.f > 0 ? "Infinity" : "-Infinity";
      return;
    case Kind::String: json_string(out, v.s, style.ensure_ascii); return;
    case Kind::Function: eval_fail("cannot convert a function to JSON");
    case Kind::List:
      if (v.list->empty()) return void(out += "[]");
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += comma;
        newline(depth + 1);
        to_json(out, (*v.list)[k], style, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    case Kind::Dict: {
      if (v.is_namespace) eval_fail("cannot convert a namespace to JSON");
      if (v.dict->empty()) return void(out += "{}");
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : *v.dict) items.push_back(&kv);
      if (style.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += comma;
        newline(depth + 1);
        json_string(out, items[k]->first, style.ensure_ascii);
        out += colon;
        to_json(out, items[k]->second, style, depth + 1);
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
      if (a.is_namespace || b.is_namespace) return false;  // a namespace() equals only itself
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
  if (a.kind == Kind::List && b.kind == Kind::List && a.is_tuple == b.is_tuple) {
    for (size_t k = 0; k < a.list->size() && k < b.list->size(); ++k)  // the first unequal items decide, as in Python
      if (!equal((*a.list)[k], (*b.list)[k])) return compare((*a.list)[k], (*b.list)[k]);
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
    case Kind::Dict:
      if (haystack.is_namespace) eval_fail("cannot use 'in' on {}", type_name(haystack));
      if (!hashable(needle)) eval_fail("unhashable type: '{}'", type_name(needle));
      return needle.kind == Kind::String && dict_find(*haystack.dict, needle.s) != nullptr;
    default: eval_fail("cannot use 'in' on {}", type_name(haystack));
  }
}

// The items a for loop or a filter walks: list elements, dict keys, string characters.
List iterate(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return {};
    case Kind::List: return *v.list;
    case Kind::Dict: {
      if (v.is_namespace) eval_fail("cannot iterate over {}", type_name(v));
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

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

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

template Value from_json(const nlohmann::json& j);
template Value from_json(const nlohmann::ordered_json& j);

}  // namespace dsmoe::text::jinja
