// Chat templates: the public API (text/chat_template.h) over a small Jinja interpreter for Hugging Face chat
// templates, which lives in src/text/jinja/ (namespace dsmoe::text::jinja):
//   value.{h,cpp}     values (Python-like: undefined, none, bool, int, float, string, list, dict) and their operations
//   lexer.{h,cpp}     scanning: template text -> text pieces and tags, with HF's whitespace rules; tag text -> tokens
//   ast.{h,cpp}       the syntax tree and its evaluation (expressions, statements)
//   builtins.{h,cpp}  filters, tests, global functions, string and dict methods
//   strings.{h,cpp}   Python's str semantics they share (strip, split, full Unicode case mapping, int()/float())
//   parser.{h,cpp}    the parser
// Semantics follow Jinja 3 as configured by transformers (trim_blocks, lstrip_blocks, keep_trailing_newline off,
// the default Undefined: printing it gives "", using it in arithmetic or taking its attributes is an error).
// tools/reference/jinja_cases.py checks this against Jinja2 itself (tests/data/jinja_cases.jsonl).
#include "text/chat_template.h"

#include <algorithm>

#include "core/error.h"
#include "text/jinja/ast.h"
#include "text/jinja/lexer.h"
#include "text/jinja/parser.h"
#include "text/jinja/value.h"

namespace dsmoe::text {
namespace {

// The `chat_template` of deepseek-ai's DeepSeek LLM / DeepSeekMoE chat tokenizer_config.json, verbatim. Its
// string literals '\n\n' hold real newlines (the JSON has "\n"), hence the line breaks inside the raw string.
const char* const kDeepSeekTemplate =
    R"JINJA({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '

' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}{{ message['content'] + '

' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %})JINJA";

}  // namespace

struct ChatTemplate::Program {
  std::string source;
  jinja::Body body;
};

ChatTemplate ChatTemplate::from_jinja(const std::string& source) {
  auto program = std::make_shared<Program>();
  program->source = source;
  program->body = jinja::parse(jinja::scan(source));
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
  jinja::Context ctx;
  ctx.scopes.emplace_back();
  for (auto it = variables.begin(); it != variables.end(); ++it) ctx.scopes[0][it.key()] = jinja::from_json(it.value());
  std::string out;
  jinja::render_body(program.body, ctx, out);  // break/continue outside loops are rejected by the parser
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
