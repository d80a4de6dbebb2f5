// dsmoe serve: the OpenAI-compatible server (src/serve) on a model loaded the way generate and chat load one.
#include <filesystem>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "core/error.h"
#include "core/quant.h"
#include "model_loading.h"
#include "serve/http_server.h"

namespace dsmoe::cli {
namespace {

namespace fs = std::filesystem;

struct ServeArgs {
  std::string model, tokenizer, chat_template, alias, kv_type = "f32";
  serve::ServerOptions server;
  int64_t ctx = 0;
  bool no_mmap = false;
};

int run_serve(ServeArgs& a) {
  // Fail before listening when no tokenizer can be found (a GGUF file may carry one).
  check(fs::exists(a.model), "--model {}: no such file or directory", a.model);
  check(!a.tokenizer.empty() || !fs::is_directory(a.model) || fs::exists(fs::path(a.model) / "tokenizer.json"),
        "serve needs a tokenizer: --tokenizer DIR, or tokenizer.json in the model directory {}", a.model);
  serve::ServerOptions& o = a.server;
  o.loop.kv_type = quant_type_from_name(a.kv_type);
  o.loop.ctx = a.ctx;  // 0: min(2048, the model's max_position_embeddings)
  const fs::path path = fs::path(a.model);
  o.model_name =
      !a.alias.empty() ? a.alias : (path.has_filename() ? path.filename() : path.parent_path().filename()).string();
  const std::string chat_template = a.chat_template.empty() ? "" : read_file(a.chat_template);
  return serve::run_server(o, [&a, chat_template] {
    LoadOptions options;
    options.use_mmap = !a.no_mmap;
    LoadedModel loaded = load_for_inference(a.model, a.tokenizer, options);
    serve::ServedModel served;
    served.model = std::move(loaded.model);
    served.tokenizer = std::move(loaded.tokenizer);
    served.chat_template = chat_template;
    return served;
  });
}

}  // namespace

void add_serve_commands(CLI::App& app, std::vector<Command>& commands) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand("serve",
                                     "OpenAI-compatible HTTP server (chat/completions, completions, models, "
                                     "tokenize, metrics, a chat page at /)");
  serve::ServerOptions& o = a->server;
  cmd->add_option("--model", a->model, "HF model directory or GGUF file")->required();
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer directory (default: the model's)");
  cmd->add_option("--chat-template", a->chat_template,
                  "Jinja template file (default: the tokenizer config's, else DeepSeek's)");
  cmd->add_option("--host", o.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o.port, "port (0: any free port, printed at start)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--parallel", o.loop.parallel, "slots: requests generated at once, batched")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--ctx", a->ctx, "context tokens per slot (default: min(2048, the model's max_position_embeddings))")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--api-key", o.api_key, "require 'Authorization: Bearer KEY' (all routes but /health and /)");
  cmd->add_option("--alias", a->alias, "model id in /v1/models and responses (default: the model file's name)");
  cmd->add_option("--max-queue", o.loop.max_queue, "requests waiting for a slot before 503")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  cmd->add_option("--max-body", o.max_body, "largest request body in bytes (413 above)")
      ->check(CLI::Range(1024, 1 << 30))
      ->capture_default_str();
  cmd->add_option("--prefill-chunk", o.loop.prefill_chunk, "prompt tokens per step while other requests generate")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--timeout", o.read_timeout_s, "seconds a client may take to send its request")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->add_option("--kv-type", a->kv_type, "KV cache type: f32 | f16")
      ->check(CLI::IsMember({"f32", "f16"}))
      ->capture_default_str();
  cmd->add_flag("--no-mmap", a->no_mmap, "read the GGUF weights into memory instead of mapping the file");
  commands.push_back({cmd, [a] { return run_serve(*a); }});
}

}  // namespace dsmoe::cli
