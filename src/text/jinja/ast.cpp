// The chat-template syntax tree's evaluation (see ast.h): what each expression node computes and what each
// statement node renders, with Jinja's scoping (a for-loop iteration is a scope; `if` is not) and loop.* variables.
#include "text/jinja/ast.h"

#include <algorithm>

namespace dsmoe::text::jinja {

CallArgs ArgExprs::eval(Context& ctx) const {
  CallArgs a;
  for (const auto& e : pos) a.pos.push_back(e->eval(ctx));
  for (const auto& [k, e] : kw) a.kw.emplace_back(k, e->eval(ctx));
  return a;
}

// --- Expression nodes ---

Value Literal::eval(Context&) const { return value; }

Value ListExpr::eval(Context& ctx) const {
  List out;
  for (const auto& e : items) out.push_back(e->eval(ctx));
  return is_tuple ? tuple(std::move(out)) : list(std::move(out));
}

Value DictExpr::eval(Context& ctx) const {
  Dict out;
  for (const auto& [k, v] : items) {
    const Value key = k->eval(ctx);
    if (key.kind != Kind::String) eval_fail("dict keys must be strings, got {}", type_name(key));
    Value val = v->eval(ctx);
    auto it = std::find_if(out.begin(), out.end(), [&](auto& kv) { return kv.first == key.s; });
    if (it != out.end())
      it->second = std::move(val);
    else
      out.emplace_back(key.s, std::move(val));
  }
  return dict(std::move(out));
}

Value NameExpr::eval(Context& ctx) const {
  Value v = ctx.lookup(name);
  if (v.kind == Kind::Undefined && is_function_name(name)) {  // `strftime_now is defined` holds, as in HF
    v.kind = Kind::Function;
    v.s = name;
  }
  return v;
}

std::string NameExpr::describe() const { return name; }

Value AttrExpr::eval(Context& ctx) const { return get_item(obj->eval(ctx), string(name), describe()); }

std::string AttrExpr::describe() const { return obj->describe() + "." + name; }

Value ItemExpr::eval(Context& ctx) const {
  const Value o = obj->eval(ctx);
  const Value k = index->eval(ctx);
  return get_item(o, k, obj->describe() + "[" + repr(k) + "]");
}

std::string ItemExpr::describe() const { return obj->describe() + "[...]"; }

Value SliceExpr::eval(Context& ctx) const {
  const Value o = obj->eval(ctx);
  const Value a = start ? start->eval(ctx) : Value{};
  const Value b = stop ? stop->eval(ctx) : Value{};
  const Value c = step ? step->eval(ctx) : Value{};
  return slice(o, a, b, c);
}

Value UnaryExpr::eval(Context& ctx) const {
  const Value v = operand->eval(ctx);
  if (op == "not") return boolean(!truthy(v));
  if (v.kind == Kind::Undefined) undefined_fail(v);
  if (!is_number(v)) eval_fail("bad operand type for unary {}: {}", op, type_name(v));
  if (op == "+") return v.kind == Kind::Float ? v : integer(as_int(v));
  if (v.kind == Kind::Float) return real(-v.f);
  if (as_int(v) == INT64_MIN) eval_fail("integer overflow");
  return integer(-as_int(v));
}

Value BinaryExpr::eval(Context& ctx) const {
  const Value a = left->eval(ctx);
  const Value b = right->eval(ctx);
  if (op == "~") return string(to_str(a) + to_str(b));
  return arithmetic(op, a, b);
}

Value LogicExpr::eval(Context& ctx) const {
  Value a = left->eval(ctx);
  if (truthy(a) != is_and) return a;
  return right->eval(ctx);
}

bool CompareExpr::holds(const std::string& op, const Value& a, const Value& b) {
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

Value CompareExpr::eval(Context& ctx) const {
  Value a = first->eval(ctx);
  for (const auto& [op, e] : rest) {
    Value b = e->eval(ctx);
    if (!holds(op, a, b)) return boolean(false);
    a = std::move(b);
  }
  return boolean(true);
}

Value CondExpr::eval(Context& ctx) const {
  if (truthy(cond->eval(ctx))) return then->eval(ctx);
  return otherwise ? otherwise->eval(ctx) : undefined("conditional expression without else");
}

Value FilterExpr::eval(Context& ctx) const {
  const Value v = obj->eval(ctx);
  return apply_filter(name, v, args.eval(ctx));
}

Value TestExpr::eval(Context& ctx) const {
  const Value v = obj->eval(ctx);
  const CallArgs a = args.eval(ctx);
  if (!a.kw.empty()) eval_fail("test '{}' takes no keyword arguments", name);
  return boolean(run_test(name, v, a.pos) != negate);
}

Value CallExpr::eval(Context& ctx) const { return call_function(name, args.eval(ctx)); }

Value MethodExpr::eval(Context& ctx) const {
  const Value o = obj->eval(ctx);
  const CallArgs a = args.eval(ctx);
  if (o.kind == Kind::String) return string_method(o.s, name, a);
  if (o.kind == Kind::Dict && !o.is_namespace) return dict_method(*o.dict, name, a);
  if (o.kind == Kind::Undefined) undefined_fail(o);
  eval_fail("{} has no method '{}'", type_name(o), name);
}

// --- Statement nodes ---

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

namespace {

void append_output(std::string& out, const std::string& text) {
  if (out.size() + text.size() > kMaxString) eval_fail("rendered output larger than {} bytes", kMaxString);
  out += text;
}

}  // namespace

Flow TextNode::render(Context&, std::string& out) const {
  append_output(out, text);
  return Flow::Normal;
}

Flow OutputNode::render(Context& ctx, std::string& out) const {
  append_output(out, to_str(expr->eval(ctx)));
  return Flow::Normal;
}

Flow IfNode::render(Context& ctx, std::string& out) const {
  for (const auto& [cond, body] : branches)
    if (truthy(cond->eval(ctx))) return render_body(body, ctx, out);
  return render_body(otherwise, ctx, out);
}

void ForNode::bind_targets(Context& ctx, const Value& item) const {
  if (targets.size() == 1) return ctx.assign(targets[0], item);
  // Python unpacks any iterable: a list or tuple, a string's characters, a dict's keys.
  const bool unpackable =
      item.kind == Kind::List || item.kind == Kind::String || (item.kind == Kind::Dict && !item.is_namespace);
  const List parts = unpackable ? iterate(item) : List{};
  if (!unpackable || parts.size() != targets.size())
    eval_fail("cannot unpack {} into {} loop variables", type_name(item), targets.size());
  for (size_t k = 0; k < targets.size(); ++k) ctx.assign(targets[k], parts[k]);
}

Value ForNode::loop_info(const List& items, size_t k) {
  const int64_t n = static_cast<int64_t>(items.size()), i = static_cast<int64_t>(k);
  return dict({{"index0", integer(i)},
               {"index", integer(i + 1)},
               {"revindex0", integer(n - i - 1)},
               {"revindex", integer(n - i)},
               {"first", boolean(i == 0)},
               {"last", boolean(i == n - 1)},
               {"length", integer(n)},
               {"previtem", k > 0 ? items[k - 1] : undefined("loop.previtem")},
               {"nextitem", i + 1 < n ? items[k + 1] : undefined("loop.nextitem")},
               {"depth", integer(1)},  // loops are never recursive here
               {"depth0", integer(0)}});
}

// Each iteration runs in a fresh scope holding the loop variables, `loop`, and whatever the body sets: as in
// Jinja, a `set` inside the loop lasts until the end of its iteration.
struct ForNode::IterationScope {
  Context& ctx;
  explicit IterationScope(Context& c) : ctx(c) { ctx.scopes.emplace_back(); }
  ~IterationScope() { ctx.scopes.pop_back(); }
};

Flow ForNode::render(Context& ctx, std::string& out) const {
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

Flow SetNode::render(Context& ctx, std::string&) const {
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

Flow LoopControlNode::render(Context&, std::string&) const { return flow; }

Flow BlockNode::render(Context& ctx, std::string& out) const { return render_body(body, ctx, out); }

}  // namespace dsmoe::text::jinja
