#include "infer/json_constraint.h"

#include <cctype>

#include <fmt/format.h>

#include "core/error.h"

namespace dsmoe {

namespace {
constexpr int kMaxString = 256, kMaxItems = 64, kMaxDigits = 16, kMaxExponentDigits = 2, kMaxDepth = 32,
              kMaxChoices = 64;
enum Type : unsigned { kObject = 1, kArray = 2, kString = 4, kNumber = 8, kInteger = 16, kBoolean = 32, kNull = 64 };
constexpr unsigned kAnyType = kObject | kArray | kString | kNumber | kBoolean | kNull;
}  // namespace

struct JsonSchemaNode {
  unsigned types = kAnyType;
  std::vector<std::string> enum_literals;  // compact JSON of each allowed value (empty: no enum)
  bool free_object = true;                 // any keys (json_object, or no "properties")
  std::vector<std::pair<std::string, const JsonSchemaNode*>> properties;  // in schema order
  std::vector<bool> required;
  // Keys that may come next when properties [i, n) remain: "\"name\"" of i .. the first required one.
  std::vector<std::vector<std::string>> key_choices;
  std::vector<std::vector<int>> key_property;
  const JsonSchemaNode* items = nullptr;  // array items (nullptr: any value)
  const JsonSchemaNode* any = nullptr;    // the any-value node (free object values, free array items)
  int min_bytes = 1;                      // the shortest value this node accepts
};

namespace {
const std::vector<std::string> kBooleans = {"true", "false"};
const std::vector<std::string> kNulls = {"null"};

enum class Kind : uint8_t { kValue, kLiteral, kString, kNumber, kObject, kArray };
enum class Step { kConsumed, kReject, kPop, kPopRefeed, kRefeed };

using Nodes = std::vector<std::unique_ptr<JsonSchemaNode>>;

const JsonSchemaNode* build(const nlohmann::ordered_json& s, Nodes& nodes, const JsonSchemaNode* any, int depth);

// "key": of property i, and the shortest "key":value pairs of the required properties from i on (with commas).
int key_bytes(const JsonSchemaNode& n, int i) {
  return static_cast<int>(nlohmann::json(n.properties[static_cast<size_t>(i)].first).dump().size()) + 1;
}
int required_from(const JsonSchemaNode& n, int i, bool comma_first) {
  int total = 0, count = 0;
  for (int j = i; j < static_cast<int>(n.properties.size()); ++j)
    if (n.required[static_cast<size_t>(j)]) {
      total += key_bytes(n, j) + n.properties[static_cast<size_t>(j)].second->min_bytes +
               ((count > 0 || comma_first) ? 1 : 0);
      ++count;
    }
  return total;
}
int shortest_value(const JsonSchemaNode& n) {
  if (!n.enum_literals.empty()) {
    size_t best = n.enum_literals[0].size();
    for (const std::string& e : n.enum_literals) best = std::min(best, e.size());
    return static_cast<int>(best);
  }
  int best = 1 << 20;
  if (n.types & (kNumber | kInteger)) best = std::min(best, 1);
  if (n.types & kString) best = std::min(best, 2);
  if (n.types & kArray) best = std::min(best, 2);
  if (n.types & (kBoolean | kNull)) best = std::min(best, 4);
  if (n.types & kObject) best = std::min(best, 2 + (n.free_object ? 0 : required_from(n, 0, false)));
  return best;
}

const JsonSchemaNode* build_any(Nodes& nodes) {
  nodes.push_back(std::make_unique<JsonSchemaNode>());
  JsonSchemaNode* n = nodes.back().get();
  n->any = n;
  n->min_bytes = 1;  // a digit
  return n;
}

unsigned type_bit(const nlohmann::ordered_json& t) {
  if (!t.is_string()) fail("JSON schema: 'type' must be a string or a list of strings, not {}", t.dump());
  const std::string s = t.get<std::string>();
  if (s == "object") return kObject;
  if (s == "array") return kArray;
  if (s == "string") return kString;
  if (s == "number") return kNumber | kInteger;
  if (s == "integer") return kInteger;
  if (s == "boolean") return kBoolean;
  if (s == "null") return kNull;
  fail("JSON schema: unknown type '{}'", s);
}

const JsonSchemaNode* build(const nlohmann::ordered_json& s, Nodes& nodes, const JsonSchemaNode* any, int depth) {
  check(depth <= kMaxDepth, "JSON schema: nested deeper than {} levels", kMaxDepth);
  if (s.is_boolean() && s.get<bool>()) return any;  // `true`: anything
  check(s.is_object(), "JSON schema: a schema must be an object, not {}", s.dump().substr(0, 60));
  static const std::vector<std::string> known = {
      "type",    "properties", "required", "items",  "enum", "title", "description", "additionalProperties",
      "$schema", "default",    "examples", "strict", "name"};
  for (const auto& [key, value] : s.items())
    check(std::find(known.begin(), known.end(), key) != known.end(),
          "JSON schema: keyword '{}' is not supported (supported: type, properties, required, items, enum)", key);
  nodes.push_back(std::make_unique<JsonSchemaNode>());
  JsonSchemaNode* n = nodes.back().get();
  n->any = any;
  if (s.contains("type")) {
    const nlohmann::ordered_json& t = s["type"];
    n->types = 0;
    if (t.is_array()) {
      check(!t.empty(), "JSON schema: an empty 'type' list allows nothing");
      for (const auto& e : t) n->types |= type_bit(e);
    } else {
      n->types = type_bit(t);
    }
  }
  if (s.contains("enum")) {
    const nlohmann::ordered_json& e = s["enum"];
    check(e.is_array() && !e.empty() && e.size() <= kMaxChoices, "JSON schema: 'enum' must be a list of 1 to {} values",
          kMaxChoices);
    for (const auto& v : e) n->enum_literals.push_back(v.dump());
  }
  if (s.contains("additionalProperties")) {
    const nlohmann::ordered_json& a = s["additionalProperties"];
    check(a.is_boolean() && (!a.get<bool>() || !s.contains("properties")),
          "JSON schema: 'additionalProperties' beside 'properties' must be false (only the listed properties are "
          "written)");
  }
  if (s.contains("properties")) {
    const nlohmann::ordered_json& p = s["properties"];
    check(p.is_object(), "JSON schema: 'properties' must be an object");
    n->free_object = false;
    std::vector<std::string> required;
    if (s.contains("required")) {
      check(s["required"].is_array(), "JSON schema: 'required' must be a list of names");
      for (const auto& r : s["required"]) {
        check(r.is_string() && p.contains(r.get<std::string>()), "JSON schema: required '{}' is not in 'properties'",
              r.dump());
        required.push_back(r.get<std::string>());
      }
    }
    for (const auto& [name, sub] : p.items()) {
      n->properties.emplace_back(name, build(sub, nodes, any, depth + 1));
      n->required.push_back(std::find(required.begin(), required.end(), name) != required.end());
    }
    const int count = static_cast<int>(n->properties.size());
    n->key_choices.resize(static_cast<size_t>(count) + 1);
    n->key_property.resize(static_cast<size_t>(count) + 1);
    for (int i = 0; i < count; ++i)
      for (int j = i; j < count; ++j) {
        n->key_choices[i].push_back(nlohmann::json(n->properties[j].first).dump());
        n->key_property[i].push_back(j);
        check(n->key_choices[i].size() <= kMaxChoices, "JSON schema: more than {} optional properties in a row",
              kMaxChoices);
        if (n->required[j]) break;
      }
  } else if (s.contains("required")) {
    fail("JSON schema: 'required' without 'properties'");
  }
  if (s.contains("items")) n->items = build(s["items"], nodes, any, depth + 1);
  n->min_bytes = shortest_value(*n);
  return n;
}
}  // namespace

struct JsonConstraint::Frame {
  Kind kind = Kind::kValue;
  const JsonSchemaNode* node = nullptr;
  const std::vector<std::string>* choices = nullptr;  // literal candidates
  uint64_t alive = 0;                                 // literal: candidates still matching
  int pos = 0;                             // literal: bytes matched; string: content bytes; number: digits in this part
  int matched = -1;                        // literal: the candidate that matched (set when it pops)
  int state = 0;                           // string: escape state; number: position in the grammar; object/array: stage
  int next = 0;                            // object: first property not yet written; array: items written
  int property = -1;                       // object: the property whose value is being written
  bool key = false;                        // a string that is an object key (free objects)
  uint8_t cont = 0, lo = 0x80, hi = 0xBF;  // string: UTF-8 continuation bytes still due, and the next one's range
};

namespace {
using Frame = JsonConstraint::Frame;

Frame literal(const std::vector<std::string>* choices) {
  Frame f;
  f.kind = Kind::kLiteral;
  f.choices = choices;
  f.alive = choices->size() >= 64 ? ~uint64_t{0} : (uint64_t{1} << choices->size()) - 1;
  return f;
}
Frame value(const JsonSchemaNode* node) {
  Frame f;
  f.kind = Kind::kValue;
  f.node = node;
  return f;
}

// Number grammar states: 0 start, 1 after '-', 2 after a leading 0, 3 integer digits, 4 after '.', 5 fraction
// digits, 6 after 'e', 7 after the exponent sign, 8 exponent digits. Complete in 2, 3, 5, 8.
bool number_complete(int state) { return state == 2 || state == 3 || state == 5 || state == 8; }

Step step_literal(Frame& f, unsigned char c) {
  const std::vector<std::string>& ch = *f.choices;
  uint64_t next = 0;
  int complete = -1;
  for (size_t i = 0; i < ch.size(); ++i) {
    if (!(f.alive >> i & 1)) continue;
    if (static_cast<int>(ch[i].size()) == f.pos)
      complete = static_cast<int>(i);
    else if (static_cast<unsigned char>(ch[i][static_cast<size_t>(f.pos)]) == c)
      next |= uint64_t{1} << i;
  }
  if (next == 0) {
    if (complete < 0) return Step::kReject;
    f.matched = complete;
    return Step::kPopRefeed;
  }
  f.alive = next;
  ++f.pos;
  // Done when one candidate is matched whole and none goes on.
  int whole = -1;
  bool longer = false;
  for (size_t i = 0; i < ch.size(); ++i) {
    if (!(next >> i & 1)) continue;
    if (static_cast<int>(ch[i].size()) == f.pos)
      whole = static_cast<int>(i);
    else
      longer = true;
  }
  if (whole >= 0 && !longer) {
    f.matched = whole;
    return Step::kPop;
  }
  return Step::kConsumed;
}

Step step_string(Frame& f, unsigned char c) {
  if (f.state == 1) {  // after a backslash
    if (c == 'u')
      f.state = 5;  // four hex digits follow (5, 4, 3, 2 -> 0)
    else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't')
      f.state = 0;
    else
      return Step::kReject;
    ++f.pos;
    return Step::kConsumed;
  }
  if (f.state >= 2) {
    if (!std::isxdigit(c)) return Step::kReject;
    f.state = f.state == 2 ? 0 : f.state - 1;
    ++f.pos;
    return Step::kConsumed;
  }
  if (f.cont > 0) {  // inside a multi-byte UTF-8 character
    if (c < f.lo || c > f.hi) return Step::kReject;
    --f.cont;
    f.lo = 0x80;
    f.hi = 0xBF;
    ++f.pos;
    return Step::kConsumed;
  }
  if (c == '"') return Step::kPop;
  if (f.pos >= kMaxString || c < 0x20) return Step::kReject;
  if (c == '\\') {
    if (f.pos + 6 > kMaxString) return Step::kReject;  // room for the longest escape
    f.state = 1;
  } else if (c >= 0x80) {  // a UTF-8 lead byte (strict: no overlong forms, no surrogates, nothing above U+10FFFF)
    if (c >= 0xC2 && c <= 0xDF)
      f.cont = 1;
    else if (c >= 0xE0 && c <= 0xEF)
      f.cont = 2, f.lo = c == 0xE0 ? 0xA0 : 0x80, f.hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
      f.cont = 3, f.lo = c == 0xF0 ? 0x90 : 0x80, f.hi = c == 0xF4 ? 0x8F : 0xBF;
    else
      return Step::kReject;
    if (f.pos + 1 + f.cont > kMaxString) return Step::kReject;
  }
  ++f.pos;
  return Step::kConsumed;
}

Step step_number(Frame& f, unsigned char c) {
  const bool digit = c >= '0' && c <= '9';
  const bool integer = !(f.node->types & kNumber);
  auto take_digit = [&](int to) {
    if (f.pos >= (to == 8 ? kMaxExponentDigits : kMaxDigits)) return false;
    ++f.pos;
    f.state = to;
    return true;
  };
  bool ok = false;
  switch (f.state) {
    case 0: ok = c == '-' ? (f.state = 1, true) : c == '0' ? (f.state = 2, true) : digit && take_digit(3); break;
    case 1: ok = c == '0' ? (f.state = 2, true) : digit && take_digit(3); break;
    case 2:
    case 3:
      if (f.state == 3 && digit)
        ok = take_digit(3);
      else if (!integer && c == '.')
        ok = (f.state = 4, f.pos = 0, true);
      else if (!integer && (c == 'e' || c == 'E'))
        ok = (f.state = 6, f.pos = 0, true);
      break;
    case 4: ok = digit && take_digit(5); break;
    case 5:
      if (digit)
        ok = take_digit(5);
      else if (c == 'e' || c == 'E')
        ok = (f.state = 6, f.pos = 0, true);
      break;
    case 6: ok = (c == '+' || c == '-') ? (f.state = 7, true) : digit && take_digit(8); break;
    case 7: ok = digit && take_digit(8); break;
    case 8: ok = digit && take_digit(8); break;
  }
  if (ok) return Step::kConsumed;
  return number_complete(f.state) ? Step::kPopRefeed : Step::kReject;
}
}  // namespace

JsonConstraint::JsonConstraint() = default;
JsonConstraint::JsonConstraint(const JsonConstraint& other) = default;
JsonConstraint& JsonConstraint::operator=(const JsonConstraint& other) = default;
JsonConstraint::JsonConstraint(JsonConstraint&&) noexcept = default;
JsonConstraint& JsonConstraint::operator=(JsonConstraint&&) noexcept = default;
JsonConstraint::~JsonConstraint() = default;

JsonConstraint JsonConstraint::any_object() {
  auto nodes = std::make_shared<Nodes>();
  const JsonSchemaNode* any = build_any(*nodes);
  nodes->push_back(std::make_unique<JsonSchemaNode>());
  JsonSchemaNode* root = nodes->back().get();
  root->types = kObject;
  root->any = any;
  JsonConstraint c;
  c.stack_.push_back(value(root));
  c.nodes_ = std::move(nodes);
  return c;
}

JsonConstraint JsonConstraint::from_schema(const nlohmann::ordered_json& schema) {
  auto nodes = std::make_shared<Nodes>();
  const JsonSchemaNode* any = build_any(*nodes);
  const JsonSchemaNode* root = build(schema, *nodes, any, 0);
  JsonConstraint c;
  c.stack_.push_back(value(root));
  c.nodes_ = std::move(nodes);
  return c;
}

namespace {
bool feed(std::vector<Frame>& stack_, bool& done_, unsigned char c);
}

bool JsonConstraint::complete() const {
  return done_ || (stack_.size() == 1 && stack_.back().kind == Kind::kNumber && number_complete(stack_.back().state));
}

namespace {
// The fewest bytes that finish the frames of `stack` (top first), each frame's own part only.
int frame_bytes(const Frame& f) {
  switch (f.kind) {
    case Kind::kValue: return f.node->min_bytes;
    case Kind::kLiteral: {
      int best = 1 << 20;
      for (size_t i = 0; i < f.choices->size(); ++i)
        if (f.alive >> i & 1) best = std::min(best, static_cast<int>((*f.choices)[i].size()) - f.pos);
      return best;
    }
    case Kind::kString: {
      const int pending = f.cont > 0 ? f.cont : f.state == 1 ? 1 : f.state >= 2 ? f.state - 1 : 0;
      return pending + 1;  // and the closing quote
    }
    case Kind::kNumber: return number_complete(f.state) ? 0 : 1;
    case Kind::kObject: {
      const JsonSchemaNode& n = *f.node;
      if (n.free_object) {
        if (f.state == 4) return 5;          // "":0}
        if (f.state == 1) return 1 + 1 + 1;  // :0}
        return 1;                            // }
      }
      switch (f.state) {
        case 0: return required_from(n, f.next, false) + 1;
        case 3: return required_from(n, f.next, true) + 1;
        case 4: {  // a key must come: the cheapest candidate, then the required ones after it
          int best = 1 << 20;
          for (int p : n.key_property[static_cast<size_t>(f.next)])
            best = std::min(best, key_bytes(n, p) + n.properties[static_cast<size_t>(p)].second->min_bytes +
                                      required_from(n, p + 1, true));
          return best + 1;
        }
        case 1:  // the key is written (or being matched, above): ':' and the value, then the rest
          return (f.property >= 0 ? 1 + n.properties[static_cast<size_t>(f.property)].second->min_bytes +
                                        required_from(n, f.next, true)
                                  : 0) +
                 1;
        default: return required_from(n, f.next, true) + 1;  // 2: the value is the frame above
      }
    }
    case Kind::kArray: {
      const JsonSchemaNode* item = f.node->items != nullptr ? f.node->items : f.node->any;
      return f.state == 4 ? item->min_bytes + 1 : 1;
    }
  }
  return 0;
}

int stack_bytes(const std::vector<Frame>& stack, bool done) {
  if (done) return 0;
  int total = 0;
  for (const Frame& f : stack) total += frame_bytes(f);
  // An object whose key is still being matched (a literal above it) cannot know its property yet: count the
  // cheapest candidate's value.
  for (size_t i = 0; i + 1 < stack.size(); ++i) {
    const Frame& o = stack[i];
    const Frame& k = stack[i + 1];
    if (o.kind == Kind::kObject && o.state == 1 && !o.node->free_object && k.kind == Kind::kLiteral) {
      int best = 1 << 20;
      const std::vector<int>& props = o.node->key_property[static_cast<size_t>(o.next)];
      for (size_t c = 0; c < props.size(); ++c)
        if (k.alive >> c & 1)
          best = std::min(best, 1 + o.node->properties[static_cast<size_t>(props[c])].second->min_bytes +
                                    required_from(*o.node, props[c] + 1, true));
      total += best;
    } else if (o.kind == Kind::kObject && o.state == 1 && o.node->free_object && k.kind == Kind::kString) {
      total += 0;  // counted in frame_bytes (":0}")
    }
  }
  return total;
}

// The scratch stack of the calling thread: checking every token of a vocabulary reuses its capacity.
thread_local std::vector<Frame> t_scratch;
}  // namespace

bool JsonConstraint::accepts(const std::string& bytes) const {
  if (bytes.empty()) return false;
  t_scratch = stack_;
  bool done = done_;
  for (unsigned char c : bytes)
    if (!feed(t_scratch, done, c)) return false;
  return true;
}

int JsonConstraint::bytes_to_close() const { return stack_bytes(stack_, done_); }

int JsonConstraint::bytes_to_close_after(const std::string& bytes) const {
  if (!accepts(bytes)) return -1;
  bool done = done_;
  t_scratch = stack_;
  for (unsigned char c : bytes) feed(t_scratch, done, c);
  return stack_bytes(t_scratch, done);
}

bool JsonConstraint::advance(const std::string& bytes) {
  if (!accepts(bytes)) return false;
  for (unsigned char c : bytes) feed(stack_, done_, c);
  return true;
}

namespace {
bool feed(std::vector<Frame>& stack_, bool& done_, unsigned char c) {
  for (;;) {
    if (done_ || stack_.empty()) return false;
    Frame& f = stack_.back();
    Step r = Step::kReject;
    switch (f.kind) {
      case Kind::kLiteral: r = step_literal(f, c); break;
      case Kind::kString: r = step_string(f, c); break;
      case Kind::kNumber: r = step_number(f, c); break;
      case Kind::kValue: {
        const JsonSchemaNode* n = f.node;
        const bool room = static_cast<int>(stack_.size()) < kMaxDepth;
        if (!n->enum_literals.empty()) {
          f = literal(&n->enum_literals);
          r = Step::kRefeed;
        } else if (c == '{' && (n->types & kObject) && room) {
          f.kind = Kind::kObject;
          f.state = 0;
          r = Step::kConsumed;
        } else if (c == '[' && (n->types & kArray) && room) {
          f.kind = Kind::kArray;
          f.state = 0;
          r = Step::kConsumed;
        } else if (c == '"' && (n->types & kString)) {
          f.kind = Kind::kString;
          r = Step::kConsumed;
        } else if ((c == '-' || (c >= '0' && c <= '9')) && (n->types & (kNumber | kInteger))) {
          f.kind = Kind::kNumber;
          r = Step::kRefeed;
        } else if ((c == 't' || c == 'f') && (n->types & kBoolean)) {
          f = literal(&kBooleans);
          r = Step::kRefeed;
        } else if (c == 'n' && (n->types & kNull)) {
          f = literal(&kNulls);
          r = Step::kRefeed;
        }
        break;
      }
      case Kind::kObject: {
        const JsonSchemaNode* n = f.node;
        const int count = static_cast<int>(n->properties.size());
        auto may_close = [&] {
          if (n->free_object) return true;
          for (int i = f.next; i < count; ++i)
            if (n->required[i]) return false;
          return true;
        };
        if ((f.state == 0 || f.state == 3) && c == '}' && may_close()) {
          r = Step::kPop;
        } else if ((f.state == 0 || f.state == 4) && c == '"') {
          if (n->free_object) {
            Frame key;
            key.kind = Kind::kString;
            key.key = true;
            f.state = 1;
            stack_.push_back(key);  // f is invalid from here on
            r = Step::kConsumed;
          } else if (f.next < count) {
            f.state = 1;
            f.property = -1;  // known once the key is matched
            stack_.push_back(literal(&n->key_choices[f.next]));
            r = Step::kRefeed;
          }
        } else if (f.state == 1 && c == ':') {
          f.state = 2;
          const JsonSchemaNode* sub = n->free_object ? n->any : n->properties[f.property].second;
          stack_.push_back(value(sub));
          r = Step::kConsumed;
        } else if (f.state == 3 && c == ',' && (n->free_object || f.next < count)) {
          f.state = 4;
          r = Step::kConsumed;
        }
        break;
      }
      case Kind::kArray: {
        const JsonSchemaNode* item = f.node->items != nullptr ? f.node->items : f.node->any;
        if ((f.state == 0 || f.state == 3) && c == ']') {
          r = Step::kPop;
        } else if (f.state == 3 && c == ',' && f.next < kMaxItems) {
          f.state = 4;
          r = Step::kConsumed;
        } else if (f.state == 0 || f.state == 4) {
          f.state = 2;
          ++f.next;
          stack_.push_back(value(item));
          r = Step::kRefeed;
        }
        break;
      }
    }
    switch (r) {
      case Step::kConsumed: return true;
      case Step::kReject: return false;
      case Step::kRefeed: continue;
      case Step::kPop:
      case Step::kPopRefeed: {
        const Frame child = stack_.back();
        stack_.pop_back();
        if (stack_.empty()) {
          done_ = true;
        } else {
          Frame& parent = stack_.back();
          if (parent.kind == Kind::kObject && parent.state == 1) {  // a key ended
            if (!parent.node->free_object) {
              const int prop = parent.node->key_property[parent.next][child.matched];
              parent.property = prop;
              parent.next = prop + 1;
            } else {
              parent.property = -1;
            }
          } else if (parent.kind == Kind::kObject || parent.kind == Kind::kArray) {
            parent.state = 3;  // a value ended
          }
        }
        if (r == Step::kPop) return true;
        continue;
      }
    }
  }
}
}  // namespace

}  // namespace dsmoe
