// Tests for src/text/chat_template: the DeepSeek template, other HF templates (ChatML, Llama-2), the Jinja subset
// (expressions, loops, scoping, filters, whitespace control) and every error path. Expected strings were checked
// against Jinja2 3.1 configured as transformers configures it (trim_blocks, lstrip_blocks, loopcontrols).
// Jinja2Cases renders the ~1,200 cases of tests/data/jinja_cases.jsonl, which Jinja2 itself rendered
// (tools/reference/jinja_cases.py; tests/jinja_compat.sh regenerates them and runs this test on the fresh copy).
#include "text/chat_template.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "expect_error.h"
#include "shared_data.h"

namespace {

using namespace dsmoe::text;
using nlohmann::json;

const std::string kBos = "<｜begin▁of▁sentence｜>";
const std::string kEos = "<｜end▁of▁sentence｜>";

// Runs f, expecting a dsmoe::Error whose one-line message contains every string in `parts`.

std::string render(const std::string& tmpl, const json& vars = json::object()) {
  return ChatTemplate::from_jinja(tmpl).render(vars);
}

const std::vector<ChatMessage> kTwoTurns = {
    {"user", "Who are you?"}, {"assistant", "I am DeepSeek Chat."}, {"user", "What is 2+2?"}};

// ---------------------------------------------------------------------------------------------------------------
// DeepSeek

TEST(DeepSeekTemplate, MultiTurnWithGenerationPrompt) {
  const std::string out = ChatTemplate::deepseek().render(kTwoTurns, true, kBos, kEos);
  EXPECT_EQ(out,
            kBos + "User: Who are you?\n\nAssistant: I am DeepSeek Chat." + kEos + "User: What is 2+2?\n\nAssistant:");
}

TEST(DeepSeekTemplate, WithoutGenerationPrompt) {
  std::vector<ChatMessage> msgs = kTwoTurns;
  msgs.push_back({"assistant", "4"});
  const std::string out = ChatTemplate::deepseek().render(msgs, false, kBos, kEos);
  EXPECT_EQ(out, kBos + "User: Who are you?\n\nAssistant: I am DeepSeek Chat." + kEos +
                     "User: What is 2+2?\n\nAssistant: 4" + kEos);
}

TEST(DeepSeekTemplate, SystemMessage) {
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_TRUE(chat_has_system_message(msgs));
  EXPECT_FALSE(chat_has_system_message(kTwoTurns));
  EXPECT_EQ(ChatTemplate::deepseek().render(msgs, true, kBos, kEos), kBos + "Be brief.\n\nUser: Hi\n\nAssistant:");
}

TEST(DeepSeekTemplate, EmptyConversationAndSpecialCharacters) {
  EXPECT_EQ(ChatTemplate::deepseek().render({}, false, kBos, kEos), kBos);
  EXPECT_EQ(ChatTemplate::deepseek().render({}, true, "<s>", "</s>"), "<s>Assistant:");
  // Content is data, never template syntax.
  const std::vector<ChatMessage> msgs = {{"user", "{{ x }} {% if %} ' \" \\n ü 你好"}};
  EXPECT_EQ(ChatTemplate::deepseek().render(msgs, false, "", ""), "User: {{ x }} {% if %} ' \" \\n ü 你好\n\n");
}

TEST(DeepSeekTemplate, AddGenerationPromptDefaultsToFalse) {
  // The template sets add_generation_prompt = false when the caller does not define it.
  const json vars = {
      {"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
  EXPECT_EQ(ChatTemplate::deepseek().render(vars), "<s>User: Hi\n\n");
}

TEST(DeepSeekTemplate, MatchesTokenizerConfigFile) {
  const std::filesystem::path file =
      std::filesystem::path(DSMOE_SHARED_DIR) / "tokenizers/deepseek-llm/tokenizer_config.json";
  DSMOE_REQUIRE_SHARED_FILE(file.string());
  std::ifstream in(file);
  const json config = json::parse(in);
  const std::string source = config.at("chat_template");
  EXPECT_EQ(ChatTemplate::deepseek().source(), source) << "the built-in copy must be verbatim";
  const ChatTemplate from_file = ChatTemplate::from_jinja(source);
  const std::string bos = config.at("bos_token"), eos = config.at("eos_token");
  const std::vector<std::vector<ChatMessage>> conversations = {
      {}, kTwoTurns, {{"system", "S"}, {"user", "U"}, {"assistant", "A"}}};
  for (const auto& msgs : conversations)
    for (bool gen : {false, true})
      EXPECT_EQ(from_file.render(msgs, gen, bos, eos), ChatTemplate::deepseek().render(msgs, gen, bos, eos));
}

// ---------------------------------------------------------------------------------------------------------------
// Other HF templates

const char* const kChatML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

TEST(OtherTemplates, ChatML) {
  const ChatTemplate t = ChatTemplate::from_jinja(kChatML);
  const std::vector<ChatMessage> msgs = {{"system", "You are helpful."}, {"user", "Hello"}, {"assistant", "Hi!"}};
  const std::string body =
      "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
      "<|im_start|>assistant\nHi!<|im_end|>\n";
  EXPECT_EQ(t.render(msgs, false, "", ""), body);
  EXPECT_EQ(t.render(msgs, true, "", ""), body + "<|im_start|>assistant\n");
}

// The Llama-2 chat template as published in meta-llama's tokenizer_config.json (with '\n' escapes in the Jinja).
const char* const kLlama2 =
    R"({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})";

TEST(OtherTemplates, Llama2) {
  const ChatTemplate t = ChatTemplate::from_jinja(kLlama2);
  const std::vector<ChatMessage> msgs = {
      {"system", "Be kind."}, {"user", " Hi "}, {"assistant", "Hello."}, {"user", "Bye"}};
  EXPECT_EQ(t.render(msgs, false, "<s>", "</s>"),
            "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\n Hi [/INST] Hello. </s><s>[INST] Bye [/INST]");
  EXPECT_EQ(t.render({{"user", "Q"}}, false, "<s>", "</s>"), "<s>[INST] Q [/INST]");
}

TEST(OtherTemplates, Llama2RaisesOnNonAlternatingRoles) {
  const ChatTemplate t = ChatTemplate::from_jinja(kLlama2);
  expect_error(
      [&] {
        t.render({{"user", "a"}, {"user", "b"}}, false, "<s>", "</s>");
      },
      {"Conversation roles must alternate user/assistant/user/assistant/..."});
  expect_error([&] { t.render({{"assistant", "a"}}, false, "<s>", "</s>"); }, {"must alternate"});
  // Empty conversation: messages[0] is undefined and taking ['role'] of it is an error, as in Jinja.
  expect_error([&] { t.render({}, false, "<s>", "</s>"); }, {"line 1", "'messages[0]' is undefined"});
}

TEST(OtherTemplates, RaiseExceptionMessageIsTheTemplates) {
  expect_error([] { render("{{ raise_exception('custom: ' ~ 42) }}"); }, {"chat template: custom: 42"});
}

// A tool-aware template in the style of recent HF models: namespace(), tojson, selectattr, loop filters.
TEST(OtherTemplates, NamespaceToolsStyle) {
  const std::string tmpl = R"({%- set ns = namespace(system='', first=true) -%}
{%- for m in messages if m.role == 'system' -%}
  {%- set ns.system = ns.system + m.content -%}
{%- endfor -%}
{%- if tools is defined and tools -%}
<tools>{{ tools | tojson }}</tools>
{% endif -%}
{%- if ns.system %}[SYS]{{ ns.system }}[/SYS]
{% endif -%}
{%- for m in messages | rejectattr('role', 'equalto', 'system') -%}
{{ loop.index }}/{{ loop.length }} {{ m.role | upper }}: {{ m.content | trim }}
{% endfor -%}
{%- if add_generation_prompt %}ASSISTANT:{% endif %})";
  const json vars = {{"messages",
                      {{{"role", "system"}, {"content", "A"}},
                       {{"role", "user"}, {"content", "  hi  "}},
                       {{"role", "system"}, {"content", "B"}},
                       {{"role", "assistant"}, {"content", "yo"}}}},
                     {"tools", {{{"name", "calc"}, {"args", {1, 2.5, nullptr, true}}}}},
                     {"add_generation_prompt", true}};
  EXPECT_EQ(render(tmpl, vars),
            "<tools>[{\"args\": [1, 2.5, null, true], \"name\": \"calc\"}]</tools>\n"
            "[SYS]AB[/SYS]\n"
            "1/2 USER: hi\n"
            "2/2 ASSISTANT: yo\n"
            "ASSISTANT:");
}

// Dicts keep the key order of an ordered_json (as Python keeps insertion order); tool schemas print as written.
TEST(OtherTemplates, OrderedJsonKeepsKeyOrder) {
  const ChatTemplate t = ChatTemplate::from_jinja("{{ tool | tojson }}");
  const std::string text = R"({"tool": {"name": "f", "description": "d", "a": 1}})";
  EXPECT_EQ(t.render(nlohmann::ordered_json::parse(text)), R"({"name": "f", "description": "d", "a": 1})");
  EXPECT_EQ(t.render(json::parse(text)), R"({"a": 1, "description": "d", "name": "f"})");  // json sorts keys
}

// ---------------------------------------------------------------------------------------------------------------
// The Jinja subset

TEST(Jinja, ExpressionsAndOperators) {
  EXPECT_EQ(
      render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}"),
      "7 9 3 -4 2 3.5 1024");
  EXPECT_EQ(render("{{ 'a' + 'b' }} {{ 'x' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ 'a' 'b' }}"), "ab x1None ababab ab");
  EXPECT_EQ(render("{{ 1 < 2 }} {{ 2 < 1 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}"),
            "True False True True True False");
  EXPECT_EQ(render("{{ true and false }} {{ true or false }} {{ not true }} {{ 0 or 'x' }} {{ '' and 1 }}"),
            "False True False x ");
  EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }}"),
            "True True True True");
  EXPECT_EQ(render("{{ 'yes' if x else 'no' }} {{ 'yes' if not x else 'no' }}", {{"x", false}}), "no yes");
  EXPECT_EQ(render("{{ [1, 'a', [true, none]] }} {{ {'k': 'v'} }}"), "[1, 'a', [True, None]] {'k': 'v'}");
  EXPECT_EQ(render("{{ 'it\\'s' }}|{{ \"tab\\there\" }}|{{ '\\u00fc' }}"), "it's|tab\there|ü");
  EXPECT_EQ(render("{{ (1,) }} {{ (1, 2) == [1, 2] }} {{ 2.5 is odd }} {{ [1, nope] }}"),
            "(1,) False False [1, Undefined]");
}

TEST(Jinja, IndexingAndSlicing) {
  const json vars = {{"m", {{"role", "user"}, {"content", "hey"}}}, {"xs", {10, 20, 30, 40}}, {"s", "héllo"}};
  EXPECT_EQ(render("{{ m['role'] }} {{ m.role }} {{ xs[0] }} {{ xs[-1] }} {{ xs.1 }} {{ s[1] }}", vars),
            "user user 10 40 20 é");
  EXPECT_EQ(render("{{ xs[1:] }} {{ xs[:2] }} {{ xs[::-1] }} {{ xs[1:-1] }} {{ s[1:3] }} {{ s[::-1] }}", vars),
            "[20, 30, 40] [10, 20] [40, 30, 20, 10] [20, 30] él olléh");
  // Missing keys and indices are undefined: they print as nothing and test as not defined.
  EXPECT_EQ(render("[{{ m.nope }}][{{ xs[9] }}] {{ m.nope is defined }} {{ m.role is defined }}", vars),
            "[][] False True");
}

TEST(Jinja, Loops) {
  const json vars = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(render("{% for x in xs %}{{ loop.index0 }}{{ loop.index }}{{ x }}{% if loop.first %}F{% endif %}"
                   "{% if loop.last %}L{% endif %},{% endfor %}",
                   vars),
            "01aF,12b,23cL,");
  EXPECT_EQ(render("{% for x in xs %}{{ loop.revindex }}{{ loop.length }}{% endfor %}", vars), "332313");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in xs if x != 'b' %}{{ loop.index }}{{ x }}{% endfor %}", vars), "1a2c");
  EXPECT_EQ(render("{% for x in xs %}{% if x == 'b' %}{% continue %}{% endif %}{% if x == 'c' %}{% break %}"
                   "{% endif %}{{ x }}{% endfor %}",
                   vars),
            "a");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;");
  EXPECT_EQ(render("{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(5, 1, -2) %}{{ i }}{% endfor %}"),
            "01253");
  EXPECT_EQ(render("{% for x in xs %}{% for y in [1, 2] %}{{ x }}{{ y }}{{ loop.index }} {% endfor %}"
                   "{{ loop.index }};{% endfor %}",
                   vars),
            "a11 a22 1;b11 b22 2;c11 c22 3;");
}

TEST(Jinja, SetScoping) {
  // `set` in a loop does not leak out of it (Jinja's rule); namespace() carries values out; `if` has no scope.
  EXPECT_EQ(render("{% set n = 0 %}{% for x in [1, 2] %}{% set n = n + x %}{{ n }}{% endfor %}|{{ n }}"), "12|0");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for x in [1, 2] %}{% set ns.n = ns.n + x %}{% endfor %}"
                   "{{ ns.n }}"),
            "3");
  EXPECT_EQ(render("{% if true %}{% set a = 'in' %}{% endif %}{{ a }}"), "in");
  EXPECT_EQ(render("{% set x = 'outer' %}{% for x in ['loop'] %}{{ x }}{% endfor %}{{ x }}"), "loopouter");
  // A `set` in a loop body lasts until the end of its iteration.
  EXPECT_EQ(render("{% set y = 5 %}{% for x in [1, 2] %}[{{ y }}]{% set y = x %}[{{ y }}]{% endfor %}"),
            "[5][1][5][2]");
}

TEST(Jinja, FiltersTestsAndMethods) {
  const json vars = {{"s", "  Hello World  "}, {"xs", {3, 1, 2}}, {"d", {{"b", 1}, {"a", "x\"y"}}}};
  EXPECT_EQ(
      render("[{{ s | trim }}] {{ s | length }} {{ xs | length }} {{ s | trim | upper }} {{ s | lower | trim }}", vars),
      "[Hello World] 15 3 HELLO WORLD hello world");
  EXPECT_EQ(render("{{ xs | join(', ') }} {{ xs | first }} {{ xs | last }} {{ xs | reverse | list }}", vars),
            "3, 1, 2 3 2 [2, 1, 3]");
  EXPECT_EQ(render("{{ nope | default('dflt') }} {{ '' | default('e', true) }} {{ 'x' | default('y') }}"), "dflt e x");
  EXPECT_EQ(render("{{ d | tojson }} {{ 'ü\\n' | tojson }} {{ '42' | int + 1 }} {{ 3 | string + '!' }}", vars),
            "{\"a\": \"x\\\"y\", \"b\": 1} \"ü\\n\" 43 3!");
  EXPECT_EQ(render("{{ d | tojson(indent=2) }}", vars), "{\n  \"a\": \"x\\\"y\",\n  \"b\": 1\n}");
  EXPECT_EQ(render("{{ 'a-b-c'.split('-') }} {{ ' x y '.split() }} {{ 'abc'.startswith('ab') }} "
                   "{{ 'abc'.endswith(('x', 'c')) }} {{ 'a b'.replace(' ', '_') }} {{ '-'.join(['1', '2']) }}"),
            "['a', 'b', 'c'] ['x', 'y'] True True a_b 1-2");
  EXPECT_EQ(render("{{ d.get('a') }} {{ d.get('zz', 0) }} {{ d.keys() | list }} {{ 'hello world'.title() }}", vars),
            "x\"y 0 ['a', 'b'] Hello World");
  EXPECT_EQ(render("{{ x is defined }} {{ x is not defined }} {{ none is none }} {{ 3 is odd }} {{ 4 is even }} "
                   "{{ 'a' is string }} {{ xs is iterable }} {{ 6 is divisibleby 3 }} {{ d is mapping }}",
                   vars),
            "False True True True True True True True True");
  EXPECT_EQ(render("{{ not x is defined }}"), "True");  // `is` binds tighter than `not`
  // HF's globals are defined names (Llama 3.x templates test `strftime_now is defined` before calling it).
  EXPECT_EQ(render("{{ raise_exception is defined }} {{ strftime_now is defined }} {{ strftime_now('%Y') | length }}"),
            "True True 4");
  EXPECT_EQ(render("{{ [1, 2, 3, 4] | select('odd') | list }} {{ [{'r': 'a'}, {'r': 'b'}] | map(attribute='r') | "
                   "join }}"),
            "[1, 3] ab");
}

TEST(Jinja, WhitespaceControl) {
  // Explicit stripping with '-' on either side of any tag.
  EXPECT_EQ(render("a  {{- 'b' -}}  c"), "abc");
  EXPECT_EQ(render("a \n {%- if true -%} \n b \n {%- endif -%} \n c"), "abc");
  EXPECT_EQ(render("a {#- comment -#} b"), "ab");
  EXPECT_EQ(render("a {# comment #} b"), "a  b");
  // trim_blocks: a block tag eats the newline after it; lstrip_blocks: indentation before a block tag goes.
  EXPECT_EQ(render("{% if true %}\n  x\n{% endif %}\ny"), "  x\ny");
  EXPECT_EQ(render("<\n    {% if true %}\nA\n    {% endif %}\n>"), "<\nA\n>");
  EXPECT_EQ(render("{% for i in [1, 2] %}\n  - {{ i }}\n{% endfor %}\n"), "  - 1\n  - 2\n");
  // Expressions are not blocks: their newline stays; '+' turns lstrip off.
  EXPECT_EQ(render("{{ 'a' }}\nb"), "a\nb");
  EXPECT_EQ(render("  {%+ if true %}x{% endif %}"), "  x");
  // Indentation after text on the same line is not stripped.
  EXPECT_EQ(render("a  {% if true %}x{% endif %}"), "a  x");
  // One trailing newline of the template is dropped, as Jinja does.
  EXPECT_EQ(render("x\n"), "x");
  EXPECT_EQ(render("x\n\n"), "x\n");
  // Jinja turns "\r\n" into "\n" before anything else.
  EXPECT_EQ(render("{% if true %}\r\nx\r\n{% endif %}\r\n"), "x\n");
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

TEST(Errors, BadTemplates) {
  expect_error([] { ChatTemplate::from_jinja("{% if x %}yes"); }, {"line 1", "unclosed '{% if %}'", "endif"});
  expect_error([] { ChatTemplate::from_jinja("a\n{% for x in y %}{{ x }}"); }, {"line 2", "unclosed", "endfor"});
  expect_error([] { ChatTemplate::from_jinja("{{ x "); }, {"unclosed '{{'"});
  expect_error([] { ChatTemplate::from_jinja("{% if x "); }, {"unclosed '{%'"});
  expect_error([] { ChatTemplate::from_jinja("{# note"); }, {"unclosed comment"});
  expect_error([] { ChatTemplate::from_jinja("{{ x | frobnicate }}"); }, {"unknown filter 'frobnicate'"});
  expect_error([] { ChatTemplate::from_jinja("{{ x is frob }}"); }, {"unknown test 'frob'"});
  expect_error([] { ChatTemplate::from_jinja("{{ now_iso('%Y') }}"); }, {"unknown function 'now_iso'"});
  expect_error([] { ChatTemplate::from_jinja("{{ x.frob() }}"); }, {"unsupported method '.frob()'"});
  expect_error([] { ChatTemplate::from_jinja("{% macro m() %}{% endmacro %}"); }, {"unsupported tag '{% macro %}'"});
  expect_error([] { ChatTemplate::from_jinja("{% include 'x' %}"); }, {"unsupported tag '{% include %}'"});
  expect_error([] { ChatTemplate::from_jinja("{% frob %}"); }, {"unknown tag '{% frob %}'"});
  expect_error([] { ChatTemplate::from_jinja("{% endif %}"); }, {"unexpected '{% endif %}'"});
  expect_error([] { ChatTemplate::from_jinja("{% if x %}{% endfor %}"); }, {"unexpected '{% endfor %}'"});
  expect_error([] { ChatTemplate::from_jinja("{% break %}"); }, {"outside a for loop"});
  expect_error([] { ChatTemplate::from_jinja("{{ 'abc }}"); }, {"unterminated string"});
  expect_error([] { ChatTemplate::from_jinja("{{ 1 + }}"); }, {"expected a value"});
  expect_error([] { ChatTemplate::from_jinja("{{ a b }}"); }, {"unexpected 'b'"});
  expect_error([] { ChatTemplate::from_jinja("{{ }}"); }, {"empty expression"});
  expect_error([] { ChatTemplate::from_jinja("{{ a ? b }}"); }, {"unexpected character '?'"});
  expect_error([] { ChatTemplate::from_jinja("{% set x %}a{% endset %}"); }, {"block assignment"});
}

TEST(Errors, DeepNestingIsAnErrorNotACrash) {
  expect_error([] { ChatTemplate::from_jinja("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"); },
               {"nested too deeply"});
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += "{% if true %}";
  expect_error([&] { ChatTemplate::from_jinja(deep); }, {"nested too deeply"});
}

TEST(Errors, RenderTimeErrorsNameTheProblem) {
  expect_error([] { render("{{ 'a' + x }}"); }, {"line 1", "'x' is undefined"});
  expect_error([] { render("\n\n{{ x.y }}"); }, {"line 3", "'x' is undefined"});
  expect_error([] { render("{{ 'a' + 1 }}"); }, {"unsupported operand types for +: string and int"});
  expect_error([] { render("{{ 1 // 0 }}"); }, {"division by zero"});
  expect_error([] { render("{{ 9223372036854775807 + 1 }}"); }, {"integer overflow"});
  expect_error([] { render("{% for x in 3 %}{% endfor %}"); }, {"cannot iterate over int"});
  expect_error([] { render("{% set x = 1 %}{% set x.y = 2 %}"); }, {"not a namespace"});
  expect_error([] { render("{{ 1 < 'a' }}"); }, {"cannot compare int with string"});
  expect_error([] { render("{{ 'abc'.upper(1) }}"); }, {"at most 0 argument"});
  expect_error([] { render("{{ range(10000000) | length }}"); }, {"range() longer than"});
  expect_error([] { render("{% for i in range(10000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"); },
               {"loop iterations"});
  expect_error([] { render("{% for i in range(1000) %}{{ 'x' * 1000000 }}{% endfor %}"); }, {"output larger than"});
  expect_error([] { ChatTemplate::deepseek().render(json::array()); }, {"must be a JSON object"});
}

// Every prefix of a real template either parses or fails with a dsmoe::Error; none crashes.
TEST(Errors, TruncatedTemplatesNeverCrash) {
  const std::string full = kLlama2;
  int parsed = 0;
  for (size_t n = 0; n <= full.size(); ++n) {
    try {
      ChatTemplate::from_jinja(full.substr(0, n)).render({{"user", "a"}}, true, "<s>", "</s>");
      ++parsed;
    } catch (const dsmoe::Error&) {
    }
  }
  EXPECT_GT(parsed, 0);
}

TEST(Errors, BadMessagesJson) {
  const json ok = json::parse(R"([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "x": 1}])");
  const std::vector<ChatMessage> msgs = chat_messages_from_json(ok);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[1].role, "assistant");
  EXPECT_EQ(msgs[1].content, "yo");
  EXPECT_TRUE(chat_messages_from_json(json::array()).empty());

  expect_error([] { chat_messages_from_json(json::parse(R"({"role": "user"})")); }, {"JSON array", "object"});
  expect_error([] { chat_messages_from_json(json::parse(R"(["hi"])")); }, {"messages[0]", "expected an object"});
  expect_error([] { chat_messages_from_json(json::parse(R"([{"role": "user"}])")); },
               {"messages[0]", "missing \"content\""});
  expect_error([] { chat_messages_from_json(json::parse(R"([{"content": "x"}])")); }, {"missing \"role\""});
  expect_error(
      [] {
        chat_messages_from_json(json::parse(R"([{"role": "user", "content": "a"}, {"role": "tool", "content": "x"}])"));
      },
      {"messages[1]", "unknown role 'tool'", "user, assistant or system"});
  expect_error([] { chat_messages_from_json(json::parse(R"([{"role": "user", "content": null}])")); },
               {"\"content\" must be a string", "null"});
  expect_error([] { chat_messages_from_json(json::parse(R"([{"role": 3, "content": "x"}])")); },
               {"\"role\" must be a string"});
}

// ---------------------------------------------------------------------------------------------------------------
// Jinja2 itself

// Each line of the file (DSMOE_JINJA_CASES, else the committed tests/data/jinja_cases.jsonl) is a template, its
// variables in document order, and what Jinja2 did: "expected" (ours must render the same bytes), "error" (ours
// must raise a dsmoe::Error too), or "expected" with "unsupported" (outside our subset on purpose: ours must raise
// a clear error rather than print anything).
TEST(Jinja2Cases, RenderLikeJinja2) {
  const char* fresh = std::getenv("DSMOE_JINJA_CASES");
  const std::string path = fresh != nullptr && *fresh != 0 ? fresh : DSMOE_JINJA_CASES_FILE;
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot read " << path << " (tools/reference/jinja_cases.py --out FILE writes it)";
  const auto quoted = [](const std::string& s) { return json(s).dump(-1, ' ', false, json::error_handler_t::replace); };
  size_t cases = 0, rendered = 0, raised = 0, deepseek = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::ordered_json c = nlohmann::ordered_json::parse(line);
    ++cases;
    const std::string name = c.at("name"), tmpl = c.at("template");
    const bool must_raise = c.value("error", false) || c.contains("unsupported");
    deepseek += tmpl == ChatTemplate::deepseek().source();
    std::string out, error;
    try {
      out = ChatTemplate::from_jinja(tmpl).render(c.at("vars"));
    } catch (const dsmoe::Error& e) {
      error = e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << ": not a dsmoe::Error: " << e.what() << "\n  template: " << tmpl;
      continue;
    }
    if (must_raise) {
      ++raised;
      EXPECT_FALSE(error.empty()) << name << ": Jinja2 "
                                  << (c.contains("unsupported") ? "renders it (unsupported)" : "raises")
                                  << ", ours rendered " << quoted(out) << "\n  template: " << tmpl
                                  << "\n  jinja2: " << c.value("jinja_error", c.value("unsupported", ""));
    } else {
      ++rendered;
      EXPECT_TRUE(error.empty() && out == c.at("expected").get<std::string>())
          << name << "\n  template: " << tmpl << "\n  vars:     " << c.at("vars").dump()
          << "\n  jinja2:   " << c.at("expected").dump() << "\n  ours:     " << (error.empty() ? quoted(out) : error);
    }
  }
  EXPECT_GT(rendered, 0u) << path;
  EXPECT_GT(raised, 0u) << path;
  EXPECT_GT(deepseek, 0u) << path << " has no case with the built-in DeepSeek template, verbatim";
  std::printf("%zu cases from %s: %zu render as in Jinja2, %zu raise\n", cases, path.c_str(), rendered, raised);
}

}  // namespace
