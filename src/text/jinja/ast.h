// The chat-template syntax tree: the render context (scopes), expression nodes (literals, names, attributes,
// indexing, slicing, operators, conditionals, filters, tests, calls, methods) and statement nodes (text, output,
// if, for, set, break/continue, generation). The parser (parser.h) builds it; each node evaluates or renders
// itself (ast.cpp).
// Internal to src/text (the public API is text/chat_template.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "text/jinja/builtins.h"
#include "text/jinja/value.h"

namespace dsmoe::text::jinja {

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

struct ArgExprs {
  std::vector<ExprPtr> pos;
  std::vector<std::pair<std::string, ExprPtr>> kw;

  CallArgs eval(Context& ctx) const;
};

// --- Expression nodes ---

struct Literal : Expr {
  Value value;
  Value eval(Context&) const override;
};

struct ListExpr : Expr {  // [a, b] or (a, b)
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  Value eval(Context& ctx) const override;
};

struct DictExpr : Expr {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
  Value eval(Context& ctx) const override;
};

struct NameExpr : Expr {
  std::string name;
  Value eval(Context& ctx) const override;
  std::string describe() const override;
};

struct AttrExpr : Expr {  // obj.name: a dict key (dicts are the only objects here)
  ExprPtr obj;
  std::string name;
  Value eval(Context& ctx) const override;
  std::string describe() const override;
};

struct ItemExpr : Expr {  // obj[index]
  ExprPtr obj, index;
  Value eval(Context& ctx) const override;
  std::string describe() const override;
};

struct SliceExpr : Expr {  // obj[start:stop:step]
  ExprPtr obj, start, stop, step;
  Value eval(Context& ctx) const override;
};

struct UnaryExpr : Expr {
  std::string op;  // not, -, +
  ExprPtr operand;
  Value eval(Context& ctx) const override;
};

struct BinaryExpr : Expr {  // + - * / // % ** ~
  std::string op;
  ExprPtr left, right;
  Value eval(Context& ctx) const override;
};

struct LogicExpr : Expr {  // and / or: short-circuit, returning an operand as Python does
  bool is_and;
  ExprPtr left, right;
  Value eval(Context& ctx) const override;
};

struct CompareExpr : Expr {  // a < b <= c ... chains as in Python
  ExprPtr first;
  std::vector<std::pair<std::string, ExprPtr>> rest;
  static bool holds(const std::string& op, const Value& a, const Value& b);
  Value eval(Context& ctx) const override;
};

struct CondExpr : Expr {  // then if cond else otherwise (no else: undefined)
  ExprPtr then, cond, otherwise;
  Value eval(Context& ctx) const override;
};

struct FilterExpr : Expr {
  ExprPtr obj;
  std::string name;
  ArgExprs args;
  Value eval(Context& ctx) const override;
};

struct TestExpr : Expr {
  ExprPtr obj;
  std::string name;
  bool negate = false;
  ArgExprs args;
  Value eval(Context& ctx) const override;
};

struct CallExpr : Expr {  // a global function: raise_exception, namespace, range
  std::string name;
  ArgExprs args;
  Value eval(Context& ctx) const override;
};

struct MethodExpr : Expr {  // obj.method(args)
  ExprPtr obj;
  std::string name;
  ArgExprs args;
  Value eval(Context& ctx) const override;
};

// --- Statement nodes ---

enum class Flow { Normal, Break, Continue };

struct Node {
  int line = 0;
  virtual ~Node() = default;
  virtual Flow render(Context& ctx, std::string& out) const = 0;
};
using Body = std::vector<std::unique_ptr<Node>>;

// Renders each node in turn, stopping at a break/continue; an evaluation error becomes a dsmoe::Error naming the
// line of the statement that raised it.
Flow render_body(const Body& body, Context& ctx, std::string& out);

struct TextNode : Node {
  std::string text;
  Flow render(Context&, std::string& out) const override;
};

struct OutputNode : Node {
  ExprPtr expr;
  Flow render(Context& ctx, std::string& out) const override;
};

struct IfNode : Node {
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body otherwise;
  Flow render(Context& ctx, std::string& out) const override;
};

struct ForNode : Node {
  std::vector<std::string> targets;
  ExprPtr iterable, filter;
  Body body, otherwise;

  void bind_targets(Context& ctx, const Value& item) const;
  static Value loop_info(const List& items, size_t k);
  struct IterationScope;
  Flow render(Context& ctx, std::string& out) const override;
};

struct SetNode : Node {
  std::string name, attr;  // attr: `set ns.attr = ...`
  ExprPtr value;
  Flow render(Context& ctx, std::string&) const override;
};

struct LoopControlNode : Node {
  Flow flow;
  Flow render(Context&, std::string&) const override;
};

struct BlockNode : Node {  // {% generation %}: HF marks assistant text with it; it renders its body unchanged
  Body body;
  Flow render(Context& ctx, std::string& out) const override;
};

}  // namespace dsmoe::text::jinja
