#include "text/bpe_trainer.h"

#include "text/chat_template.h"
#include "text/corpus.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <queue>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "text/tokenizer.h"

namespace dsmoe::text {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBlockBytes = 8ull << 20;     // input read and counted (in parallel) per block
constexpr size_t kMaxLineBytes = 64ull << 20;  // a newline-free stretch of text is cut here (memory bound)

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// ---- byte-level alphabet ----------------------------------------------------------------------------------------

// Decodes one UTF-8 code point at s[i] (s already valid or checked by the caller); returns its length, or 0.
size_t decode_utf8(std::string_view s, size_t i, uint32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t n;
  uint32_t c, min;
  if ((b0 & 0xE0) == 0xC0)
    n = 2, c = b0 & 0x1F, min = 0x80;
  else if ((b0 & 0xF0) == 0xE0)
    n = 3, c = b0 & 0x0F, min = 0x800;
  else if ((b0 & 0xF8) == 0xF0)
    n = 4, c = b0 & 0x07, min = 0x10000;
  else
    return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    c = (c << 6) | (b & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  *cp = c;
  return n;
}

// Offset of the first invalid UTF-8 byte in s, or npos.
size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    uint32_t cp;
    const size_t n = decode_utf8(s, i, &cp);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

// Code point of each byte's symbol -> the byte (the GPT-2 alphabet uses code points below 0x144).
struct ByteLevelInverse {
  std::array<int16_t, 0x200> byte_of{};
  ByteLevelInverse() {
    byte_of.fill(-1);
    const auto& alphabet = byte_level_alphabet();
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = 0;
      const size_t n = decode_utf8(alphabet[b], 0, &cp);
      check(n == alphabet[b].size() && cp < byte_of.size(), "byte-level alphabet: unexpected symbol for byte {}", b);
      byte_of[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelInverse& byte_level_inverse() {
  static const ByteLevelInverse inverse;
  return inverse;
}

// ---- input reading and word counting ------------------------------------------------------------------------------

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using CountMap = std::unordered_map<std::string, uint64_t, StringHash, std::equal_to<>>;

void add_count(CountMap& map, std::string_view key, uint64_t n) {
  auto it = map.find(key);
  if (it != map.end())
    it->second += n;
  else
    map.emplace(std::string(key), n);
}

std::vector<std::string> expand_input_files(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& input : inputs) {
    std::error_code ec;
    check(fs::exists(input, ec), "input {} does not exist", input);
    if (!fs::is_directory(input, ec)) {
      files.push_back(input);
      continue;
    }
    std::vector<std::string> found;
    try {
      for (const auto& entry : fs::recursive_directory_iterator(input))
        if (entry.is_regular_file()) found.push_back(entry.path().string());
    } catch (const fs::filesystem_error& e) {
      fail("cannot list input directory {}: {}", input, e.code().message());
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

// An error found by a worker at `offset` in the block; the earliest one is reported.
struct BlockError {
  size_t offset = std::string_view::npos;
  std::string message;  // "{}" is replaced by "file:line"
};

struct BlockCounter {
  const PreTokenizeFn* pre_tokenize;
  int threads;
  std::vector<CountMap> local;  // one per worker, merged into `total` after each block
  std::vector<uint64_t> local_words;
  CountMap total;
  uint64_t words = 0;

  // Counts the pre-tokens of block[begin, end) (whole lines) into local[t].
  void count_range(std::string_view block, size_t begin, size_t end, bool jsonl, int t, BlockError* error) {
    CountMap& map = local[t];
    uint64_t n_words = 0;
    const auto piece_fn = [&](std::string_view piece) {
      if (piece.empty()) return;
      add_count(map, piece, 1);
      ++n_words;
    };
    std::function<void(std::string_view)> piece(piece_fn);
    size_t pos = begin;
    try {
      if (!jsonl) {
        const size_t bad = first_invalid_utf8(block.substr(begin, end - begin));
        if (bad != std::string_view::npos) {
          error->offset = begin + bad;
          error->message = "{}: invalid UTF-8";
          end = begin + bad;  // count nothing past it; the run fails anyway
        }
      }
      while (pos < end) {
        size_t nl = block.find('\n', pos);
        const size_t line_end = (nl == std::string_view::npos || nl >= end) ? end : nl + 1;
        const std::string_view line = block.substr(pos, line_end - pos);
        if (!jsonl) {
          (*pre_tokenize)(line, piece);
        } else {
          std::string_view content = line;
          while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) content.remove_suffix(1);
          if (content.find_first_not_of(" \t\r") != std::string_view::npos) {
            nlohmann::json j;
            try {
              j = nlohmann::json::parse(content);
            } catch (const nlohmann::json::exception& e) {
              error->offset = pos;
              error->message = fmt::format("{{}}: invalid JSON: {}", e.what());
              break;
            }
            if (!(j.is_object() && j.contains("text") && j["text"].is_string())) {
              error->offset = pos;
              error->message = "{}: expected an object with a string field \"text\"";
              break;
            }
            (*pre_tokenize)(j["text"].get_ref<const std::string&>(), piece);
          }
        }
        pos = line_end;
      }
    } catch (const std::exception& e) {
      if (error->offset == std::string_view::npos || pos < error->offset) {
        error->offset = pos;
        error->message = fmt::format("{{}}: {}", e.what());
      }
    }
    local_words[t] = n_words;
  }

  void count_block(std::string_view block, bool jsonl, const std::string& path, int64_t first_line) {
    // Worker ranges start at line starts; the split depends on the thread count, the counts do not.
    const int n = static_cast<int>(std::min<size_t>(threads, std::max<size_t>(1, block.size() / 4096)));
    std::vector<size_t> cut(n + 1, block.size());
    cut[0] = 0;
    for (int t = 1; t < n; ++t) {
      size_t c = std::max(cut[t - 1], block.size() * t / n);
      if (c > 0 && c < block.size()) {
        const size_t nl = block.find('\n', c - 1);
        c = nl == std::string_view::npos ? block.size() : nl + 1;
      }
      cut[t] = c;
    }
    std::vector<BlockError> errors(n);
    if (n == 1) {
      count_range(block, 0, block.size(), jsonl, 0, &errors[0]);
    } else {
      std::vector<std::jthread> workers;  // joined on scope exit, also if starting one fails
      for (int t = 0; t < n; ++t)
        workers.emplace_back([&, t] { count_range(block, cut[t], cut[t + 1], jsonl, t, &errors[t]); });
      workers.clear();
    }
    for (const BlockError& e : errors) {
      if (e.offset == std::string_view::npos) continue;
      const int64_t line = first_line + std::count(block.begin(), block.begin() + e.offset, '\n');
      std::string where = fmt::format("{}:{}", path, line);
      std::string msg = e.message;
      msg.replace(msg.find("{}"), 2, where);
      throw Error(msg);  // errors[] is in block order: the first one is the earliest
    }
    for (int t = 0; t < n; ++t) {
      words += local_words[t];
      if (total.empty()) {
        total.swap(local[t]);
      } else {
        for (auto& [k, v] : local[t]) add_count(total, k, v);
      }
      local[t].clear();
    }
  }
};

// Cuts a newline-free buffer at a UTF-8 character boundary at most `limit` bytes in.
size_t utf8_cut(const std::string& buf, size_t limit) {
  size_t c = std::min(limit, buf.size());
  for (int k = 0; k < 3 && c > 0 && c < buf.size() && (static_cast<unsigned char>(buf[c]) & 0xC0) == 0x80; ++k) --c;
  return c;
}

void count_file(const std::string& path, BlockCounter& counter, int64_t* bytes) {
  std::error_code ec;
  check(!fs::is_directory(path, ec), "input {} is a directory", path);
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  check(file != nullptr, "cannot open input {}", path);
  const bool jsonl = is_jsonl_path(path);
  std::string buf;
  int64_t line = 1;
  bool eof = false;
  while (!eof || !buf.empty()) {
    if (!eof) {
      const size_t old = buf.size();
      buf.resize(old + kBlockBytes);
      const size_t got = std::fread(buf.data() + old, 1, kBlockBytes, file.get());
      buf.resize(old + got);
      *bytes += static_cast<int64_t>(got);
      if (got < kBlockBytes) {
        check(!std::ferror(file.get()), "read error in {}", path);
        eof = true;
      }
    }
    size_t cut = buf.size();
    if (!eof) {
      const size_t nl = buf.rfind('\n');
      if (nl != std::string::npos) {
        cut = nl + 1;
      } else if (buf.size() < kMaxLineBytes) {
        continue;  // read more of this line
      } else {
        check(!jsonl, "{}:{}: line longer than {} MiB", path, line, kMaxLineBytes >> 20);
        cut = utf8_cut(buf, kMaxLineBytes);
      }
    }
    const std::string_view block(buf.data(), cut);
    counter.count_block(block, jsonl, path, line);
    line += std::count(block.begin(), block.end(), '\n');
    buf.erase(0, cut);
  }
}

// ---- merge learning -----------------------------------------------------------------------------------------------

inline uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
inline int32_t key_left(uint64_t k) { return static_cast<int32_t>(k >> 32); }
inline int32_t key_right(uint64_t k) { return static_cast<int32_t>(k & 0xFFFFFFFFu); }

struct PairData {
  int64_t count = 0;
  std::vector<uint32_t> where;  // words that contained the pair (duplicates and stale entries allowed)
  bool banned = false;          // would produce a special token's text
};

struct QueueEntry {
  int64_t count;
  int32_t a, b;
};

}  // namespace

// ---- public helpers -------------------------------------------------------------------------------------------------

std::string to_byte_level(std::string_view raw) {
  const auto& alphabet = byte_level_alphabet();
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) out += alphabet[static_cast<unsigned char>(c)];
  return out;
}

std::string from_byte_level(std::string_view symbols) {
  const auto& inverse = byte_level_inverse().byte_of;
  std::string out;
  out.reserve(symbols.size());
  size_t i = 0;
  while (i < symbols.size()) {
    uint32_t cp = 0;
    const size_t n = decode_utf8(symbols, i, &cp);
    check(n > 0 && cp < inverse.size() && inverse[cp] >= 0,
          "pre-token \"{}\" is not in the byte-level alphabet (the pre-tokenizer must end with a ByteLevel step)",
          std::string(symbols.substr(0, 64)));
    out += static_cast<char>(inverse[cp]);
    i += n;
  }
  return out;
}

// The chat template written into trained tokenizers: the DeepSeek LLM one, whose text lives in chat_template.cpp.
const std::string& deepseek_chat_template() { return ChatTemplate::deepseek().source(); }

PreTokenizeFn make_pre_tokenizer(const nlohmann::json& pre_tokenizer) {
  const nlohmann::json& pre = pre_tokenizer.is_null() ? deepseek_pre_tokenizer_json() : pre_tokenizer;
  // A tokenizer with this pre-tokenizer and a bytes-only BPE model: only its pre_tokenize is used.
  nlohmann::json vocab = nlohmann::json::object();
  const auto& alphabet = byte_level_alphabet();
  for (int b = 0; b < 256; ++b) vocab[alphabet[b]] = b;
  nlohmann::json tj = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", nlohmann::json::array()},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}}},
      {"pre_tokenizer", pre},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", bpe_model_json(vocab, nlohmann::json::array())}};
  nlohmann::json config = {{"add_bos_token", false}, {"add_eos_token", false}};
  auto tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_json(tj, config, "bpe trainer pre-tokenizer"));
  return [tokenizer](std::string_view text, const std::function<void(std::string_view)>& piece) {
    tokenizer->pre_tokenize(text, piece);
  };
}

WordCounts count_words(const std::vector<std::string>& inputs, const PreTokenizeFn& pre_tokenize, int threads,
                       BpeTrainStats* stats) {
  const auto start = std::chrono::steady_clock::now();
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::vector<std::string> files = expand_input_files(inputs);
  check(!files.empty(), "no input files in {}", fmt::join(inputs, ", "));
  BlockCounter counter{&pre_tokenize, threads, std::vector<CountMap>(threads), std::vector<uint64_t>(threads), {}, 0};
  int64_t bytes = 0;
  for (const std::string& f : files) count_file(f, counter, &bytes);

  WordCounts words;
  words.reserve(counter.total.size());
  for (auto& [k, v] : counter.total) words.emplace_back(from_byte_level(k), v);
  counter.total = CountMap();
  std::sort(words.begin(), words.end());
  if (stats) {
    stats->input_files = static_cast<int64_t>(files.size());
    stats->input_bytes = bytes;
    stats->words = static_cast<int64_t>(counter.words);
    stats->unique_words = static_cast<int64_t>(words.size());
    stats->count_seconds = seconds_since(start);
  }
  return words;
}

BpeModel train_bpe_from_counts(const WordCounts& word_counts, int64_t vocab_size, int64_t min_frequency,
                               const std::vector<std::string>& forbidden) {
  check(vocab_size >= 256, "vocab_size {} is smaller than the 256 byte tokens", vocab_size);
  check(vocab_size <= (int64_t{1} << 30), "vocab_size {} is too large", vocab_size);
  check(min_frequency >= 0, "min_frequency must be >= 0, got {}", min_frequency);
  const int64_t min_count = std::max<int64_t>(1, min_frequency);

  BpeModel model;
  std::unordered_map<std::string, int32_t> token_id;
  for (int b = 0; b < 256; ++b) {
    model.tokens.emplace_back(1, static_cast<char>(b));
    token_id.emplace(model.tokens.back(), b);
  }
  const std::unordered_set<std::string> forbidden_set(forbidden.begin(), forbidden.end());

  // Words with at least one pair, as symbol runs in one flat array.
  struct Word {
    size_t offset;
    uint32_t len;
    uint64_t count;
  };
  std::vector<Word> words;
  std::vector<int32_t> symbols;
  for (const auto& [text, count] : word_counts) {
    if (text.size() < 2 || count == 0) continue;
    check(text.size() < (size_t{1} << 31), "a pre-token of {} bytes is too long", text.size());
    words.push_back({symbols.size(), static_cast<uint32_t>(text.size()), count});
    for (char c : text) symbols.push_back(static_cast<unsigned char>(c));
  }
  check(words.size() < (size_t{1} << 32), "too many distinct words");

  std::unordered_map<uint64_t, PairData> pairs;
  for (uint32_t w = 0; w < words.size(); ++w) {
    const Word& word = words[w];
    for (uint32_t i = 0; i + 1 < word.len; ++i) {
      PairData& p = pairs[pair_key(symbols[word.offset + i], symbols[word.offset + i + 1])];
      p.count += static_cast<int64_t>(word.count);
      if (p.where.empty() || p.where.back() != w) p.where.push_back(w);
    }
  }

  // Max-heap: higher count first; ties: the lexicographically smaller (left bytes, right bytes) first.
  const auto& tokens = model.tokens;
  const auto lower = [&tokens](const QueueEntry& x, const QueueEntry& y) {
    if (x.count != y.count) return x.count < y.count;
    const int c = tokens[x.a].compare(tokens[y.a]);
    if (c != 0) return c > 0;
    return tokens[x.b].compare(tokens[y.b]) > 0;
  };
  std::vector<QueueEntry> initial;
  for (const auto& [k, p] : pairs)
    if (p.count >= min_count) initial.push_back({p.count, key_left(k), key_right(k)});
  std::priority_queue<QueueEntry, std::vector<QueueEntry>, decltype(lower)> queue(lower, std::move(initial));

  std::vector<std::pair<uint64_t, int64_t>> changes;
  std::vector<uint64_t> grown;
  while (static_cast<int64_t>(model.tokens.size()) < vocab_size && !queue.empty()) {
    const QueueEntry top = queue.top();
    queue.pop();
    const uint64_t key = pair_key(top.a, top.b);
    auto it = pairs.find(key);
    if (it == pairs.end() || it->second.banned) continue;
    const int64_t current = it->second.count;
    if (current != top.count) {  // stale entry: requeue with the current count
      if (current >= min_count && current < top.count) queue.push({current, top.a, top.b});
      continue;
    }
    if (current < min_count) break;
    std::string merged = model.tokens[top.a] + model.tokens[top.b];
    if (!forbidden_set.empty() && forbidden_set.count(to_byte_level(merged))) {
      it->second.banned = true;
      continue;
    }
    int32_t c;
    if (auto found = token_id.find(merged); found != token_id.end()) {
      c = found->second;
    } else {
      c = static_cast<int32_t>(model.tokens.size());
      token_id.emplace(merged, c);
      model.tokens.push_back(std::move(merged));
    }
    model.merges.emplace_back(top.a, top.b);
    model.merge_results.push_back(c);
    model.merge_counts.push_back(static_cast<uint64_t>(current));

    std::vector<uint32_t> where = std::move(it->second.where);
    std::sort(where.begin(), where.end());
    where.erase(std::unique(where.begin(), where.end()), where.end());
    changes.clear();
    for (uint32_t w : where) {
      Word& word = words[w];
      int32_t* s = symbols.data() + word.offset;
      const auto n = static_cast<int64_t>(word.count);
      // In place, left to right: each step turns "p a b x" into "p c x" (s[0, out) is already rewritten).
      uint32_t out = 0, i = 0;
      bool changed = false;
      while (i < word.len) {
        if (i + 1 < word.len && s[i] == top.a && s[i + 1] == top.b) {
          changes.emplace_back(key, -n);
          if (out > 0) {
            changes.emplace_back(pair_key(s[out - 1], top.a), -n);
            const uint64_t k = pair_key(s[out - 1], c);
            changes.emplace_back(k, n);
            PairData& p = pairs[k];
            if (p.where.empty() || p.where.back() != w) p.where.push_back(w);
          }
          if (i + 2 < word.len) {
            changes.emplace_back(pair_key(top.b, s[i + 2]), -n);
            const uint64_t k = pair_key(c, s[i + 2]);
            changes.emplace_back(k, n);
            PairData& p = pairs[k];
            if (p.where.empty() || p.where.back() != w) p.where.push_back(w);
          }
          s[out++] = c;
          i += 2;
          changed = true;
        } else {
          s[out++] = s[i++];
        }
      }
      if (changed) word.len = out;
    }
    std::sort(changes.begin(), changes.end());
    grown.clear();
    for (size_t i = 0; i < changes.size();) {
      const uint64_t k = changes[i].first;
      int64_t delta = 0;
      for (; i < changes.size() && changes[i].first == k; ++i) delta += changes[i].second;
      auto pit = pairs.find(k);
      if (delta == 0) {  // e.g. "c a" made and unmade within one word
        if (pit != pairs.end() && pit->second.count <= 0) pairs.erase(pit);
        continue;
      }
      if (pit == pairs.end()) pit = pairs.emplace(k, PairData{}).first;
      pit->second.count += delta;
      if (pit->second.count <= 0)
        pairs.erase(pit);  // no word holds it any more
      else if (delta > 0)
        grown.push_back(k);
    }
    pairs.erase(key);
    for (uint64_t k : grown) {
      const auto pit = pairs.find(k);
      if (pit != pairs.end() && pit->second.count >= min_count && !pit->second.banned)
        queue.push({pit->second.count, key_left(k), key_right(k)});
    }
  }
  return model;
}

namespace {

void check_specials(const BpeTrainOptions& o) {
  check(o.special_tokens.size() >= 2, "special_tokens must hold at least BOS and EOS, got {}", o.special_tokens.size());
  const auto& alphabet = byte_level_alphabet();
  std::unordered_set<std::string> seen;
  for (const std::string& s : o.special_tokens) {
    check(!s.empty(), "special tokens must not be empty");
    check(first_invalid_utf8(s) == std::string_view::npos, "special token \"{}\" is not valid UTF-8", s);
    check(seen.insert(s).second, "special token \"{}\" is listed twice", s);
    check(std::find(alphabet.begin(), alphabet.end(), s) == alphabet.end(),
          "special token \"{}\" is the spelling of a byte token", s);
  }
}

void check_options(const BpeTrainOptions& o) {
  check_specials(o);
  const int64_t minimum = 256 + static_cast<int64_t>(o.special_tokens.size());
  check(o.vocab_size >= minimum, "vocab_size {} is smaller than 256 byte tokens + {} special tokens = {}", o.vocab_size,
        o.special_tokens.size(), minimum);
  check(o.vocab_size <= (int64_t{1} << 30), "vocab_size {} is too large", o.vocab_size);
  check(o.min_frequency >= 0, "min_frequency must be >= 0, got {}", o.min_frequency);
  check(o.model_max_length > 0, "model_max_length must be positive, got {}", o.model_max_length);
  check(o.pre_tokenizer.is_null() || o.pre_tokenizer.is_object(), "pre_tokenizer must be a JSON object");
}

// A JSON block with "type" first in every object, as HF writes it (nlohmann::json keeps keys sorted).
nlohmann::ordered_json type_first(const nlohmann::json& j) {
  if (j.is_object()) {
    nlohmann::ordered_json o = nlohmann::ordered_json::object();
    if (j.contains("type")) o["type"] = type_first(j["type"]);
    for (const auto& [k, v] : j.items())
      if (k != "type") o[k] = type_first(v);
    return o;
  }
  if (j.is_array()) {
    nlohmann::ordered_json a = nlohmann::ordered_json::array();
    for (const auto& v : j) a.push_back(type_first(v));
    return a;
  }
  return nlohmann::ordered_json::parse(j.dump());
}

void write_atomically(const fs::path& path, const std::string& content) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    check(out.good(), "cannot write {}", tmp.string());
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    check(out.good(), "write error in {}", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    fail("cannot rename {} to {}", tmp.string(), path.string());
  }
}

}  // namespace

nlohmann::ordered_json bpe_tokenizer_json(const BpeModel& model, const BpeTrainOptions& options) {
  check_specials(options);
  using ojson = nlohmann::ordered_json;
  const auto first_special = static_cast<int64_t>(model.tokens.size());
  ojson added = ojson::array();
  for (size_t i = 0; i < options.special_tokens.size(); ++i)
    added.push_back({{"id", first_special + static_cast<int64_t>(i)},
                     {"content", options.special_tokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  const std::string& bos = options.special_tokens[0];
  const ojson bos_a = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
  const ojson bos_b = {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}};
  const ojson seq_a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  const ojson seq_b = {{"Sequence", {{"id", "B"}, {"type_id", 1}}}};
  ojson post = {{"type", "TemplateProcessing"},
                {"single", ojson::array({bos_a, seq_a})},
                {"pair", ojson::array({bos_a, seq_a, bos_b, seq_b})},
                {"special_tokens",
                 {{bos, {{"id", bos}, {"ids", ojson::array({first_special})}, {"tokens", ojson::array({bos})}}}}}};

  // Appended to the ordered map's vector directly: its own insert searches linearly (quadratic for 100K tokens).
  ojson vocab = ojson::object();
  auto& entries = static_cast<ojson::object_t::Container&>(vocab.get_ref<ojson::object_t&>());
  entries.reserve(model.tokens.size() + options.special_tokens.size());
  std::unordered_set<std::string> spelled_set;
  for (size_t id = 0; id < model.tokens.size(); ++id) {
    std::string spelled = to_byte_level(model.tokens[id]);
    check(spelled_set.insert(spelled).second, "internal error: token {} appears twice", spelled);
    entries.emplace_back(std::move(spelled), static_cast<int64_t>(id));
  }
  for (size_t i = 0; i < options.special_tokens.size(); ++i) {
    check(spelled_set.insert(options.special_tokens[i]).second, "special token \"{}\" is also a learned token",
          options.special_tokens[i]);
    entries.emplace_back(options.special_tokens[i], first_special + static_cast<int64_t>(i));
  }
  ojson merges = ojson::array();
  for (const auto& [a, b] : model.merges)
    merges.push_back(to_byte_level(model.tokens.at(a)) + " " + to_byte_level(model.tokens.at(b)));

  const nlohmann::json& pre = options.pre_tokenizer.is_null() ? deepseek_pre_tokenizer_json() : options.pre_tokenizer;
  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = std::move(added);
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", ojson::array()}};
  j["pre_tokenizer"] = type_first(pre);
  j["post_processor"] = std::move(post);
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = bpe_model_json(std::move(vocab), std::move(merges));
  return j;
}

nlohmann::ordered_json bpe_tokenizer_config_json(const BpeTrainOptions& options) {
  check_specials(options);
  nlohmann::ordered_json j;
  j["add_bos_token"] = true;
  j["add_eos_token"] = false;
  j["bos_token"] = options.special_tokens[0];
  j["eos_token"] = options.special_tokens[1];
  j["pad_token"] = options.special_tokens[1];
  j["unk_token"] = nullptr;
  j["clean_up_tokenization_spaces"] = false;
  j["legacy"] = true;
  j["model_max_length"] = options.model_max_length;
  j["tokenizer_class"] = "LlamaTokenizerFast";
  j["chat_template"] = deepseek_chat_template();
  return j;
}

BpeTrainStats train_bpe(const BpeTrainOptions& options, const std::vector<std::string>& inputs,
                        const std::string& out_dir, const PreTokenizeFn& pre_tokenize) {
  check_options(options);
  check(!out_dir.empty(), "the output directory is empty");
  check(!inputs.empty(), "no inputs to train on");
  BpeTrainStats stats;
  const WordCounts words = count_words(inputs, pre_tokenize, options.threads, &stats);
  check(stats.words > 0, "no text to train on in {}", fmt::join(inputs, ", "));

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> forbidden(options.special_tokens);
  const int64_t learned = options.vocab_size - static_cast<int64_t>(options.special_tokens.size());
  const BpeModel model = train_bpe_from_counts(words, learned, options.min_frequency, forbidden);
  stats.merge_seconds = seconds_since(start);
  stats.merges = static_cast<int64_t>(model.merges.size());
  stats.vocab_size = static_cast<int64_t>(model.tokens.size() + options.special_tokens.size());

  const std::string tokenizer = bpe_tokenizer_json(model, options).dump(2);
  const std::string config = bpe_tokenizer_config_json(options).dump(2);
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  check(fs::is_directory(out_dir, ec), "cannot create output directory {}", out_dir);
  write_atomically(fs::path(out_dir) / "tokenizer.json", tokenizer);
  write_atomically(fs::path(out_dir) / "tokenizer_config.json", config);
  return stats;
}

BpeTrainStats train_bpe(const BpeTrainOptions& options, const std::vector<std::string>& inputs,
                        const std::string& out_dir) {
  check_options(options);
  return train_bpe(options, inputs, out_dir, make_pre_tokenizer(options.pre_tokenizer));
}

}  // namespace dsmoe::text
