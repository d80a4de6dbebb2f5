#include "serve/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "core/error.h"
#include "serve/api.h"
#include "serve/chat_page.h"
#include "text/chat_prompt.h"

namespace dsmoe::serve {

using json = Json;

namespace {

// ---- the client's connection ----
// cpp-httplib 0.11 does not tell a handler whether its client is still there (newer releases have
// Request::is_connection_closed). The connection's socket is found once per request among this process's
// descriptors (the one whose peer is the request's remote address and port, on our port), then polled for a
// hang-up between engine steps.
// Calls fn(fd, local port, peer address, peer port) for each connected TCP socket of this process.
template <typename Fn>
void for_each_connection(Fn&& fn) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    struct stat st {};
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0 ||
        getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0)
      continue;  // not connected (e.g. the listening socket)
    char host[INET6_ADDRSTRLEN] = {0};
    int local_port = 0, peer_port = 0;
    if (peer.ss_family == AF_INET) {
      const auto* p = reinterpret_cast<const sockaddr_in*>(&peer);
      inet_ntop(AF_INET, &p->sin_addr, host, sizeof host);
      peer_port = ntohs(p->sin_port);
      local_port = ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
    } else if (peer.ss_family == AF_INET6) {
      const auto* p = reinterpret_cast<const sockaddr_in6*>(&peer);
      inet_ntop(AF_INET6, &p->sin6_addr, host, sizeof host);
      peer_port = ntohs(p->sin6_port);
      local_port = ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port);
    } else {
      continue;
    }
    if (fn(static_cast<int>(fd), local_port, std::string(host), peer_port)) break;
  }
  closedir(dir);
}

int find_client_socket(const httplib::Request& req) {
  int found = -1;
  for_each_connection([&](int fd, int local_port, const std::string& host, int peer_port) {
    if (peer_port != req.remote_port || local_port != req.local_port || host != req.remote_addr) return false;
    found = fd;
    return true;
  });
  return found;
}

// At shutdown: idle keep-alive connections would hold cpp-httplib's workers (and so the exit) for the keep-alive
// timeout; shutting their sockets down wakes them at once.
void close_connections(int port) {
  for_each_connection([&](int fd, int local_port, const std::string&, int) {
    if (local_port == port) ::shutdown(fd, SHUT_RDWR);
    return false;
  });
}

// True when the peer closed or reset the connection (POLLRDHUP: its FIN arrived; a pipelined next request is
// POLLIN only and does not count).
bool client_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json; charset=utf-8");
}
void send_error(httplib::Response& res, const ApiError& e) {
  if (e.status == 503) res.set_header("Retry-After", "1");
  send_json(res, e.status, error_json(e));
}

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}", prefix, rng());
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

enum State { kLoading, kReady, kFailed };

// The shortest time between two chunks of one stream (see the streaming provider): 25 ms is 40 updates a second.
constexpr std::chrono::milliseconds kStreamInterval{25};

struct Server {
  const ServerOptions& options;
  httplib::Server http;
  std::atomic<int> state{kLoading};
  ServedModel served;
  std::unique_ptr<text::ChatTemplate> chat_template;
  std::unique_ptr<EngineLoop> loop;
  std::vector<int32_t> eos_ids;
  int64_t started = unix_now();

  explicit Server(const ServerOptions& o) : options(o) {}

  const text::Tokenizer& tokenizer() const {
    if (!served.tokenizer) throw ApiError(400, "this server has no tokenizer (start it with --tokenizer DIR)");
    return *served.tokenizer;
  }

  void completions(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  json models_json() const;
  std::string metrics_text() const;
  void routes();
};

void Server::completions(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
  const CompletionRequest r = parse_completion_request(parse_body(req.body), endpoint);
  const text::Tokenizer& tok = tokenizer();
  const ModelConfig& config = served.model->config;
  std::vector<int32_t> prompt;
  if (endpoint == Endpoint::kChat)
    prompt = text::chat_prompt_ids(*chat_template, tok, r.messages);
  else
    prompt = r.prompt_is_ids ? r.prompt_ids : tok.encode(r.prompt_text, true);
  const char* prompt_param = endpoint == Endpoint::kChat ? "messages" : "prompt";
  if (prompt.empty()) throw ApiError(400, "the prompt is empty", prompt_param);
  for (int32_t t : prompt)
    if (t < 0 || t >= config.vocab_size)
      throw ApiError(400, fmt::format("token id {} is outside the model's vocabulary [0, {})", t, config.vocab_size),
                     prompt_param);
  const int64_t ctx = loop->options().ctx;
  if (static_cast<int64_t>(prompt.size()) >= ctx)
    throw ApiError(400,
                   fmt::format("this model's context is {} tokens per request; the prompt has {} tokens, which "
                               "leaves no room for a reply",
                               ctx, prompt.size()),
                   prompt_param, "context_length_exceeded");
  Job job{prompt, r.options};
  if (!r.ignore_eos) job.options.eos_ids = eos_ids;
  // Chat templates end with the assistant's tag ("Assistant:"): the reply's leading whitespace is not content (as
  // in `dsmoe chat`).
  job.options.skip_leading_space = endpoint == Endpoint::kChat;
  std::shared_ptr<JobHandle> handle = loop->submit(std::move(job));
  if (!handle)
    throw ApiError(
        503, fmt::format("the server is busy: {} requests waiting (--max-queue); retry later", loop->metrics().queued),
        "", "server_busy", "server_error");
  const ResponseMeta meta{random_id(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-"),
                          r.model.empty() ? options.model_name : r.model, unix_now()};
  const int fd = find_client_socket(req);
  auto usage_of = [](const JobOutput& o) { return Usage{o.prompt_tokens, o.completion_tokens, o.cached_tokens}; };

  if (!r.stream) {
    JobOutput out;
    while (!handle->wait(out, std::chrono::milliseconds(50), /*until_done=*/true)) {
      if (client_gone(fd)) {  // nobody to answer: stop the work, leave the connection to close
        handle->cancel();
        res.status = 499;
        return;
      }
    }
    if (!out.error.empty()) throw ApiError(500, out.error, "", "", "server_error");
    send_json(res, 200,
              completion_json(endpoint, meta, out.text, finish_reason(out.finish), usage_of(out),
                              r.logprobs ? &out.logprobs : nullptr, tok));
    return;
  }

  // Streaming: SSE `data:` lines, one chunk per batch of new text, then the finish chunk, the usage chunk when
  // asked, and [DONE].
  struct Stream {
    std::shared_ptr<JobHandle> handle;
    bool first = true, finished = false;
    std::chrono::steady_clock::time_point last_send{};
  };
  auto stream = std::make_shared<Stream>(Stream{handle});
  const bool want_logprobs = r.logprobs, include_usage = r.include_usage;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, stream, meta, fd, endpoint, want_logprobs, include_usage, usage_of](size_t, httplib::DataSink& sink) {
        const text::Tokenizer& tok = *served.tokenizer;
        auto send = [&](const json& j) {
          const std::string line = "data: " + dump(j) + "\n\n";
          return sink.write(line.data(), line.size());
        };
        // After the first chunk, at most one chunk per kStreamInterval: on a machine whose cores the engine keeps
        // busy, waking this thread (and the client) for every token of every stream preempts the engine's threads
        // at their barriers; tokens that arrive meanwhile go out together.
        if (!stream->first) std::this_thread::sleep_until(stream->last_send + kStreamInterval);
        JobOutput out;
        const bool done = stream->handle->wait(out, std::chrono::milliseconds(100));
        if (client_gone(fd)) {
          stream->handle->cancel();
          return false;
        }
        bool ok = true;
        // The first chat chunk carries the role even before any text (as OpenAI's does).
        if (!out.text.empty() || !out.logprobs.empty() || (stream->first && !done && endpoint == Endpoint::kChat)) {
          ok = send(chunk_json(endpoint, meta, out.text, stream->first, nullptr,
                               want_logprobs ? &out.logprobs : nullptr, tok));
          stream->first = false;
          stream->last_send = std::chrono::steady_clock::now();
        }
        if (ok && done) {
          if (!out.error.empty()) {
            ok = send(error_json(ApiError(500, out.error, "", "", "server_error")));
          } else {
            ok = send(chunk_json(endpoint, meta, "", stream->first, finish_reason(out.finish), nullptr, tok));
            if (ok && include_usage) ok = send(usage_chunk_json(endpoint, meta, usage_of(out)));
          }
          static const std::string kDone = "data: [DONE]\n\n";
          if (ok) ok = sink.write(kDone.data(), kDone.size());
          stream->finished = true;
          if (ok) sink.done();
        }
        if (!ok) stream->handle->cancel();
        return ok;
      },
      [stream](bool) {
        if (!stream->finished) stream->handle->cancel();  // the connection ended before the job did
      });
}

json Server::models_json() const {
  const ModelConfig& c = served.model->config;
  return {{"object", "list"},
          {"data", json::array({{{"id", options.model_name},
                                 {"object", "model"},
                                 {"created", started},
                                 {"owned_by", "dsmoe"},
                                 {"context_length", loop->options().ctx},
                                 {"meta",
                                  {{"n_ctx", loop->options().ctx},
                                   {"n_ctx_train", c.max_position_embeddings},
                                   {"n_vocab", c.vocab_size},
                                   {"n_params", c.n_params()},
                                   {"n_parallel", options.loop.parallel},
                                   {"size", served.model->weight_bytes()}}}}})}};
}

std::string Server::metrics_text() const {
  const LoopMetrics m = loop->metrics();
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    out += fmt::format("# HELP dsmoe:{} {}\n# TYPE dsmoe:{} {}\ndsmoe:{} {}\n", name, help, name, type, name, value);
  };
  metric("prompt_tokens_total", "counter", "Prompt tokens evaluated (cached ones not counted).",
         static_cast<double>(m.prompt_tokens));
  metric("prompt_seconds_total", "counter", "Time spent evaluating prompts.", m.prompt_seconds);
  metric("tokens_predicted_total", "counter", "Tokens generated.", static_cast<double>(m.generated_tokens));
  metric("tokens_predicted_seconds_total", "counter", "Time spent generating (summed over requests).",
         m.generation_seconds);
  metric("requests_total", "counter", "Requests finished (completed or cancelled).", static_cast<double>(m.requests));
  metric("decode_steps_total", "counter", "Batched decode steps run.", static_cast<double>(m.decode_steps));
  metric("requests_processing", "gauge", "Requests holding a slot.", static_cast<double>(m.processing));
  metric("requests_deferred", "gauge", "Requests waiting for a slot.", static_cast<double>(m.queued));
  metric("kv_cache_tokens", "gauge", "Positions held in the slots' KV caches.", static_cast<double>(m.kv_used));
  metric("kv_cache_usage_ratio", "gauge", "KV-cache positions used / available.",
         m.kv_capacity > 0 ? static_cast<double>(m.kv_used) / static_cast<double>(m.kv_capacity) : 0.0);
  return out;
}

// Runs a handler with every dsmoe/JSON error mapped to a 4xx/5xx OpenAI error body.
template <typename Fn>
httplib::Server::Handler guarded(Fn fn) {
  return [fn](const httplib::Request& req, httplib::Response& res) {
    try {
      fn(req, res);
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const Error& e) {  // the tokenizer or template refusing the input
      send_error(res, ApiError(400, e.what()));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, e.what(), "", "", "server_error"));
    }
  };
}

void Server::routes() {
  struct Route {
    const char* path;
    const char* method;
    httplib::Server::Handler handler;
  };
  auto chat = guarded([this](const httplib::Request& q, httplib::Response& s) { completions(q, s, Endpoint::kChat); });
  auto complete =
      guarded([this](const httplib::Request& q, httplib::Response& s) { completions(q, s, Endpoint::kCompletion); });
  auto models = guarded([this](const httplib::Request&, httplib::Response& s) { send_json(s, 200, models_json()); });
  const std::vector<Route> table = {
      {"/health", "GET",
       [](const httplib::Request&, httplib::Response& s) {
         send_json(s, 200, {{"status", "ok"}});
       }},
      {"/v1/models", "GET", models},
      {"/models", "GET", models},
      {"/v1/chat/completions", "POST", chat},
      {"/chat/completions", "POST", chat},
      {"/v1/completions", "POST", complete},
      {"/completions", "POST", complete},
      {"/tokenize", "POST", guarded([this](const httplib::Request& q, httplib::Response& s) {
         send_json(s, 200, tokenize_json(parse_body(q.body), tokenizer()));
       })},
      {"/detokenize", "POST", guarded([this](const httplib::Request& q, httplib::Response& s) {
         send_json(s, 200, detokenize_json(parse_body(q.body), tokenizer()));
       })},
      {"/metrics", "GET",
       [this](const httplib::Request&, httplib::Response& s) {
         s.set_content(metrics_text(), "text/plain; version=0.0.4");
       }},
      {"/", "GET",
       [](const httplib::Request&, httplib::Response& s) { s.set_content(kChatPage, "text/html; charset=utf-8"); }},
  };
  // Each path answers its own method; the others get 405 naming the allowed one.
  for (const Route& r : table) {
    const std::string method = r.method, path = r.path;
    auto not_allowed = [method, path](const httplib::Request& q, httplib::Response& s) {
      s.set_header("Allow", method);
      send_error(s, ApiError(405, fmt::format("{} {} is not allowed: use {}", q.method, path, method)));
    };
    if (method == "GET")
      http.Get(path, r.handler);
    else
      http.Post(path, r.handler);
    if (method != "GET") http.Get(path, not_allowed);
    if (method != "POST") http.Post(path, not_allowed);
    http.Put(path, not_allowed);
    http.Patch(path, not_allowed);
    http.Delete(path, not_allowed);
  }
}

}  // namespace

int run_server(const ServerOptions& options, const std::function<ServedModel()>& load) {
  check(options.port >= 0 && options.port <= 65535, "--port must be in [0, 65535], not {}", options.port);
  check(options.loop.parallel >= 1, "--parallel must be >= 1");
  check(options.max_body >= 1024, "--max-body must be at least 1024 bytes");
  // SIGINT/SIGTERM go to one waiting thread (blocked everywhere else, before any thread starts).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // internal: wakes the waiting thread when the server ends for another reason
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Server server(options);
  httplib::Server& http = server.http;
  const size_t workers =
      static_cast<size_t>(std::clamp<int64_t>(2 * options.loop.parallel + options.loop.max_queue + 8, 16, 512));
  http.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  http.set_payload_max_length(options.max_body);
  http.set_read_timeout(options.read_timeout_s, 0);
  http.set_write_timeout(options.read_timeout_s, 0);
  http.set_keep_alive_timeout(5);

  http.set_pre_routing_handler([&server, &options](const httplib::Request& req, httplib::Response& res) {
    res.set_header("Access-Control-Allow-Origin", "*");
    if (req.method == "OPTIONS") {  // CORS preflight
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.status = 204;
      return httplib::Server::HandlerResponse::Handled;
    }
    if (server.state.load() != kReady) {
      send_error(res, ApiError(503, "Loading model", "", "", "unavailable_error"));
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!options.api_key.empty() && req.path != "/health" && req.path != "/" &&
        req.get_header_value("Authorization") != "Bearer " + options.api_key) {
      send_error(res, ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')", "",
                               "invalid_api_key", "authentication_error"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Statuses cpp-httplib sets itself (unknown route 404, body too large 413, unreadable request 400) get
  // OpenAI's error body too.
  http.set_error_handler(
      httplib::Server::HandlerWithResponse([&options](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string message;
        if (res.status == 404)
          message = fmt::format("not found: {} {}", req.method, req.path);
        else if (res.status == 413)
          message = fmt::format("the request body is larger than {} bytes (--max-body)", options.max_body);
        else
          message = fmt::format("bad request (HTTP {})", res.status);
        send_json(res, res.status, error_json(ApiError(res.status, message)));
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string message = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, message, "", "", "server_error"));
  });
  server.routes();

  int port = options.port;
  if (port == 0) {
    port = http.bind_to_any_port(options.host);
    check(port > 0, "cannot listen on {} (any port)", options.host);
  } else {
    check(http.bind_to_port(options.host, port), "cannot listen on {}:{} (in use, or not an address of this machine)",
          options.host, port);
  }
  fmt::print(stderr, "dsmoe serve: listening on http://{}:{} (model loading)\n", options.host, port);

  // stop() is a no-op until the listener runs: wait for it (it starts right after this).
  auto stop_http = [&http] {
    for (int i = 0; i < 5000 && !http.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    http.stop();
  };
  std::string load_error;
  std::thread loader([&] {
    try {
      server.served = load();
      const ServedModel& s = server.served;
      check(s.tokenizer.has_value(),
            "serve needs a tokenizer: --tokenizer DIR, tokenizer.json in the model "
            "directory, or a GGUF file's tokenizer");
      server.chat_template = std::make_unique<text::ChatTemplate>(
          s.chat_template.empty() ? text::chat_template_for(*s.tokenizer)
                                  : text::ChatTemplate::from_jinja(s.chat_template));
      const ModelConfig& c = s.model->config;
      LoopOptions loop = options.loop;
      if (loop.ctx <= 0) loop.ctx = std::min<int64_t>(2048, c.max_position_embeddings);
      check(loop.ctx <= c.max_position_embeddings, "--ctx {} exceeds the model's max_position_embeddings {}", loop.ctx,
            c.max_position_embeddings);
      if (c.eos_token_id >= 0) server.eos_ids.push_back(static_cast<int32_t>(c.eos_token_id));
      if (s.tokenizer->eos_id() >= 0 && s.tokenizer->eos_id() != c.eos_token_id)
        server.eos_ids.push_back(s.tokenizer->eos_id());
      server.loop = std::make_unique<EngineLoop>(*s.model, &*s.tokenizer, loop);
      server.state.store(kReady);
      fmt::print(stderr, "dsmoe serve: ready: {} ({} slot{} of {} tokens)\n", options.model_name, loop.parallel,
                 loop.parallel == 1 ? "" : "s", loop.ctx);
    } catch (const std::exception& e) {
      load_error = e.what();
      server.state.store(kFailed);
      stop_http();
    }
  });
  std::atomic<bool> by_signal{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGUSR1) return;
    by_signal.store(true);
    fmt::print(stderr, "dsmoe serve: {} received: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    if (server.state.load() == kLoading) std::_Exit(0);  // nothing is being served yet; loading cannot be interrupted
    if (server.loop) server.loop->shutdown();  // cancels running and queued jobs: their handlers answer and return
    stop_http();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the handlers' last bytes go out
    close_connections(port);
  });
  http.listen_after_bind();
  loader.join();
  if (!by_signal.load()) pthread_kill(waiter.native_handle(), SIGUSR1);
  waiter.join();
  if (server.loop) server.loop->shutdown();
  if (server.state.load() == kFailed) fail("{}", load_error);
  fmt::print(stderr, "dsmoe serve: stopped\n");
  return 0;
}

}  // namespace dsmoe::serve
