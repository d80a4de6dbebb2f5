// Chat templates: render a conversation into the prompt text a chat model was trained on, from the `chat_template`
// Jinja string of a Hugging Face tokenizer_config.json.
//
// A small interpreter for the Jinja subset that HF chat templates use, with HF's environment settings
// (trim_blocks, lstrip_blocks, loop controls, `raise_exception`, `strftime_now`, a json.dumps `tojson`):
//   {{ expr }}, {% if/elif/else/endif %}, {% for x in xs [if cond] %}...{% else %}...{% endfor %} with `loop.*`,
//   {% set x = expr %}, {% set ns.attr = expr %} with namespace(), {% break %}/{% continue %},
//   {% generation %}...{% endgeneration %}, whitespace control ({%- -%} {{- -}} {#- -#} {%+), comments;
//   literals (strings with escapes, numbers, lists, tuples, dicts), + - * / // % ** ~, comparisons, and/or/not,
//   in, is [not] tests, a if c else b, indexing, slicing, attribute access, filters (trim, length, join, tojson,
//   default, map, selectattr, ...), string and dict methods (strip, split, startswith, get, items, ...),
//   raise_exception/namespace/range/strftime_now.
// Anything outside the subset (macros, includes, unknown filters/tests/functions/methods, ...) is a clear
// dsmoe::Error at parse time, never silently wrong output. Errors name the template line; a template's own
// raise_exception('msg') becomes dsmoe::Error("chat template: msg").
// Checked against Jinja2 3.1 configured as transformers configures it, on real HF templates (DeepSeek LLM,
// DeepSeek-R1-Distill, ChatML, Llama-2, Llama-3.2, Mistral-Nemo, Phi-3.5, Phi-4-mini, Gemma, Zephyr) and on
// randomly generated templates and expressions.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsmoe::text {

struct ChatMessage {
  std::string role, content;
};

// [{"role": "user"|"assistant"|"system", "content": "..."}, ...]; other keys are ignored. Clear errors otherwise.
std::vector<ChatMessage> chat_messages_from_json(const nlohmann::json& j);

class ChatTemplate {
 public:
  // Parses once; render() can then be called any number of times, from any thread.
  static ChatTemplate from_jinja(const std::string& source);
  // The DeepSeek LLM / DeepSeekMoE chat template (built in: no tokenizer files needed).
  static ChatTemplate deepseek();

  // The standard variables: `messages` (a list of {role, content}), `add_generation_prompt`, `bos_token`,
  // `eos_token`.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt, const std::string& bos_token,
                     const std::string& eos_token) const;
  // Any variables, from a JSON object (messages with extra fields, tools, custom flags). Dict order follows the
  // JSON's: nlohmann::json sorts keys, nlohmann::ordered_json keeps document order (as Python does), which is what
  // `tojson` of tool schemas should print.
  std::string render(const nlohmann::json& variables) const;
  std::string render(const nlohmann::ordered_json& variables) const;

  const std::string& source() const;

  struct Program;  // the parsed template (defined in the .cpp)

 private:
  explicit ChatTemplate(std::shared_ptr<const Program> program) : program_(std::move(program)) {}
  std::shared_ptr<const Program> program_;
};

// True when the conversation has a system message: DeepSeekMoE chat was trained without one and its authors do not
// recommend it, so callers warn.
bool chat_has_system_message(const std::vector<ChatMessage>& messages);

}  // namespace dsmoe::text
