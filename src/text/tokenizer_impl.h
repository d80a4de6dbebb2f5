// The state of a loaded Tokenizer (Tokenizer::Impl) and the records it holds (added tokens, decoder steps),
// shared by tokenizer_load.cpp (building it from tokenizer.json) and tokenizer.cpp (encoding, decoding, the
// public accessors).
//
// Private to src/text; src/text/tokenizer.h is the public interface.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/bpe_parts.h"
#include "text/pretokenizer.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace dsmoe::text {
namespace detail {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, normalized = true, lstrip = false, rstrip = false, single_word = false;
};

// Decoder steps (per token; Metaspace's first-token rule is applied by decode()).
struct DecodeStep {
  enum Kind { ByteLevel, ByteFallback, Replace, Strip, Metaspace } kind;
  explicit DecodeStep(Kind k, std::string a_ = {}, std::string b_ = {}) : kind(k), a(std::move(a_)), b(std::move(b_)) {}
  std::string a, b;  // Replace: pattern -> content; Strip/Metaspace: the character
  size_t start = 0, stop = 0;
  bool strip_first = false;  // Metaspace: drop the replacement from the first token
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------
// Tokenizer state
// ---------------------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string source;
  nlohmann::json config;
  std::string fingerprint;

  // BPE model
  detail::StringMap<int32_t> vocab;
  std::vector<std::string> pieces;  // id -> vocab string ("" where has_piece is false)
  std::vector<uint8_t> has_piece;
  std::vector<std::string> bytes;  // id -> decoded bytes
  detail::PairMap merges;
  std::vector<std::pair<int32_t, int32_t>> merge_list;  // rank order, for merges()
  nlohmann::json outline;                               // for outline_json()
  int32_t unk_id = -1;
  std::string prefix, suffix;  // continuing_subword_prefix, end_of_word_suffix
  bool fuse_unk = false, byte_fallback = false, ignore_merges = false;
  std::array<int32_t, 256> fallback_ids{};
  std::vector<int32_t> char_ids;  // code point < 0x800 -> vocab id of that single character (-1: none)

  // Added tokens
  std::vector<detail::AddedToken> added;
  std::unordered_map<int32_t, size_t> added_by_id;
  detail::StringMap<size_t> added_by_content;
  detail::AddedMatcher raw_matcher, norm_matcher;

  std::vector<std::unique_ptr<detail::Normalizer>> normalizers;
  detail::PreTokenizer pre;
  std::vector<detail::DecodeStep> decoder;

  int32_t bos = -1, eos = -1;
  bool add_bos = false, add_eos = false;
  int64_t vocab_size = 0;

  detail::BpeCache cache;

  // --- loading ---
  void load_model(const nlohmann::json& m);
  void load_added(const nlohmann::json& a);
  void load_decoder(const nlohmann::json& d);
  void load_config();
  std::string decode_token(int32_t id, bool first) const;

  // --- encoding ---
  void merge_word(std::string_view w, std::vector<int32_t>& out) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.empty()) return;
    if (ignore_merges) {
      if (auto it = vocab.find(piece); it != vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    if (piece.size() > detail::BpeCache::kMaxKeyBytes) {
      merge_word(piece, out);
      return;
    }
    const uint64_t h = detail::hash_bytes(piece);
    if (cache.lookup(piece, h, out)) return;
    const size_t before = out.size();
    merge_word(piece, out);
    cache.insert(piece, h, out.data() + before, out.size() - before);
  }
  // Runs the added-token split / normalisation / pre-tokenization; on_added(id) for added tokens,
  // on_piece(pre-token) for the rest, in text order.
  void segments(std::string_view text, detail::FunctionRef<void(int32_t)> on_added,
                detail::FunctionRef<void(std::string_view)> on_piece) const;
  void split_added(const detail::AddedMatcher& m, std::string_view s, detail::FunctionRef<void(int32_t)> on_added,
                   detail::FunctionRef<void(std::string_view, size_t)> on_gap) const;
  void check_utf8(std::string_view text, const char* what) const {
    const size_t bad = unicode::find_invalid_utf8(text);
    check(bad == std::string_view::npos, "{}: {}: input is not valid UTF-8 (byte offset {})", source, what, bad);
  }
};

}  // namespace dsmoe::text
