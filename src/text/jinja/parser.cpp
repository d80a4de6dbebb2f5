// The chat-template parser (see parser.h): recursive descent over the segments, Jinja's operator precedence
// (loosest first):
//    a if c else b | or | and | not | comparisons, in | + - | ~ | * / // % | ** | unary - + |
//    primary with postfix (.attr [index] (call)) and filters/tests (| f, is t)
#include "text/jinja/parser.h"

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

namespace dsmoe::text::jinja {
namespace {

const std::vector<std::string_view> kUnsupportedTags = {
    "macro",    "endmacro", "call",       "endcall",       "filter", "endfilter", "block",
    "endblock", "extends",  "include",    "import",        "from",   "raw",       "endraw",
    "with",     "endwith",  "autoescape", "endautoescape", "do",     "trans",     "endset"};
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
      if (peek().kind == TokKind::Op && one_of(peek().text, {"==", "!=", "<", ">", "<=", ">="}))
        op = advance().text;
      else if (accept_name("in"))
        op = "in";
      else if (peek_name("not") && peek_name("in", 1)) {
        advance(), advance();
        op = "not in";
      } else
        break;
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
      if (name == "true" || name == "True")
        lit->value = boolean(true);
      else if (name == "false" || name == "False")
        lit->value = boolean(false);
      else if (name == "none" || name == "None")
        lit->value = none();
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
        if (peek_op("("))
          n->args = parse_args();
        else if (starts_test_argument())
          n->args.pos.push_back(parse_postfix(parse_primary()));  // `is divisibleby 3`
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

Body parse(std::vector<Segment> segs) { return Parser(std::move(segs)).parse_template(); }

}  // namespace dsmoe::text::jinja
