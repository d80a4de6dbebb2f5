// Byte-level BPE tokenizer with the exact semantics of HF `tokenizers` (tokenizer.json), to the token id.
//
// Pipeline of encode(): added tokens are cut out of the raw text first (leftmost-longest; those marked
// "normalized" are matched after normalisation), then each remaining segment is normalised, pre-tokenized and
// BPE-encoded piece by piece. Regexes are Oniguruma patterns (what HF compiles) run through PCRE2 with JIT; see
// src/text/pretokenizer.h for how the two dialects are bridged. Input must be valid UTF-8 (dsmoe::Error
// otherwise). The "post_processor" block is not run: BOS/EOS come from tokenizer_config (add_bos_token /
// add_eos_token). Decoding returns raw bytes (HF would make them lossy UTF-8).
// A Tokenizer is immutable after loading and may be used from many threads at once; copies share their state
// (including the BPE cache, whose reads take no lock).
//
// Supported: model BPE (vocab, merges as "a b" or [a, b], ignore_merges, unk_token/fuse_unk, byte_fallback,
// continuing_subword_prefix, end_of_word_suffix; dropout null/0); normalizers Sequence, NFC, NFD, NFKC, NFKD,
// Lowercase, Strip, StripAccents, Replace, Prepend, ByteLevel; pre-tokenizers Sequence, Split (Regex/String,
// all five behaviours, invert), Digits, ByteLevel, Whitespace, WhitespaceSplit, Metaspace; decoders ByteLevel,
// ByteFallback, Fuse, Replace (String), Strip, Metaspace, Sequence. Anything else is a clear load error.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsmoe::text {

class Tokenizer {
 public:
  // dir holding tokenizer.json (+ optional tokenizer_config.json), or a path to tokenizer.json itself (its
  // folder is then searched for tokenizer_config.json).
  static Tokenizer load(const std::string& path);
  // `source` names the origin in error messages. tokenizer_config may be null.
  static Tokenizer from_json(const nlohmann::json& tokenizer_json, const nlohmann::json& tokenizer_config,
                             const std::string& source);

  // Encode raw text. add_special = true adds BOS/EOS as tokenizer_config's add_bos_token/add_eos_token say.
  std::vector<int32_t> encode(std::string_view text, bool add_special = false) const;
  // Bytes of the ids concatenated (may be invalid UTF-8 mid-stream; special tokens render as their content).
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string token_bytes(int32_t id) const;         // bytes one token stands for
  const std::string& token_piece(int32_t id) const;  // the vocab string as stored (byte-level alphabet)
  std::optional<int32_t> token_to_id(std::string_view piece) const;
  int32_t bos_id() const;  // -1 if none
  int32_t eos_id() const;  // -1 if none
  bool add_bos() const;
  bool add_eos() const;
  int64_t vocab_size() const;              // max id + 1
  const nlohmann::json& config() const;    // tokenizer_config.json (null json if absent) — chat_template lives there
  const std::string& fingerprint() const;  // SHA-256 (hex) of the canonical dump of tokenizer.json
  const std::string& source() const;       // where it was loaded from

  // Pre-tokenization alone (added-token split + normalizer + pre_tokenizer), for the BPE trainer: calls fn for
  // each pre-token in the form the model sees (byte-level alphabet). Added tokens are atomic: they are not
  // passed to fn, and no pre-token spans across one.
  void pre_tokenize(std::string_view text, const std::function<void(std::string_view)>& fn) const;

  // Views for exporters (the GGUF vocabulary, text/gguf_vocab.h). Cheap: nothing is copied.
  enum class TokenKind { Missing, Normal, Added, Special };  // Added/Special: an "added_tokens" entry
  TokenKind token_kind(int32_t id) const;                    // Missing: no token has this id
  // The model's merges as (left id, right id) in rank order, as listed (a repeated pair each time).
  const std::vector<std::pair<int32_t, int32_t>>& merges() const;
  // tokenizer.json as loaded minus model.vocab and model.merges (the large parts; token_piece() and merges()
  // give them): the normalizer, pre_tokenizer and decoder blocks, the model options, added_tokens.
  const nlohmann::json& outline_json() const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// The pre_tokenizer JSON block of the DeepSeek LLM tokenizer (5 Split Isolated regexes + Digits individual +
// ByteLevel without prefix space or regex), embedded so that the default build does not need ../shared. Regex 2
// carries the original Greek/letterlike code points (U+1F7D, U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A), not the
// NFC-damaged copy that circulates (see pretokenizer.h).
const nlohmann::json& deepseek_pre_tokenizer_json();

// GPT-2 byte<->unicode alphabet used by ByteLevel: byte -> UTF-8 of its stand-in code point.
const std::array<std::string, 256>& byte_level_alphabet();

}  // namespace dsmoe::text
