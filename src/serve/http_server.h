// `dsmoe serve`: the OpenAI-compatible HTTP layer (cpp-httplib from Debian) over the engine loop.
//
// Routes: POST /v1/chat/completions, POST /v1/completions (also without the /v1 prefix), GET /v1/models,
// GET /health, POST /tokenize, POST /detokenize, GET /metrics (Prometheus text), GET / (the chat page). The
// listener starts before the model loads: until it is ready every route answers 503 (/health with
// {"error": ...}). Client errors are 4xx with OpenAI's error shape (api.h): bad JSON or fields 400, missing or
// wrong API key 401 (/health and the page stay open), unknown route 404, wrong method 405, body over the limit
// 413, queue full 503 with Retry-After. A client that hangs up (streaming or not) cancels its job within one
// engine step. SIGINT/SIGTERM stop the listener, cancel what runs, and return 0.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "infer/infer_model.h"
#include "serve/engine_loop.h"
#include "text/tokenizer.h"

namespace dsmoe::serve {

struct ServedModel {
  std::unique_ptr<InferModel> model;
  std::optional<text::Tokenizer> tokenizer;
  std::string chat_template;  // Jinja source to use instead of the tokenizer's (empty: the tokenizer's)
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;        // empty: no authentication
  std::string model_name;     // the id /v1/models reports (--alias, else the model file's name)
  size_t max_body = 1 << 20;  // bytes
  int read_timeout_s = 30;    // slow clients: a request not received within this is dropped
  LoopOptions loop;
};

// Serves until SIGINT/SIGTERM (returns 0) or until loading fails (throws after closing the listener).
// `load` runs on its own thread while the listener answers 503.
int run_server(const ServerOptions& options, const std::function<ServedModel()>& load);

}  // namespace dsmoe::serve
