// Text test helpers: a byte-level tokenizer built in code, so text tests need no files.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "text/bpe_trainer.h"
#include "text/tokenizer.h"

namespace dsmoe::testing {

// Byte-level tokenizer with the DeepSeek pre-tokenizer, <s>=256 and </s>=257 specials, and optional merges (new
// tokens get ids 258, 259, ...). With `eos` false the config names no EOS token.
inline text::Tokenizer byte_tokenizer(const std::vector<std::pair<std::string, std::string>>& merges = {},
                                      bool eos = true) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[text::byte_level_alphabet()[b]] = b;
  nlohmann::json merge_list = nlohmann::json::array();
  int next = 258;
  for (const auto& [a, b] : merges) {
    merge_list.push_back(a + " " + b);
    vocab[a + b] = next++;
  }
  auto special = [](int id, const std::string& content) {
    return nlohmann::json{{"id", id},        {"content", content}, {"special", true},     {"normalized", false},
                          {"lstrip", false}, {"rstrip", false},    {"single_word", false}};
  };
  nlohmann::json tj = {
      {"version", "1.0"},
      {"added_tokens", nlohmann::json::array({special(256, "<s>"), special(257, "</s>")})},
      {"normalizer", nullptr},
      {"pre_tokenizer", text::deepseek_pre_tokenizer_json()},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", text::bpe_model_json(vocab, merge_list)}};
  nlohmann::json cfg = {{"add_bos_token", true}, {"add_eos_token", false}, {"bos_token", "<s>"}};
  if (eos) cfg["eos_token"] = "</s>";
  return text::Tokenizer::from_json(tj, cfg, "byte_tokenizer");
}

}  // namespace dsmoe::testing
