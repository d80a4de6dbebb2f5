#include "text/gguf_vocab.h"

#include <limits>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/bpe_trainer.h"
#include "text/unicode.h"

namespace dsmoe::text {
namespace {

using io::GgufFile;
using io::GgufKV;
using io::GgufType;
using io::GgufValue;
using json = nlohmann::json;

// llama.cpp's llama_token_type values (gguf-py TokenType).
enum : int32_t { kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5 };

constexpr const char* kModel = "gpt2";
constexpr const char* kPre = "deepseek-llm";

std::string filler(int64_t id) { return fmt::format("[PAD{}]", id); }

// ---------------------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------------------

// Equal after NFC of both, so that the copy of tokenizer.json whose regex 2 went through NFC (Greek/letterlike
// code points replaced by their canonical equivalents, see pretokenizer.h) is recognised too.
bool is_deepseek_pre_tokenizer(const json& pre) {
  auto canonical = [](const json& j) { return unicode::normalize(j.dump(), unicode::NormForm::NFC); };
  static const std::string reference = canonical(deepseek_pre_tokenizer_json());
  return pre.is_object() && canonical(pre) == reference;
}

bool is_empty_normalizer(const json& n) {
  if (n.is_null()) return true;
  return n.is_object() && n.value("type", "") == "Sequence" && n.contains("normalizers") &&
         n["normalizers"].is_array() && n["normalizers"].empty();
}

// llama.cpp's "gpt2" tokenizer runs no normalizer, its own copy of the named pre-tokenizer, plain BPE over the
// byte-level alphabet and ByteLevel decoding: anything else would tokenize or decode differently there.
void check_llama_gpt2(const Tokenizer& tok) {
  const json& o = tok.outline_json();
  const std::string& src = tok.source();
  check(is_deepseek_pre_tokenizer(o.value("pre_tokenizer", json())),
        "{}: the pre_tokenizer has no llama.cpp name (only DeepSeek LLM's, {:?}, is known): llama.cpp would "
        "tokenize differently",
        src, kPre);
  check(is_empty_normalizer(o.value("normalizer", json())),
        "{}: the tokenizer has a normalizer, which llama.cpp's {:?} tokenizer does not run", src, kModel);
  const json decoder = o.value("decoder", json());
  check(decoder.is_object() && decoder.value("type", "") == "ByteLevel",
        "{}: the decoder is not ByteLevel, which llama.cpp's {:?} tokenizer assumes", src, kModel);
  const json model = o.value("model", json::object());
  for (const char* key :
       {"unk_token", "byte_fallback", "ignore_merges", "continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it == model.end() || it->is_null() || *it == false || *it == "") continue;
    fail("{}: BPE option {} = {} has no equivalent in llama.cpp's {:?} tokenizer", src, key, it->dump(), kModel);
  }
}

// The llama.cpp converter's rule: added tokens that are special, or look like control tokens, are CONTROL.
bool looks_special(const std::string& t) {
  auto wrapped = [&](std::string_view open, std::string_view close) {
    return t.size() >= open.size() + close.size() && t.compare(0, open.size(), open) == 0 &&
           t.compare(t.size() - close.size(), close.size(), close) == 0;
  };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
         wrapped("<\xEF\xBD\x9C", "\xEF\xBD\x9C>") || wrapped("<unused", ">");
}

// tokens[id] and token_type[id] for ids 0..vocab_size-1.
std::pair<std::vector<std::string>, std::vector<int64_t>> token_arrays(const Tokenizer& tok, int64_t vocab_size) {
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  tokens.reserve(static_cast<size_t>(vocab_size));
  types.reserve(static_cast<size_t>(vocab_size));
  for (int64_t i = 0; i < vocab_size; ++i) {
    const auto id = static_cast<int32_t>(i);
    const Tokenizer::TokenKind kind = tok.token_kind(id);
    if (kind == Tokenizer::TokenKind::Missing) {
      tokens.push_back(filler(i));
      types.push_back(kUnused);
      continue;
    }
    tokens.push_back(tok.token_piece(id));
    if (kind == Tokenizer::TokenKind::Normal)
      types.push_back(kNormal);
    else if (kind == Tokenizer::TokenKind::Special || looks_special(tokens.back()))
      types.push_back(kControl);
    else
      types.push_back(kUserDefined);
  }
  return {std::move(tokens), std::move(types)};
}

// "left right" in rank order; llama.cpp cuts each at its first space, so pieces must have none.
std::vector<std::string> merge_strings(const Tokenizer& tok) {
  std::vector<std::string> out;
  out.reserve(tok.merges().size());
  for (const auto& [a, b] : tok.merges()) {
    const std::string& left = tok.token_piece(a);
    const std::string& right = tok.token_piece(b);
    check(left.find(' ') == std::string::npos && right.find(' ') == std::string::npos,
          "{}: merge #{} ({:?} {:?}) has a space inside a token, which llama.cpp's merge list cannot hold",
          tok.source(), out.size(), left, right);
    out.push_back(left + " " + right);
  }
  return out;
}

// tokenizer_config's pad_token when it names a token, else EOS (DeepSeek pads with EOS).
int32_t pad_id(const Tokenizer& tok) {
  const json& cfg = tok.config();
  const json pad = cfg.is_object() ? cfg.value("pad_token", json()) : json();
  const json content = pad.is_object() ? pad.value("content", json()) : pad;  // a string or {"content": ...}
  if (content.is_string())
    if (auto id = tok.token_to_id(content.get<std::string>())) return *id;
  return tok.eos_id();
}

// ---------------------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------------------

bool is_int_elem(GgufType t) {
  return t != GgufType::STRING && t != GgufType::ARRAY && t != GgufType::FLOAT32 && t != GgufType::FLOAT64 &&
         t != GgufType::BOOL;
}

const std::vector<int64_t>& get_ints(const GgufFile& f, const std::string& key) {
  const GgufValue& v = f.get(key);
  if (v.type != GgufType::ARRAY || !is_int_elem(v.elem)) fail("{}: key {} is not an array of integers", f.path(), key);
  return v.ints;
}

bool get_bool_or(const GgufFile& f, const std::string& key, bool fallback) {
  const GgufValue* v = f.find(key);
  if (!v) return fallback;
  if (v->type != GgufType::BOOL) fail("{}: key {} is {}, expected a bool", f.path(), key, io::gguf_type_name(v->type));
  return v->b;
}

// A token id key, or -1 when absent.
int64_t get_id_or_none(const GgufFile& f, const std::string& key, size_t n_tokens) {
  if (!f.find(key)) return -1;
  const int64_t id = f.get_int(key);
  check(id >= 0 && id < static_cast<int64_t>(n_tokens), "{}: key {} = {} is not a token id (there are {} tokens)",
        f.path(), key, id, n_tokens);
  return id;
}

void check_model_and_pre(const GgufFile& f) {
  const std::string model = f.get_string("tokenizer.ggml.model");
  check(model == kModel, "{}: key tokenizer.ggml.model is {:?}: only {:?} (byte-level BPE) is supported", f.path(),
        model, kModel);
  const std::string pre = f.get_string("tokenizer.ggml.pre");
  check(pre == kPre, "{}: key tokenizer.ggml.pre is {:?}: only {:?} is supported (no other pre-tokenizer is built in)",
        f.path(), pre, kPre);
}

json added_token_json(int64_t id, const std::string& content, bool special) {
  return {{"id", id},        {"content", content},     {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", !special}, {"special", special}};
}

// The tokenizer.json "model.vocab" and "added_tokens" from the token and token-type arrays.
std::pair<json, json> vocab_json(const GgufFile& f, const std::vector<std::string>& tokens,
                                 const std::vector<int64_t>& types) {
  check(types.size() == tokens.size(), "{}: key tokenizer.ggml.token_type has {} entries for {} tokens", f.path(),
        types.size(), tokens.size());
  json vocab = json::object(), added = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto id = static_cast<int64_t>(i);
    auto [it, inserted] = vocab.emplace(tokens[i], id);
    check(inserted, "{}: key tokenizer.ggml.tokens: token {:?} appears at ids {} and {}", f.path(), tokens[i],
          it->get<int64_t>(), id);
    const int64_t type = types[i];
    const bool is_filler = (type == kUserDefined || type == kUnused) && tokens[i] == filler(id);
    check(type == kNormal || type == kControl || type == kUserDefined || type == kUnused,
          "{}: key tokenizer.ggml.token_type: token {} has type {} (supported: 1 normal, 3 control, "
          "4 user-defined, 5 unused)",
          f.path(), id, type);
    if ((type == kControl || type == kUserDefined) && !is_filler)
      added.push_back(added_token_json(id, tokens[i], type == kControl));
  }
  return {std::move(vocab), std::move(added)};
}

// tokenizer_config: BOS/EOS/PAD contents, add_bos/add_eos, the chat template.
json config_json(const GgufFile& f, const std::vector<std::string>& tokens) {
  json cfg = {{"add_bos_token", get_bool_or(f, "tokenizer.ggml.add_bos_token", false)},
              {"add_eos_token", get_bool_or(f, "tokenizer.ggml.add_eos_token", false)}};
  const std::pair<const char*, const char*> ids[] = {{"tokenizer.ggml.bos_token_id", "bos_token"},
                                                     {"tokenizer.ggml.eos_token_id", "eos_token"},
                                                     {"tokenizer.ggml.padding_token_id", "pad_token"}};
  for (const auto& [key, field] : ids)
    if (const int64_t id = get_id_or_none(f, key, tokens.size()); id >= 0) cfg[field] = tokens[static_cast<size_t>(id)];
  if (f.find("tokenizer.chat_template")) cfg["chat_template"] = f.get_string("tokenizer.chat_template");
  return cfg;
}

}  // namespace

std::vector<GgufKV> tokenizer_to_gguf(const Tokenizer& tok, int64_t vocab_size) {
  check(vocab_size >= tok.vocab_size() && vocab_size <= std::numeric_limits<int32_t>::max(),
        "{}: vocab_size {} cannot hold the tokenizer's {} token ids", tok.source(), vocab_size, tok.vocab_size());
  check_llama_gpt2(tok);
  auto [tokens, types] = token_arrays(tok, vocab_size);
  std::vector<GgufKV> kvs = {
      {"tokenizer.ggml.model", GgufValue::str(kModel)},
      {"tokenizer.ggml.pre", GgufValue::str(kPre)},
      {"tokenizer.ggml.tokens", GgufValue::str_array(std::move(tokens))},
      {"tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, std::move(types))},
      {"tokenizer.ggml.merges", GgufValue::str_array(merge_strings(tok))},
  };
  const std::pair<const char*, int32_t> ids[] = {{"tokenizer.ggml.bos_token_id", tok.bos_id()},
                                                 {"tokenizer.ggml.eos_token_id", tok.eos_id()},
                                                 {"tokenizer.ggml.padding_token_id", pad_id(tok)}};
  for (const auto& [key, id] : ids)
    if (id >= 0) kvs.push_back({key, GgufValue::u32(static_cast<uint32_t>(id))});
  kvs.push_back({"tokenizer.ggml.add_bos_token", GgufValue::boolean(tok.add_bos())});
  kvs.push_back({"tokenizer.ggml.add_eos_token", GgufValue::boolean(tok.add_eos())});
  const json& cfg = tok.config();
  if (cfg.is_object() && cfg.contains("chat_template") && cfg["chat_template"].is_string())
    kvs.push_back({"tokenizer.chat_template", GgufValue::str(cfg["chat_template"].get<std::string>())});
  return kvs;
}

Tokenizer tokenizer_from_gguf(const GgufFile& file) {
  check_model_and_pre(file);
  const std::vector<std::string>& tokens = file.get_strings("tokenizer.ggml.tokens");
  auto [vocab, added] = vocab_json(file, tokens, get_ints(file, "tokenizer.ggml.token_type"));
  const std::vector<std::string>& merges = file.get_strings("tokenizer.ggml.merges");
  const json tokenizer = {
      {"version", "1.0"},
      {"added_tokens", std::move(added)},
      {"normalizer", nullptr},
      {"pre_tokenizer", deepseek_pre_tokenizer_json()},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", bpe_model_json(std::move(vocab), json(merges))},
  };
  return Tokenizer::from_json(tokenizer, config_json(file, tokens), file.path());
}

bool gguf_has_tokenizer(const GgufFile& file) { return file.find("tokenizer.ggml.model") != nullptr; }

}  // namespace dsmoe::text
