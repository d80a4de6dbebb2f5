// Byte-level BPE training: text files, directories and JSONL -> tokenizer.json + tokenizer_config.json in the
// Hugging Face `tokenizers` layout of the DeepSeek LLM tokenizer (loads with text::Tokenizer and with HF).
//
// Pipeline:
//  1. Pre-tokenize the inputs into "words" and count them. Text files are cut into lines (each keeping its "\n");
//     a JSONL file (name ending .jsonl) gives the "text" field of each line as one unit. Each unit goes through the
//     pre-tokenizer on its own (like HF's trainer, which reads files line by line; for the DeepSeek pre-tokenizer,
//     whose first step isolates every \r and \n, this is the same as pre-tokenizing the whole text). Files are read
//     in blocks and counted in parallel, so memory stays bounded by the block size plus the word table.
//  2. Learn merges with the classic incremental algorithm: pair counts, an index pair -> words containing it, a
//     priority queue with lazy deletion; each merge rewrites only the words that contain the pair.
//
// Merge order: the pair with the highest count (sum over words of occurrences x word frequency) first; ties go to
// the pair whose (left token bytes, right token bytes) is lexicographically smallest, comparing raw bytes as
// unsigned. Pairs counted fewer than min_frequency times are never merged. When two different merges give the same
// byte string, the second reuses the first one's id (as HF does): that merge is listed but adds no token.
//
// Vocabulary: ids 0..255 are the bytes 0..255 (as their byte-level alphabet symbols), then the merged tokens in
// merge order, then the special tokens (special_tokens[0] = BOS, [1] = EOS, then any others). The vocabulary has
// exactly vocab_size entries, or fewer when no pair reaches min_frequency any more (the corpus ran out of pairs).
//
// Deterministic: the same inputs and options give byte-identical files whatever the thread count. Files are written
// atomically (a temporary file in OUT_DIR, then rename).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsmoe::text {

inline constexpr const char* kDeepSeekBos =
    "<\xEF\xBD\x9C"
    "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";
inline constexpr const char* kDeepSeekEos =
    "<\xEF\xBD\x9C"
    "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";

struct BpeTrainOptions {
  int64_t vocab_size = 8192;     // all of it: 256 bytes + merges + special tokens
  int64_t min_frequency = 2;     // pairs counted fewer times are never merged
  nlohmann::json pre_tokenizer;  // HF pre_tokenizer block; null: deepseek_pre_tokenizer_json()
  std::vector<std::string> special_tokens = {kDeepSeekBos, kDeepSeekEos};  // BOS, EOS, then extras
  int threads = 0;                                                         // <= 0: all cores
  int64_t model_max_length = 16384;
};

// A word table: raw bytes of each pre-token -> how often it occurs.
using WordCounts = std::vector<std::pair<std::string, uint64_t>>;

// A learned model, before the special tokens.
struct BpeModel {
  std::vector<std::string> tokens;                  // raw bytes of each token by id: 256 single bytes, then merged
  std::vector<std::pair<int32_t, int32_t>> merges;  // in rank order
  std::vector<int32_t> merge_results;               // id each merge produces (an earlier id when reused)
  std::vector<uint64_t> merge_counts;               // pair count when merged (diagnostics)
};

// Splits a text into pre-token pieces spelled in the byte-level alphabet (what Tokenizer::pre_tokenize gives).
using PreTokenizeFn = std::function<void(std::string_view text, const std::function<void(std::string_view)>& piece)>;

struct BpeTrainStats {
  int64_t input_files = 0, input_bytes = 0, words = 0, unique_words = 0;
  int64_t vocab_size = 0, merges = 0;
  double count_seconds = 0, merge_seconds = 0;
};

// Trains on `inputs` (files or directories) and writes OUT_DIR/tokenizer.json and OUT_DIR/tokenizer_config.json.
BpeTrainStats train_bpe(const BpeTrainOptions& options, const std::vector<std::string>& inputs,
                        const std::string& out_dir);
// The same with an explicit pre-tokenizer (options.pre_tokenizer is still what tokenizer.json records).
BpeTrainStats train_bpe(const BpeTrainOptions& options, const std::vector<std::string>& inputs,
                        const std::string& out_dir, const PreTokenizeFn& pre_tokenize);

// A pre-tokenizer running the HF pre_tokenizer block (null: DeepSeek's) through text::Tokenizer. Thread-safe.
PreTokenizeFn make_pre_tokenizer(const nlohmann::json& pre_tokenizer);

// Step 1: the words of the inputs, sorted by bytes. `stats` (optional) gets files, bytes and word counts.
WordCounts count_words(const std::vector<std::string>& inputs, const PreTokenizeFn& pre_tokenize, int threads,
                       BpeTrainStats* stats = nullptr);
// Step 2: merges until `vocab_size` tokens (counting 256 bytes + merged tokens, without specials) or no pair left
// at min_frequency. `forbidden` token texts (byte-level spelling) are never produced: the special tokens.
BpeModel train_bpe_from_counts(const WordCounts& words, int64_t vocab_size, int64_t min_frequency,
                               const std::vector<std::string>& forbidden = {});

// The output files' JSON (ordered as HF writes them).
// The "model" block of an HF tokenizer.json for a plain byte-level BPE (the one place its fixed fields are spelled).
template <typename Json>
Json bpe_model_json(Json vocab, Json merges) {
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", false},
          {"byte_fallback", false},
          {"vocab", std::move(vocab)},
          {"merges", std::move(merges)}};
}
nlohmann::ordered_json bpe_tokenizer_json(const BpeModel& model, const BpeTrainOptions& options);
nlohmann::ordered_json bpe_tokenizer_config_json(const BpeTrainOptions& options);

// Raw bytes -> byte-level alphabet spelling, and back (errors on a symbol outside the alphabet).
std::string to_byte_level(std::string_view raw);
std::string from_byte_level(std::string_view symbols);

// The DeepSeek LLM chat template (verbatim from its tokenizer_config.json).
const std::string& deepseek_chat_template();

}  // namespace dsmoe::text
