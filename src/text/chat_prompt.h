// From a conversation to the token ids a chat model continues: the template the tokenizer ships (or DeepSeek's),
// rendered with the generation prompt and tokenized as `dsmoe chat-template --ids` does. Shared by `dsmoe chat` and
// the server, so that both send a model the same ids for the same messages.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace dsmoe::text {

// tokenizer_config.json's chat_template (a string, or HF's list of named templates: the "default" one), else the
// built-in DeepSeek template.
ChatTemplate chat_template_for(const Tokenizer& tok);

// Renders `messages` with add_generation_prompt and the tokenizer's BOS/EOS strings, encodes the text with special
// tokens matched (the template writes BOS as text), and adds BOS only when the tokenizer config asks for it and the
// template did not write it.
std::vector<int32_t> chat_prompt_ids(const ChatTemplate& tpl, const Tokenizer& tok,
                                     const std::vector<ChatMessage>& messages);

}  // namespace dsmoe::text
