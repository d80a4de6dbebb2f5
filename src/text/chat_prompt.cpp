#include "text/chat_prompt.h"

namespace dsmoe::text {

ChatTemplate chat_template_for(const Tokenizer& tok) {
  const nlohmann::json& cfg = tok.config();
  if (cfg.is_object() && cfg.contains("chat_template")) {
    const nlohmann::json& t = cfg["chat_template"];
    if (t.is_string()) return ChatTemplate::from_jinja(t.get<std::string>());
    if (t.is_array())
      for (const nlohmann::json& e : t)
        if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
          return ChatTemplate::from_jinja(e["template"].get<std::string>());
  }
  return ChatTemplate::deepseek();
}

std::vector<int32_t> chat_prompt_ids(const ChatTemplate& tpl, const Tokenizer& tok,
                                     const std::vector<ChatMessage>& messages) {
  const std::string bos = tok.bos_id() >= 0 ? tok.token_bytes(tok.bos_id()) : "";
  const std::string eos = tok.eos_id() >= 0 ? tok.token_bytes(tok.eos_id()) : "";
  std::vector<int32_t> ids = tok.encode(tpl.render(messages, true, bos, eos), false);
  if (tok.add_bos() && tok.bos_id() >= 0 && (ids.empty() || ids.front() != tok.bos_id()))
    ids.insert(ids.begin(), tok.bos_id());
  return ids;
}

}  // namespace dsmoe::text
