// The OpenAI API's JSON, both ways: request bodies of /v1/chat/completions and /v1/completions checked and turned
// into what the engine runs (every client mistake an ApiError: 4xx with OpenAI's error shape, naming the field),
// and the response objects and stream chunks built from a job's output. No HTTP here (see http_server.h).
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "infer/generation.h"
#include "text/chat_template.h"

namespace dsmoe::text {
class Tokenizer;
}

namespace dsmoe::serve {

// Request and response objects keep their keys in document order (a schema's properties are written in the order
// the client listed them; responses read as OpenAI's do).
using Json = nlohmann::ordered_json;

// A client error: HTTP status and OpenAI's {"error": {message, type, param, code}}.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string param = "", std::string code = "",
           std::string type = "invalid_request_error")
      : std::runtime_error(message),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type, param, code;
};
Json error_json(const ApiError& e);

enum class Endpoint { kChat, kCompletion };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::vector<text::ChatMessage> messages;  // chat
  std::string prompt_text;                  // completions: a string prompt ...
  std::vector<int32_t> prompt_ids;          // ... or token ids
  bool prompt_is_ids = false;
  GenerationOptions options;  // sampling, max_tokens (-1: the room left), stops, logprobs
  bool stream = false, include_usage = false;
  bool logprobs = false;    // chat: `logprobs: true`; completions: `logprobs: N` given
  bool ignore_eos = false;  // llama.cpp's extension: keep going after an end-of-sequence token
  std::string model;        // echoed back (the server's own name when absent)
};

// Parses and checks a body (already valid JSON). Defaults are llama.cpp's sampling defaults (temperature 0.8,
// top_k 40, top_p 0.95, min_p 0.05); without `seed` each request draws a fresh one.
CompletionRequest parse_completion_request(const Json& body, Endpoint endpoint);

// A body as JSON: a syntax error, a non-object or nesting deeper than 64 levels is a 400.
Json parse_body(const std::string& body);

// Response pieces. `id` is the completion id ("chatcmpl-..." / "cmpl-..."), `created` Unix seconds.
struct ResponseMeta {
  std::string id, model;
  int64_t created = 0;
};
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};
Json usage_json(const Usage& u);
// A whole (non-streamed) response.
Json completion_json(Endpoint endpoint, const ResponseMeta& meta, const std::string& text, const char* finish_reason,
                     const Usage& usage, const std::vector<TokenLogprob>* logprobs, const text::Tokenizer& tok);
// One stream chunk: text delta (chat: the first carries the role), logprobs of its tokens, finish reason when it
// ends (nullptr otherwise).
Json chunk_json(Endpoint endpoint, const ResponseMeta& meta, const std::string& text, bool first,
                const char* finish_reason, const std::vector<TokenLogprob>* logprobs, const text::Tokenizer& tok);
// The last chunk of a stream with stream_options.include_usage: `choices: []` and the usage.
Json usage_chunk_json(Endpoint endpoint, const ResponseMeta& meta, const Usage& usage);

// /tokenize {content, add_special, with_pieces} and /detokenize {tokens}.
Json tokenize_json(const Json& body, const text::Tokenizer& tok);
Json detokenize_json(const Json& body, const text::Tokenizer& tok);

// JSON text from any bytes: invalid UTF-8 becomes U+FFFD instead of an exception.
std::string dump(const Json& j);

}  // namespace dsmoe::serve
