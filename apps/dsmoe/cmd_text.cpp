// Text commands of the dsmoe CLI: tokenizer train, data prepare, data synth, tokenize, detokenize, chat-template.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "text/bpe_trainer.h"
#include "text/chat_prompt.h"
#include "text/corpus.h"
#include "text/synth.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace dsmoe::cli {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open {}", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

namespace fs = std::filesystem;
using text::Tokenizer;

// A token's bytes shown on one line: control characters and invalid UTF-8 escaped.
std::string printable_piece(const std::string& bytes) {
  std::string out;
  const std::string valid = text::unicode::replace_invalid_utf8(bytes);
  if (valid != bytes) {
    for (unsigned char c : bytes)
      out += c < 0x80 && c >= 0x20 ? std::string(1, static_cast<char>(c)) : fmt::format("\\x{:02x}", c);
    return out;
  }
  for (char c : bytes) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else if (static_cast<unsigned char>(c) < 0x20)
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    else
      out += c;
  }
  return out;
}

struct TokenizerTrainArgs {
  std::vector<std::string> inputs;
  std::string out;
  int64_t vocab_size = 8192, min_frequency = 2;
};
int run_tokenizer_train(const TokenizerTrainArgs& a) {
  text::BpeTrainOptions options;
  options.vocab_size = a.vocab_size;
  options.min_frequency = a.min_frequency;
  options.threads = num_threads();
  const text::BpeTrainStats s = text::train_bpe(options, a.inputs, a.out);
  fmt::print(
      "trained a {}-token byte-level BPE ({} merges) on {} files, {:.1f} MB, {} words ({} unique) in {:.1f} s -> {}\n",
      s.vocab_size, s.merges, s.input_files, s.input_bytes / 1e6, s.words, s.unique_words,
      s.count_seconds + s.merge_seconds, a.out);
  return 0;
}

struct PrepareArgs {
  std::string tokenizer, out;
  std::vector<std::string> inputs;
  double val_fraction = 0.005;
};
int run_prepare(const PrepareArgs& a) {
  const Tokenizer tok = Tokenizer::load(a.tokenizer);
  text::PrepareOptions o;
  o.inputs = a.inputs;
  o.out_prefix = a.out;
  o.val_fraction = a.val_fraction;
  const text::PrepareStats s = text::prepare_corpus(tok, o);
  fmt::print(
      "{} documents ({:.1f} MB) -> {}.train.bin: {} docs, {} tokens; {}.val.bin: {} docs, {} tokens; "
      "{:.2f} MB/s with {} threads\n",
      s.documents, s.bytes / 1e6, a.out, s.train_documents, s.train_tokens, a.out, s.val_documents, s.val_tokens,
      s.bytes / 1e6 / s.seconds, num_threads());
  if (s.val_documents == 0 && a.val_fraction > 0)
    fmt::print(stderr, "warning: no validation documents ({} documents x val-fraction {} < 1)\n", s.documents,
               a.val_fraction);
  return 0;
}

struct SynthArgs {
  std::string out;
  int64_t bytes = 0;
  uint64_t seed = 0;
};
int run_synth(const SynthArgs& a) {
  const text::SynthStats s = text::write_synth_corpus(a.out, a.bytes, a.seed);
  fmt::print("wrote {} documents, {:.2f} MB to {} (sidecar {}.json):", s.documents, s.bytes / 1e6, a.out, a.out);
  for (const auto& [domain, n] : s.docs_per_domain) fmt::print(" {} {}", domain, n);
  fmt::print("\n");
  return 0;
}

struct TokenizeArgs {
  std::string tokenizer, file, text;
  bool ids = false, bos = false;
};
int run_tokenize(const TokenizeArgs& a) {
  check(a.file.empty() != a.text.empty(), "give either --file FILE or TEXT (exactly one)");
  const Tokenizer tok = Tokenizer::load(a.tokenizer);
  const std::string input = a.file.empty() ? a.text : read_file(a.file);
  std::vector<int32_t> ids = tok.encode(input, false);
  if (a.bos) {
    check(tok.bos_id() >= 0, "--bos: the tokenizer has no BOS token");
    ids.insert(ids.begin(), tok.bos_id());
  }
  if (a.ids) {
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    fmt::print("{}\n", line);
    return 0;
  }
  for (int32_t id : ids) fmt::print("{}\t{}\n", id, printable_piece(tok.token_bytes(id)));
  return 0;
}

struct DetokenizeArgs {
  std::string tokenizer;
  std::vector<std::string> ids;
};
int run_detokenize(const DetokenizeArgs& a) {
  const Tokenizer tok = Tokenizer::load(a.tokenizer);
  std::vector<int32_t> ids;
  for (const std::string& part : a.ids) {
    std::vector<int32_t> more = parse_ids(part);
    ids.insert(ids.end(), more.begin(), more.end());
  }
  for (int32_t id : ids) check(id < tok.vocab_size(), "token id {} is >= the vocabulary size {}", id, tok.vocab_size());
  fmt::print("{}", text::unicode::replace_invalid_utf8(tok.decode(ids)));
  return 0;
}

struct ChatArgs {
  std::string tokenizer, messages, chat_template;
  bool add_generation_prompt = false, ids = false;
};
int run_chat_template(const ChatArgs& a) {
  const Tokenizer tok = Tokenizer::load(a.tokenizer);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(a.messages));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", a.messages, e.what());
  }
  if (j.is_object() && j.contains("messages")) j = j["messages"];
  const std::vector<text::ChatMessage> messages = text::chat_messages_from_json(j);
  if (text::chat_has_system_message(messages))
    fmt::print(stderr, "warning: a system message is not recommended for DeepSeekMoE chat models\n");
  // Template: --chat-template FILE, else the tokenizer config's chat_template, else the built-in DeepSeek one.
  const text::ChatTemplate tpl = a.chat_template.empty() ? text::chat_template_for(tok)
                                                         : text::ChatTemplate::from_jinja(read_file(a.chat_template));
  const std::string bos = tok.bos_id() >= 0 ? tok.token_bytes(tok.bos_id()) : "";
  const std::string eos = tok.eos_id() >= 0 ? tok.token_bytes(tok.eos_id()) : "";
  const std::string rendered = tpl.render(messages, a.add_generation_prompt, bos, eos);
  if (!a.ids) {
    fmt::print("{}", rendered);
    return 0;
  }
  // The template already wrote BOS as text; it is matched as a special token, so no extra BOS is added.
  const std::vector<int32_t> ids = tok.encode(rendered, false);
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  fmt::print("{}\n", line);
  return 0;
}

}  // namespace

void add_text_commands(CLI::App& app, std::vector<Command>& commands) {
  CLI::App* tokenizer_cmd = app.add_subcommand("tokenizer", "tokenizer tools");
  tokenizer_cmd->require_subcommand(1);
  auto tt = std::make_shared<TokenizerTrainArgs>();
  CLI::App* train = tokenizer_cmd->add_subcommand("train", "train a byte-level BPE tokenizer (HF tokenizer.json)");
  train->add_option("--input", tt->inputs, "text files, directories, .jsonl files")->required()->expected(1, -1);
  train->add_option("--vocab-size", tt->vocab_size, "vocabulary size incl. 256 bytes and specials")
      ->check(CLI::PositiveNumber);
  train->add_option("--min-frequency", tt->min_frequency, "pairs seen fewer times are not merged")
      ->check(CLI::PositiveNumber);
  train->add_option("--out", tt->out, "output directory")->required();
  commands.push_back({train, [tt] { return run_tokenizer_train(*tt); }});

  CLI::App* data_cmd = app.add_subcommand("data", "corpus tools");
  data_cmd->require_subcommand(1);
  auto pa = std::make_shared<PrepareArgs>();
  CLI::App* prepare = data_cmd->add_subcommand("prepare", "tokenize text into PREFIX.train.bin / PREFIX.val.bin");
  prepare->add_option("--tokenizer", pa->tokenizer, "tokenizer directory (tokenizer.json)")->required();
  prepare->add_option("--input", pa->inputs, "text files, directories, .jsonl files")->required()->expected(1, -1);
  prepare->add_option("--out", pa->out, "output prefix")->required();
  prepare->add_option("--val-fraction", pa->val_fraction, "share of documents for validation");
  commands.push_back({prepare, [pa] { return run_prepare(*pa); }});
  auto sa = std::make_shared<SynthArgs>();
  CLI::App* synth = data_cmd->add_subcommand("synth", "write the built-in synthetic multi-domain corpus");
  synth->add_option("--out", sa->out, "output text file (sidecar FILE.json)")->required();
  synth->add_option("--bytes", sa->bytes, "size in bytes")->required()->check(CLI::PositiveNumber);
  synth->add_option("--seed", sa->seed, "random seed");
  commands.push_back({synth, [sa] { return run_synth(*sa); }});

  auto ta = std::make_shared<TokenizeArgs>();
  CLI::App* tokenize = app.add_subcommand("tokenize", "text -> token ids");
  tokenize->add_option("--tokenizer", ta->tokenizer, "tokenizer directory")->required();
  tokenize->add_option("--file", ta->file, "read the text from a file");
  tokenize->add_option("text", ta->text, "the text");
  tokenize->add_flag("--ids", ta->ids, "print ids separated by spaces");
  tokenize->add_flag("--bos", ta->bos, "prepend BOS");
  commands.push_back({tokenize, [ta] { return run_tokenize(*ta); }});

  auto da = std::make_shared<DetokenizeArgs>();
  CLI::App* detok = app.add_subcommand("detokenize", "token ids -> text");
  detok->add_option("--tokenizer", da->tokenizer, "tokenizer directory")->required();
  detok->add_option("ids", da->ids, "token ids (spaces or commas)")->required()->expected(1, -1);
  commands.push_back({detok, [da] { return run_detokenize(*da); }});

  auto ca = std::make_shared<ChatArgs>();
  CLI::App* chat = app.add_subcommand("chat-template", "render a conversation with the chat template");
  chat->add_option("--tokenizer", ca->tokenizer, "tokenizer directory (its chat_template, BOS, EOS)")->required();
  chat->add_option("--messages", ca->messages, "JSON file: [{\"role\", \"content\"}...] or {\"messages\": [...]}")
      ->required();
  chat->add_option("--chat-template", ca->chat_template, "Jinja template file overriding the tokenizer's");
  chat->add_flag("--add-generation-prompt", ca->add_generation_prompt, "end with the assistant prompt");
  chat->add_flag("--ids", ca->ids, "print token ids instead of text");
  commands.push_back({chat, [ca] { return run_chat_template(*ca); }});
}

}  // namespace dsmoe::cli
