// The chat-template interpreter's built-ins (see builtins.h): argument binding, tests, filters, global functions and
// methods.
#include "text/jinja/builtins.h"

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <initializer_list>

#include "text/jinja/strings.h"

namespace dsmoe::text::jinja {

namespace {

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

int64_t length(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return 0;
    case Kind::String: return static_cast<int64_t>(decode_utf8(v.s).size());
    case Kind::List: return static_cast<int64_t>(v.list->size());
    case Kind::Dict:
      if (v.is_namespace) eval_fail("{} has no length", type_name(v));
      return static_cast<int64_t>(v.dict->size());
    default: eval_fail("{} has no length", type_name(v));
  }
}

// --- Tests: `x is name(args)` ---

bool is_sequence(const Value& v) {
  return v.kind == Kind::Undefined || v.kind == Kind::List || v.kind == Kind::String ||
         (v.kind == Kind::Dict && !v.is_namespace);
}

const Value& arg0(const std::vector<Value>& args, std::string_view test) {
  if (args.size() != 1) eval_fail("test '{}' takes one argument, got {}", test, args.size());
  return args[0];
}

}  // namespace

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
      // A namespace() is none of these three (Jinja's Namespace is a plain object); Undefined iterates as empty
      // and has a length (0), so it is iterable and a sequence.
      {"mapping", [](V v, A) { return v.kind == Kind::Dict && !v.is_namespace; }},
      {"iterable", [](V v, A) { return is_sequence(v); }},
      {"sequence", [](V v, A) { return is_sequence(v); }},
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
  // The tests without a parameter take no argument: `x is odd(3)`, select('odd', 3) are errors, as in Jinja.
  static const std::vector<std::string_view> kWithArgument = {
      "divisibleby", "eq", "equalto", "==",          "ne", "!=", "lt", "lessthan", "<",
      "le",          "<=", "gt",      "greaterthan", ">",  "ge", ">=", "in"};
  if (!args.empty() && !one_of(name, kWithArgument))
    eval_fail("test '{}' takes no argument, got {}", name, args.size());
  return it->second(v, args);
}

// --- Filters: `x | name(args)` ---

namespace {

// select/reject/selectattr/rejectattr: keep the items whose test (the first argument, after the attribute for the
// *attr forms; none: truthiness, and keyword arguments are ignored, as in Jinja) matches `keep`.
Value select_items(const Value& seq, const CallArgs& a, bool by_attr, bool keep) {
  size_t k = 0;
  std::string attr;
  if (by_attr) {
    if (a.pos.empty()) eval_fail("selectattr/rejectattr need an attribute name");
    attr = need_string(a.pos[k++], "selectattr");
  }
  const bool has_test = k < a.pos.size();
  const std::string test = has_test ? need_string(a.pos[k++], "select test name") : "";
  if (has_test && !a.kw.empty()) eval_fail("select/reject tests take no keyword arguments");
  const std::vector<Value> test_args(a.pos.begin() + static_cast<ptrdiff_t>(k), a.pos.end());
  List out;
  for (const Value& item : iterate(seq)) {
    const Value subject = by_attr ? get_item(item, string(attr), attr) : item;
    const bool match = has_test ? run_test(test, subject, test_args) : truthy(subject);
    if (match == keep) out.push_back(item);
  }
  return list(std::move(out));
}

}  // namespace

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
         // Jinja's do_int: int(value) (int(value, base) for a string); failing that int(float(value)), so "4.2"
         // gives 4; failing that the default.
         const auto p = bind(a, "int", {"default", "base"});
         const Value dflt = given(p[0]) ? p[0] : integer(0);
         if (v.kind == Kind::Undefined) undefined_fail(v);
         if (v.kind == Kind::Int || v.kind == Kind::Bool) return integer(as_int(v));
         double f = 0;
         if (v.kind == Kind::Float)
           f = v.f;
         else if (v.kind != Kind::String)
           return dflt;
         else if (const auto i = parse_int(v.s, p[1].kind == Kind::Int ? p[1].i : given(p[1]) ? -1 : 10))
           return integer(*i);
         else if (const auto d = parse_float(v.s))
           f = *d;
         else
           return dflt;
         if (std::isnan(f)) return dflt;
         if (std::isinf(f)) eval_fail("cannot convert float infinity to integer");
         if (std::fabs(f) >= 0x1p63) eval_fail("integer overflow");
         return integer(static_cast<int64_t>(f));
       }},
      {"float",
       [](V v, A a) {
         const auto p = bind(a, "float", {"default"});
         const Value dflt = given(p[0]) ? p[0] : real(0);
         if (v.kind == Kind::Undefined) undefined_fail(v);
         if (is_number(v)) return real(as_double(v));
         if (v.kind != Kind::String) return dflt;
         const auto d = parse_float(v.s);
         return d ? real(*d) : dflt;
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
         for (const auto& [k, x] : *v.dict) out.push_back(tuple({string(k), x}));
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
         // Jinja's do_replace: str(s).replace(str(old), str(new), -1 if count is None else count)
         return string(replace(to_str(v), to_str(p[0]), to_str(p[1]),
                               p[2].kind == Kind::None ? -1 : need_int(p[2], "replace", -1)));
       }},
      {"tojson",
       [](V v, A a) {
         const auto p = bind(a, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
         JsonStyle style;
         style.ensure_ascii = truthy(p[0]);
         style.indent = given(p[1]) && p[1].kind != Kind::None ? static_cast<int>(as_int(p[1])) : -1;
         if (given(p[2]) && p[2].kind != Kind::None) {  // (item_separator, key_separator), as json.dumps unpacks it
           const List seps = p[2].kind == Kind::List ? *p[2].list : List{};
           if (seps.size() != 2 || seps[0].kind != Kind::String || seps[1].kind != Kind::String)
             eval_fail("tojson: separators must be a pair of strings (item, key), got {}", repr(p[2]));
           style.item_separator = seps[0].s;
           style.key_separator = seps[1].s;
         }
         style.sort_keys = truthy(p[3]);
         std::string out;
         to_json(out, v, style);
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
const std::vector<std::string_view> kMethods = {"strip", "lstrip", "rstrip",     "startswith", "endswith", "upper",
                                                "lower", "title",  "capitalize", "split",      "replace",  "join",
                                                "get",   "items",  "keys",       "values"};

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

namespace {

bool prefix_match(const std::string& s, const Value& prefix, bool at_start) {
  const auto one = [&](const Value& p) {
    const std::string& t = need_string(p, at_start ? "startswith" : "endswith");
    return at_start ? s.starts_with(t) : s.ends_with(t);
  };
  if (prefix.kind == Kind::List && prefix.is_tuple) return std::any_of(prefix.list->begin(), prefix.list->end(), one);
  return one(prefix);
}

}  // namespace

Value string_method(const std::string& s, const std::string& m, const CallArgs& a) {
  const std::string what = "str." + m + "()";
  if (!a.kw.empty() && m != "split") eval_fail("{} takes no keyword arguments", what);  // Python's positional-only
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
    return string(replace(s, need_string(p[0], what), need_string(p[1], what), need_int(p[2], what, -1)));
  }
  if (m == "join") {
    const auto p = bind(a, what, {"iterable"}, 1);
    const List items = iterate(p[0]);
    for (const Value& item : items)
      if (item.kind != Kind::String) eval_fail("{}: sequence item must be a string, got {}", what, type_name(item));
    return string(join(items, s));
  }
  eval_fail("string has no method '{}'", m);
}

Value dict_method(const Dict& d, const std::string& m, const CallArgs& a) {
  const std::string what = "dict." + m + "()";
  if (!a.kw.empty()) eval_fail("{} takes no keyword arguments", what);
  if (m == "get") {
    const auto p = bind(a, what, {"key", "default"}, 1);
    if (!hashable(p[0])) eval_fail("unhashable type: '{}'", type_name(p[0]));
    const Value* v = p[0].kind == Kind::String ? dict_find(d, p[0].s) : nullptr;
    return v ? *v : given(p[1]) ? p[1] : none();
  }
  bind(a, what, {});
  List out;
  for (const auto& [k, v] : d) {
    if (m == "items")
      out.push_back(tuple({string(k), v}));
    else if (m == "keys")
      out.push_back(string(k));
    else if (m == "values")
      out.push_back(v);
    else
      eval_fail("dict has no method '{}'", m);
  }
  return list(std::move(out));
}

}  // namespace dsmoe::text::jinja
