#include "serve/api.h"

#include <cmath>
#include <random>

#include <fmt/format.h>

#include "core/error.h"
#include "infer/json_constraint.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace dsmoe::serve {

using json = Json;

json error_json(const ApiError& e) {
  return {{"error",
           {{"message", e.what()},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

namespace {
constexpr int kMaxDepth = 64;

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

// The type names OpenAI's errors use.
const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    default: return "number";
  }
}

// Optional fields: absent or null means "not given".
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}
double number(const json& body, const char* name, double lo, double hi, double fallback) {
  const json* v = field(body, name);
  if (v == nullptr) return fallback;
  if (!v->is_number()) bad(name, fmt::format("'{}' must be a number, not {}", name, type_name(*v)));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(name, fmt::format("'{}' must be in [{}, {}], not {}", name, lo, hi, x));
  return x;
}
int64_t integer(const json& body, const char* name, int64_t lo, int64_t hi, int64_t fallback) {
  const json* v = field(body, name);
  if (v == nullptr) return fallback;
  if (!v->is_number_integer() && !v->is_number_unsigned())
    bad(name, fmt::format("'{}' must be an integer, not {}", name, type_name(*v)));
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    bad(name, fmt::format("'{}' must be in [{}, {}]", name, lo, hi));
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) bad(name, fmt::format("'{}' must be in [{}, {}], not {}", name, lo, hi, x));
  return x;
}
bool boolean(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) bad(name, fmt::format("'{}' must be a boolean, not {}", name, type_name(*v)));
  return v->get<bool>();
}

// A message's content: a string, or OpenAI's list of parts of which only {"type": "text"} ones are understood.
std::string message_content(const json& m, size_t i) {
  const std::string param = fmt::format("messages[{}].content", i);
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) return "";  // e.g. an assistant turn that only called tools
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array())
    bad(param, fmt::format("'{}' must be a string or an array of parts, not {}", param, type_name(*it)));
  std::string out;
  for (size_t k = 0; k < it->size(); ++k) {
    const json& part = (*it)[k];
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
        !part["text"].is_string())
      bad(param, fmt::format("'{}[{}]' must be a text part {{\"type\": \"text\", \"text\": ...}}", param, k));
    out += part["text"].get<std::string>();
  }
  return out;
}

std::vector<text::ChatMessage> parse_messages(const json& body) {
  const json* v = field(body, "messages");
  if (v == nullptr) bad("messages", "'messages' is required");
  if (!v->is_array()) bad("messages", fmt::format("'messages' must be an array, not {}", type_name(*v)));
  if (v->empty()) bad("messages", "'messages' must not be empty");
  std::vector<text::ChatMessage> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& m = (*v)[i];
    if (!m.is_object()) bad(fmt::format("messages[{}]", i), fmt::format("'messages[{}]' must be an object", i));
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      bad(fmt::format("messages[{}].role", i), fmt::format("'messages[{}].role' must be a string", i));
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "developer" && r != "tool")
      bad(fmt::format("messages[{}].role", i),
          fmt::format("'messages[{}].role' must be system, developer, user, assistant or tool, not '{}'", i, r));
    std::string content = message_content(m, i);
    if (text::unicode::find_invalid_utf8(content) != std::string::npos)
      bad(fmt::format("messages[{}].content", i), "message content is not valid UTF-8");
    out.push_back({r == "developer" ? "system" : r, std::move(content)});
  }
  return out;
}

std::vector<std::string> parse_stops(const json& body) {
  const json* v = field(body, "stop");
  if (v == nullptr) return {};
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array()) bad("stop", fmt::format("'stop' must be a string or an array of strings, not {}", type_name(*v)));
  if (v->size() > 16) bad("stop", "'stop' takes at most 16 strings");
  std::vector<std::string> out;
  for (const json& s : *v) {
    if (!s.is_string()) bad("stop", "'stop' must be a string or an array of strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

void parse_prompt(const json& body, CompletionRequest& r) {
  const json* v = field(body, "prompt");
  if (v == nullptr) bad("prompt", "'prompt' is required");
  auto ids_from = [&](const json& a) {
    for (const json& t : a) {
      if (!t.is_number_integer() && !t.is_number_unsigned()) bad("prompt", "'prompt' token ids must be integers");
      const int64_t id = t.get<int64_t>();
      if (id < 0 || id > INT32_MAX || (t.is_number_unsigned() && t.get<uint64_t>() > INT32_MAX))
        bad("prompt", fmt::format("token id {} is out of range", t.dump()));
      r.prompt_ids.push_back(static_cast<int32_t>(id));
    }
    r.prompt_is_ids = true;
  };
  if (v->is_string()) {
    r.prompt_text = v->get<std::string>();
  } else if (v->is_array() && v->size() == 1 && (*v)[0].is_string()) {
    r.prompt_text = (*v)[0].get<std::string>();
  } else if (v->is_array() && v->size() == 1 && (*v)[0].is_array()) {
    ids_from((*v)[0]);
  } else if (v->is_array() && !v->empty() && !(*v)[0].is_string() && !(*v)[0].is_array()) {
    ids_from(*v);
  } else {
    bad("prompt",
        "'prompt' must be a string, an array of token ids, or a one-element array of either (batches of "
        "prompts are not supported: send one request per prompt)");
  }
  if (!r.prompt_is_ids && r.prompt_text.empty()) bad("prompt", "'prompt' must not be empty");
  if (!r.prompt_is_ids && text::unicode::find_invalid_utf8(r.prompt_text) != std::string::npos)
    bad("prompt", "'prompt' is not valid UTF-8");
}
}  // namespace

json parse_body(const std::string& body) {
  // Depth first, without recursion: a body of a million '[' must not reach the parser.
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) throw ApiError(400, fmt::format("JSON nested deeper than {} levels", kMaxDepth));
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) throw ApiError(400, "the request body is not valid JSON");
  if (!j.is_object()) throw ApiError(400, fmt::format("the request body must be a JSON object, not {}", type_name(j)));
  return j;
}

CompletionRequest parse_completion_request(const json& body, Endpoint endpoint) {
  CompletionRequest r;
  r.endpoint = endpoint;
  if (const json* m = field(body, "model")) {
    if (!m->is_string()) bad("model", fmt::format("'model' must be a string, not {}", type_name(*m)));
    r.model = m->get<std::string>();
  }
  if (endpoint == Endpoint::kChat)
    r.messages = parse_messages(body);
  else
    parse_prompt(body, r);
  const int64_t n = integer(body, "n", 1, 128, 1);
  if (n != 1) bad("n", "only one choice per request is supported ('n' must be 1): send one request per choice");
  SamplingParams& s = r.options.sampling;
  s.temperature = number(body, "temperature", 0.0, 2.0, s.temperature);
  s.top_p = number(body, "top_p", 0.0, 1.0, s.top_p);
  if (s.top_p <= 0.0) bad("top_p", "'top_p' must be > 0");
  s.top_k = integer(body, "top_k", 0, INT32_MAX, s.top_k);
  s.min_p = number(body, "min_p", 0.0, 1.0, s.min_p);
  s.presence_penalty = number(body, "presence_penalty", -2.0, 2.0, s.presence_penalty);
  s.frequency_penalty = number(body, "frequency_penalty", -2.0, 2.0, s.frequency_penalty);
  s.repetition_penalty = number(body, "repetition_penalty", 1e-6, 100.0, s.repetition_penalty);
  if (field(body, "seed") != nullptr) {
    const json& v = body["seed"];
    if (!v.is_number_integer() && !v.is_number_unsigned())
      bad("seed", fmt::format("'seed' must be an integer, not {}", type_name(v)));
    s.seed = v.is_number_unsigned() ? v.get<uint64_t>() : static_cast<uint64_t>(v.get<int64_t>());
  } else {
    static thread_local std::mt19937_64 fresh{std::random_device{}()};
    s.seed = fresh();
  }
  // max_completion_tokens is the newer name; both are honoured (the smaller wins when both are given).
  const int64_t max_tokens = integer(body, "max_tokens", 1, INT32_MAX, -1);
  const int64_t max_completion = integer(body, "max_completion_tokens", 1, INT32_MAX, -1);
  r.options.max_tokens = max_tokens < 0       ? max_completion
                         : max_completion < 0 ? max_tokens
                                              : std::min(max_tokens, max_completion);
  r.options.stops = parse_stops(body);
  r.stream = boolean(body, "stream", false);
  r.ignore_eos = boolean(body, "ignore_eos", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    r.include_usage = boolean(*so, "include_usage", false);
  }
  if (endpoint == Endpoint::kChat) {
    r.logprobs = boolean(body, "logprobs", false);
    const int64_t top = integer(body, "top_logprobs", 0, 20, -1);
    if (top >= 0 && !r.logprobs) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (r.logprobs) r.options.top_logprobs = static_cast<int>(std::max<int64_t>(top, 0));
  } else {
    const int64_t lp = integer(body, "logprobs", 0, 5, -1);
    r.logprobs = lp >= 0;
    if (r.logprobs) r.options.top_logprobs = static_cast<int>(lp);
    if (boolean(body, "echo", false)) bad("echo", "'echo' is not supported");
    if (field(body, "suffix") != nullptr) bad("suffix", "'suffix' is not supported");
    if (integer(body, "best_of", 1, 1, 1) != 1) bad("best_of", "'best_of' must be 1");
  }
  if (const json* rf = field(body, "response_format")) {
    if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
      bad("response_format", "'response_format' must be an object with a string 'type'");
    const std::string type = (*rf)["type"].get<std::string>();
    if (type == "json_object") {
      r.options.json = std::make_shared<const JsonConstraint>(JsonConstraint::any_object());
    } else if (type == "json_schema") {
      const json* js = field(*rf, "json_schema");
      if (js == nullptr || !js->is_object() || !js->contains("schema"))
        bad("response_format", "'response_format.json_schema' must be an object with a 'schema'");
      try {
        r.options.json = std::make_shared<const JsonConstraint>(JsonConstraint::from_schema((*js)["schema"]));
      } catch (const Error& e) {
        bad("response_format", e.what());
      }
    } else if (type != "text") {
      bad("response_format",
          fmt::format("response_format type '{}' is not one of text, json_object, json_schema", type));
    }
  }
  if (field(body, "logit_bias") != nullptr &&
      !(field(body, "logit_bias")->is_object() && field(body, "logit_bias")->empty()))
    bad("logit_bias", "'logit_bias' is not supported");
  if (const json* tools = field(body, "tools"); tools != nullptr && !(tools->is_array() && tools->empty()))
    bad("tools", "'tools' (function calling) is not supported");
  try {
    s.validate();
  } catch (const std::exception& e) {
    bad("", e.what());
  }
  return r;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

namespace {
json bytes_json(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// Chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}, ...]}.
json chat_logprobs(const std::vector<TokenLogprob>& lps, const text::Tokenizer& tok) {
  json content = json::array();
  for (const TokenLogprob& lp : lps) {
    json top = json::array();
    for (const auto& [id, l] : lp.top) {
      const std::string t = tok.token_bytes(id);
      top.push_back({{"token", text::unicode::replace_invalid_utf8(t)}, {"logprob", l}, {"bytes", bytes_json(t)}});
    }
    const std::string t = tok.token_bytes(lp.id);
    content.push_back({{"token", text::unicode::replace_invalid_utf8(t)},
                       {"logprob", lp.logprob},
                       {"bytes", bytes_json(t)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

// Completions: {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}.
json completion_logprobs(const std::vector<TokenLogprob>& lps, const text::Tokenizer& tok) {
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(), offsets = json::array();
  size_t offset = 0;
  for (const TokenLogprob& lp : lps) {
    const std::string t = text::unicode::replace_invalid_utf8(tok.token_bytes(lp.id));
    tokens.push_back(t);
    token_logprobs.push_back(lp.logprob);
    json top = json::object();
    for (const auto& [id, l] : lp.top) top[text::unicode::replace_invalid_utf8(tok.token_bytes(id))] = l;
    top_logprobs.push_back(top);
    offsets.push_back(offset);
    offset += t.size();
  }
  return {
      {"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top_logprobs}, {"text_offset", offsets}};
}

json logprobs_field(Endpoint endpoint, const std::vector<TokenLogprob>* lps, const text::Tokenizer& tok) {
  if (lps == nullptr) return nullptr;
  return endpoint == Endpoint::kChat ? chat_logprobs(*lps, tok) : completion_logprobs(*lps, tok);
}

json finish_field(const char* reason) { return reason == nullptr ? json(nullptr) : json(reason); }
}  // namespace

json completion_json(Endpoint endpoint, const ResponseMeta& meta, const std::string& text, const char* finish_reason,
                     const Usage& usage, const std::vector<TokenLogprob>* logprobs, const text::Tokenizer& tok) {
  json choice = {{"index", 0},
                 {"logprobs", logprobs_field(endpoint, logprobs, tok)},
                 {"finish_reason", finish_field(finish_reason)}};
  if (endpoint == Endpoint::kChat)
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  else
    choice["text"] = text;
  return {{"id", meta.id},
          {"object", endpoint == Endpoint::kChat ? "chat.completion" : "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", nullptr},
          {"choices", json::array({choice})},
          {"usage", usage_json(usage)}};
}

json chunk_json(Endpoint endpoint, const ResponseMeta& meta, const std::string& text, bool first,
                const char* finish_reason, const std::vector<TokenLogprob>* logprobs, const text::Tokenizer& tok) {
  json choice = {{"index", 0},
                 {"logprobs", logprobs_field(endpoint, logprobs, tok)},
                 {"finish_reason", finish_field(finish_reason)}};
  if (endpoint == Endpoint::kChat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && finish_reason == nullptr)) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return {{"id", meta.id},
          {"object", endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", nullptr},
          {"choices", json::array({choice})}};
}

json usage_chunk_json(Endpoint endpoint, const ResponseMeta& meta, const Usage& usage) {
  return {{"id", meta.id},
          {"object", endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", nullptr},
          {"choices", json::array()},
          {"usage", usage_json(usage)}};
}

json tokenize_json(const json& body, const text::Tokenizer& tok) {
  const json* content = field(body, "content");
  if (content == nullptr || !content->is_string()) bad("content", "'content' must be a string");
  const std::string s = content->get<std::string>();
  if (text::unicode::find_invalid_utf8(s) != std::string::npos) bad("content", "'content' is not valid UTF-8");
  const bool add_special = boolean(body, "add_special", false);
  const bool with_pieces = boolean(body, "with_pieces", false);
  const std::vector<int32_t> ids = tok.encode(s, add_special);
  json tokens = json::array();
  for (int32_t id : ids) {
    if (!with_pieces) {
      tokens.push_back(id);
      continue;
    }
    // A piece that is not valid UTF-8 on its own (part of a character) is given as its bytes, as llama.cpp does.
    const std::string piece = tok.token_bytes(id);
    tokens.push_back(
        {{"id", id},
         {"piece", text::unicode::find_invalid_utf8(piece) == std::string::npos ? json(piece) : bytes_json(piece)}});
  }
  return {{"tokens", tokens}};
}

json detokenize_json(const json& body, const text::Tokenizer& tok) {
  const json* tokens = field(body, "tokens");
  if (tokens == nullptr || !tokens->is_array()) bad("tokens", "'tokens' must be an array of token ids");
  std::vector<int32_t> ids;
  for (const json& t : *tokens) {
    if (!t.is_number_integer() && !t.is_number_unsigned()) bad("tokens", "'tokens' must be an array of token ids");
    const int64_t id = t.get<int64_t>();
    if (id < 0 || id >= tok.vocab_size() || (t.is_number_unsigned() && t.get<uint64_t>() > INT32_MAX))
      bad("tokens", fmt::format("token id {} is outside the vocabulary [0, {})", t.dump(), tok.vocab_size()));
    ids.push_back(static_cast<int32_t>(id));
  }
  return {{"content", text::unicode::replace_invalid_utf8(tok.decode(ids))}};
}

}  // namespace dsmoe::serve
