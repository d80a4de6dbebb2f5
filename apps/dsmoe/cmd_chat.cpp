// dsmoe chat: an interactive conversation with a chat model, one reply per input line.
//
// Each turn renders the whole conversation with the chat template (generation prompt included), tokenizes it the
// way `dsmoe chat-template --ids` does, and reuses the KV cache: only the tokens after the longest common prefix of
// the cached ids and the new prompt are evaluated. The reply streams as it is sampled (stop strings held back, as in
// generate) and becomes the assistant message of the next render.
//
// Input: one message per line. Ctrl-D (EOF), /exit or /quit end the session (exit 0); /reset clears the
// conversation and the cache; empty lines are ignored. Ctrl-C while a reply is generated stops that reply (the part
// already generated is kept as the assistant message); Ctrl-C at the prompt asks for confirmation: a second Ctrl-C in
// a row there ends the session (exit 0), any line in between cancels it.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "infer/engine.h"
#include "infer/generation.h"
#include "infer/sampling.h"
#include "model_loading.h"
#include "text/chat_prompt.h"
#include "text/tokenizer.h"

namespace dsmoe::cli {
namespace {

namespace fs = std::filesystem;
using text::ChatMessage;

// ---- Ctrl-C ----
// The handler only sets a flag; the generation loop polls it between tokens, and the line reader waits in ppoll()
// with SIGINT unblocked only inside the wait, so a Ctrl-C is never lost between "check the flag" and "block".
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the SIGINT flag must be async-signal-safe");
void on_sigint(int) { g_interrupted.store(true); }

class SigintHandler {
 public:
  SigintHandler() {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // writes and reads resume; ppoll() is never restarted, which is what the reader needs
    installed_ = sigaction(SIGINT, &sa, &old_) == 0;
  }
  ~SigintHandler() {
    if (installed_) sigaction(SIGINT, &old_, nullptr);
  }
  SigintHandler(const SigintHandler&) = delete;
  SigintHandler& operator=(const SigintHandler&) = delete;

 private:
  struct sigaction old_ {};
  bool installed_ = false;
};

// Lines from stdin (fd 0) with read(2): a Ctrl-C while waiting is reported instead of being taken for end of input.
class LineReader {
 public:
  enum class Status { kLine, kEof, kInterrupted };
  Status next(std::string& line) {
    for (;;) {
      const size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        line.assign(buffer_, 0, nl);
        buffer_.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return Status::kLine;
      }
      if (eof_) {
        if (buffer_.empty()) return Status::kEof;
        line = std::move(buffer_);  // a last line without '\n'
        buffer_.clear();
        return Status::kLine;
      }
      sigset_t block, old;
      sigemptyset(&block);
      sigaddset(&block, SIGINT);
      sigprocmask(SIG_BLOCK, &block, &old);
      int ready = 0;
      int poll_errno = 0;
      if (!g_interrupted.load()) {
        pollfd p{0, POLLIN, 0};
        ready = ppoll(&p, 1, nullptr, &old);  // SIGINT unblocked only while waiting
        poll_errno = errno;
      }
      sigprocmask(SIG_SETMASK, &old, nullptr);
      if (g_interrupted.load()) return Status::kInterrupted;
      if (ready < 0) {
        if (poll_errno == EINTR) continue;  // another signal
        fail("reading standard input: {}", std::strerror(poll_errno));
      }
      char chunk[4096];
      const ssize_t n = ::read(0, chunk, sizeof chunk);  // ready: does not block
      if (n > 0)
        buffer_.append(chunk, static_cast<size_t>(n));
      else if (n == 0)
        eof_ = true;
      else if (errno != EINTR && errno != EAGAIN)
        fail("reading standard input: {}", std::strerror(errno));
    }
  }

 private:
  std::string buffer_;
  bool eof_ = false;
};

// ---- helpers ----
constexpr const char* kSpace = " \t\r\n";

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(kSpace);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

// ---- dsmoe chat ----
struct ChatArgs {
  std::string model, tokenizer, system, chat_template;
  int64_t ctx = 0, max_new_tokens = 512;
  SamplingParams sampling;  // llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05
  std::vector<std::string> stops;
  bool ignore_eos = false, no_kv_reuse = false, no_mmap = false, verbose = false;
  bool has_system = false;
};

int run_chat(const ChatArgs& a) {
  // Fail before loading possibly large weights when no tokenizer can be found (a GGUF file may carry one).
  check(!a.tokenizer.empty() || !fs::is_directory(a.model) || fs::exists(fs::path(a.model) / "tokenizer.json"),
        "chat needs a tokenizer: --tokenizer DIR, or tokenizer.json in the model directory {}", a.model);
  a.sampling.validate();
  if (a.has_system)
    fmt::print(stderr,
               "warning: DeepSeek chat models were not trained with a system prompt; its authors do not "
               "recommend one\n");
  LoadOptions load_options;
  load_options.use_mmap = !a.no_mmap;
  load_options.verbose = a.verbose;
  LoadedModel loaded = load_for_inference(a.model, a.tokenizer, load_options);
  check(loaded.tokenizer.has_value(),
        "chat needs a tokenizer: --tokenizer DIR, tokenizer.json in the model directory, or a GGUF file's tokenizer");
  const text::Tokenizer& tok = *loaded.tokenizer;
  const ModelConfig& config = loaded.model->config;
  const int64_t V = config.vocab_size;
  const int64_t ctx = a.ctx > 0 ? a.ctx : std::min<int64_t>(4096, config.max_position_embeddings);
  check(ctx <= config.max_position_embeddings, "--ctx {} exceeds the model's max_position_embeddings {}", ctx,
        config.max_position_embeddings);
  // --chat-template FILE, else the tokenizer config's, else DeepSeek's.
  const text::ChatTemplate tpl = a.chat_template.empty() ? text::chat_template_for(tok)
                                                         : text::ChatTemplate::from_jinja(read_file(a.chat_template));
  std::vector<int32_t> eos_ids;
  if (!a.ignore_eos) {
    if (config.eos_token_id >= 0) eos_ids.push_back(config.eos_token_id);
    if (tok.eos_id() >= 0 && tok.eos_id() != config.eos_token_id) eos_ids.push_back(tok.eos_id());
  }

  // The prompt ids of a conversation: what `dsmoe chat-template --add-generation-prompt --ids` prints (the template
  // writes BOS as text, matched as the special token); BOS is added only when the tokenizer config asks for it and
  // the template did not write it.
  auto prompt_ids = [&](const std::vector<ChatMessage>& messages) {
    std::vector<int32_t> ids = text::chat_prompt_ids(tpl, tok, messages);
    for (int32_t t : ids) check(t < V, "prompt token {} is >= the model's vocab_size {}", t, V);
    return ids;
  };

  InferenceSession session(*loaded.model, ctx);
  std::vector<int32_t> cached;  // exactly the ids whose K/V are in the session's cache
  uint64_t turn = 0;            // replies since the conversation started: each samples with seed + turn
  std::vector<ChatMessage> messages;
  auto start_conversation = [&] {
    messages.clear();
    if (a.has_system) messages.push_back({"system", a.system});
    session.reset();
    cached.clear();
    turn = 0;
  };
  start_conversation();
  const size_t first_turn = messages.size();  // messages before it (the system prompt) are never dropped
  // Room kept for a reply when old turns must go to make the prompt fit.
  const int64_t reserve = std::max<int64_t>(1, std::min<int64_t>(a.max_new_tokens, ctx / 4));

  const bool interactive = isatty(0) != 0;
  if (interactive)
    fmt::print(stderr,
               "chat with {} (context {} tokens): /reset clears the conversation, /exit or Ctrl-D quits, "
               "Ctrl-C stops a reply\n",
               a.model, ctx);
  SigintHandler sigint;
  g_interrupted.store(false);
  LineReader reader;
  bool interrupted_at_prompt = false;
  std::string line;
  for (;;) {
    if (interactive) {
      fmt::print("> ");
      std::fflush(stdout);
    }
    const LineReader::Status status = reader.next(line);
    if (status == LineReader::Status::kEof) {
      if (interactive) fmt::print("\n");
      break;
    }
    if (status == LineReader::Status::kInterrupted) {
      g_interrupted.store(false);
      if (interrupted_at_prompt) {
        fmt::print("\n");
        break;
      }
      interrupted_at_prompt = true;
      fmt::print(stderr, "\n(Ctrl-C again to quit; /exit or Ctrl-D also quit)\n");
      continue;
    }
    interrupted_at_prompt = false;
    const std::string command = trim(line);
    if (command.empty()) continue;
    if (command == "/exit" || command == "/quit") break;
    if (command == "/reset") {
      start_conversation();
      fmt::print(stderr, "(conversation cleared)\n");
      continue;
    }

    messages.push_back({"user", line});
    try {
      // Render; while the prompt leaves too little room for a reply, drop the oldest exchange (user message and
      // the replies that follow it). A message that cannot fit even alone is refused and nothing is dropped.
      std::vector<int32_t> prompt = prompt_ids(messages);
      auto too_long = [&](const std::vector<int32_t>& ids) { return static_cast<int64_t>(ids.size()) + reserve > ctx; };
      if (too_long(prompt) && messages.size() > first_turn + 1) {
        std::vector<ChatMessage> alone(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(first_turn));
        alone.push_back(messages.back());
        std::vector<int32_t> minimal = prompt_ids(alone);
        if (static_cast<int64_t>(minimal.size()) >= ctx)
          prompt = std::move(minimal);  // refused below
        else
          while (too_long(prompt) && messages.size() > first_turn + 1) {
            auto end = messages.begin() + static_cast<std::ptrdiff_t>(first_turn) + 1;
            while (end != messages.end() - 1 && end->role != "user") ++end;
            const size_t dropped = static_cast<size_t>(end - messages.begin()) - first_turn;
            messages.erase(messages.begin() + static_cast<std::ptrdiff_t>(first_turn), end);
            prompt = prompt_ids(messages);
            fmt::print(stderr,
                       "(context of {} tokens full: dropped the {} oldest message{}; the prompt is now {} tokens)\n",
                       ctx, dropped, dropped == 1 ? "" : "s", prompt.size());
          }
      }
      if (static_cast<int64_t>(prompt.size()) >= ctx) {
        fmt::print(stderr,
                   "error: the message makes a prompt of {} tokens, which does not fit the context of {} "
                   "tokens (--ctx); it was not sent\n",
                   prompt.size(), ctx);
        messages.pop_back();
        continue;
      }
      check(!prompt.empty(), "the chat template rendered an empty prompt");

      // KV-cache reuse: keep the longest common prefix, evaluate the rest (at least one token, for the logits).
      if (a.no_kv_reuse) {
        session.reset();
        cached.clear();
      }
      size_t keep = 0;
      while (keep < cached.size() && keep < prompt.size() && cached[keep] == prompt[keep]) ++keep;
      if (keep == prompt.size()) --keep;
      session.truncate(static_cast<int64_t>(keep));
      cached.resize(keep);
      const int64_t n_eval = static_cast<int64_t>(prompt.size() - keep);
      // Sample and stream the reply: leading whitespace (the template writes "Assistant: " itself) is not shown and
      // not kept; bytes that could start a stop string are held back. Each turn draws from its own seeded stream.
      GenerationOptions options;
      options.sampling = a.sampling;
      options.sampling.seed = a.sampling.seed + turn++;
      options.max_tokens = a.max_new_tokens;
      options.stops = a.stops;
      options.eos_ids = eos_ids;
      options.skip_leading_space = true;
      Generation gen(&tok, options, prompt);
      const std::vector<float>* logits = &session.forward(prompt.data() + keep, n_eval);
      cached = prompt;
      gen.prompt_done(n_eval);
      auto emit = [&] {
        const std::string piece = gen.take_text();
        if (piece.empty()) return;
        fmt::print("{}", piece);
        std::fflush(stdout);
      };
      bool interrupted = g_interrupted.exchange(false), context_full = false;
      if (interrupted) gen.end(Finish::kCancelled);
      while (gen.step(logits->data(), V)) {
        emit();
        if (g_interrupted.exchange(false)) {
          interrupted = true;
          gen.end(Finish::kCancelled);
          break;
        }
        if (session.length() >= ctx) {
          context_full = true;
          gen.end(Finish::kLength);
          break;
        }
        const int32_t next = gen.last_token();
        logits = &session.forward(&next, 1);
        cached.push_back(next);
      }
      emit();
      fmt::print("\n");
      std::fflush(stdout);
      messages.push_back({"assistant", gen.text()});
      if (interrupted) fmt::print(stderr, "(reply interrupted)\n");
      if (context_full)
        fmt::print(stderr, "(context of {} tokens full: reply cut; older turns will be dropped)\n", ctx);
      if (a.verbose) {
        fmt::print(stderr, "reused {} cached tokens of a {}-token prompt\n", keep, prompt.size());
        print_timings(gen.timings());
      }
    } catch (const Error& e) {
      // A bad turn (e.g. input that is not UTF-8) is reported and forgotten; the session goes on from a clean cache.
      fmt::print("\n");
      std::fflush(stdout);
      fmt::print(stderr, "error: {}\n", e.what());
      if (!messages.empty() && messages.back().role == "user") messages.pop_back();
      session.reset();
      cached.clear();
    }
  }
  return 0;
}

}  // namespace

void add_chat_commands(CLI::App& app, std::vector<Command>& commands) {
  auto a = std::make_shared<ChatArgs>();
  CLI::App* cmd = app.add_subcommand("chat", "interactive chat with the chat template and KV-cache reuse");
  cmd->add_option("--model", a->model, "HF model directory or GGUF file")->required();
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer directory (default: the model's)");
  cmd->add_option("--system", a->system, "system prompt (not recommended for DeepSeek chat models: warns)");
  cmd->add_option("--chat-template", a->chat_template,
                  "Jinja template file (default: the tokenizer config's chat_template, else DeepSeek's)");
  cmd->add_option("--ctx", a->ctx, "context length in tokens (default: min(4096, max_position_embeddings))")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-new-tokens,-n", a->max_new_tokens, "tokens per reply at most")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_sampling_options(*cmd, a->sampling);
  cmd->add_option("--stop", a->stops, "stop string (repeatable)");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "keep going after the end-of-sequence token");
  cmd->add_flag("--no-kv-reuse", a->no_kv_reuse, "evaluate the whole conversation every turn (for testing)");
  cmd->add_flag("--no-mmap", a->no_mmap, "read the weights into memory instead of mapping them");
  cmd->add_flag("--verbose,-v", a->verbose, "cache reuse and llama.cpp-style timings after each reply (stderr)");
  commands.push_back({cmd, [a, cmd] {
                        a->has_system = cmd->count("--system") > 0;
                        return run_chat(*a);
                      }});
}

}  // namespace dsmoe::cli
