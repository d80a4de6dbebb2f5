// The chat-template interpreter's built-ins: the tests (`x is name(args)`), the filters (`x | name(args)`), the
// global functions (raise_exception, namespace, range, strftime_now) and the string and dict methods, with the
// Python str helpers they share. The parser checks names against these tables, so anything unknown is an error at
// parse time.
// Internal to src/text (the public API is text/chat_template.h).
#pragma once
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "text/jinja/value.h"

namespace dsmoe::text::jinja {

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

// --- Tests: `x is name(args)` ---

using TestFn = bool (*)(const Value&, const std::vector<Value>&);
const std::unordered_map<std::string, TestFn>& tests();
bool run_test(const std::string& name, const Value& v, const std::vector<Value>& args);

// --- Filters: `x | name(args)` ---

using FilterFn = Value (*)(const Value&, const CallArgs&);
const std::unordered_map<std::string, FilterFn>& filters();
Value apply_filter(const std::string& name, const Value& v, const CallArgs& args);

// --- Global functions and methods ---

extern const std::vector<std::string_view> kFunctions;  // the callable global names
bool is_function_name(std::string_view name);
extern const std::vector<std::string_view> kMethods;  // the method names (of strings and dicts)
// raise_exception throws dsmoe::Error("chat template: <message>"); the others return their value.
Value call_function(const std::string& name, const CallArgs& a);
Value string_method(const std::string& s, const std::string& m, const CallArgs& a);
Value dict_method(const Dict& d, const std::string& m, const CallArgs& a);

}  // namespace dsmoe::text::jinja
