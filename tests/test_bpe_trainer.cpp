// BPE trainer: hand-checked merges, agreement with a naive trainer, determinism across thread counts, the output
// files' layout, round trips through text::Tokenizer, errors, and the Brown-corpus speed check.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "shared_data.h"
#include "text/bpe_trainer.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;
using namespace dsmoe::text;
using nlohmann::json;

namespace {

// A per-test scratch directory, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() /
           fmt::format("dsmoe_bpe_{}_{}_{}", info->test_suite_name(), info->name(), static_cast<long>(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A stand-in pre-tokenizer: GPT-2-like words (a run of letters/digits/other with its leading space), newlines alone,
// spelled in the byte-level alphabet. Independent of text::Tokenizer so the trainer is tested on its own.
void simple_pre_tokenize(std::string_view text, const std::function<void(std::string_view)>& fn) {
  auto cls = [](unsigned char c) {
    if (c == '\n' || c == '\r') return 0;
    if (c == ' ') return 1;
    if (std::isalnum(c) || c >= 0x80) return 2;
    return 3;
  };
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    const int c0 = cls(text[i]);
    if (c0 == 0) {
      j = i + 1;
    } else {
      if (c0 == 1) ++j;
      const int body = j < text.size() ? cls(text[j]) : 1;
      if (body == 2 || body == 3) {
        while (j < text.size() && cls(text[j]) == body) ++j;
      } else if (c0 == 1) {
        while (j < text.size() && cls(text[j]) == 1) ++j;
      }
    }
    fn(to_byte_level(text.substr(i, j - i)));
    i = j;
  }
}

std::string merge_text(const BpeModel& m, size_t i) {
  return m.tokens[m.merges[i].first] + " " + m.tokens[m.merges[i].second];
}

std::vector<std::string> merge_texts(const BpeModel& m) {
  std::vector<std::string> out;
  for (size_t i = 0; i < m.merges.size(); ++i) out.push_back(merge_text(m, i));
  return out;
}

// The textbook algorithm: recount every pair after every merge. Same tie-break as the trainer.
std::vector<std::string> naive_bpe(const WordCounts& words, int64_t vocab_size, int64_t min_frequency) {
  std::vector<std::pair<std::vector<std::string>, uint64_t>> ws;
  for (const auto& [w, n] : words) {
    std::vector<std::string> syms;
    for (char c : w) syms.emplace_back(1, c);
    ws.emplace_back(syms, n);
  }
  std::set<std::string> vocab;
  for (int b = 0; b < 256; ++b) vocab.insert(std::string(1, static_cast<char>(b)));
  std::vector<std::string> merges;
  while (static_cast<int64_t>(vocab.size()) < vocab_size) {
    std::map<std::pair<std::string, std::string>, uint64_t> counts;
    for (const auto& [syms, n] : ws)
      for (size_t i = 0; i + 1 < syms.size(); ++i) counts[{syms[i], syms[i + 1]}] += n;
    const std::pair<std::string, std::string>* best = nullptr;
    uint64_t best_n = 0;
    for (const auto& [p, n] : counts)  // map order = lexicographic, so the first maximum wins ties
      if (n > best_n) best = &p, best_n = n;
    if (!best || best_n < static_cast<uint64_t>(std::max<int64_t>(1, min_frequency))) break;
    const auto [a, b] = *best;
    merges.push_back(a + " " + b);
    vocab.insert(a + b);
    for (auto& [syms, n] : ws) {
      std::vector<std::string> out;
      for (size_t i = 0; i < syms.size();) {
        if (i + 1 < syms.size() && syms[i] == a && syms[i + 1] == b) {
          out.push_back(a + b);
          i += 2;
        } else {
          out.push_back(syms[i++]);
        }
      }
      syms = std::move(out);
    }
  }
  return merges;
}

// Some English-like text with a little non-ASCII, deterministic.
std::string sample_corpus(size_t lines, uint32_t seed) {
  static const char* words[] = {
      "the",    "of",     "and",     "to",      "a",     "in",    "that",   "is",     "was",   "he",   "for",
      "it",     "with",   "as",      "his",     "on",    "be",    "at",     "by",     "I",     "this", "had",
      "not",    "are",    "but",     "from",    "or",    "have",  "an",     "they",   "which", "one",  "you",
      "were",   "her",    "all",     "she",     "there", "would", "their",  "we",     "him",   "been", "has",
      "when",   "who",    "will",    "more",    "no",    "if",    "out",    "so",     "said",  "what", "up",
      "its",    "about",  "into",    "than",    "them",  "can",   "only",   "other",  "new",   "some", "could",
      "time",   "these",  "two",     "may",     "then",  "do",    "first",  "any",    "my",    "now",  "such",
      "like",   "our",    "over",    "man",     "me",    "even",  "most",   "made",   "after", "also", "did",
      "many",   "before", "must",    "through", "back",  "years", "where",  "much",   "your",  "way",  "well",
      "down",   "should", "because", "each",    "just",  "those", "people", "Führer", "naïve", "café", "日本語",
      "Straße", "1961",   "42"};
  std::mt19937 rng(seed);
  std::string out;
  for (size_t l = 0; l < lines; ++l) {
    const int n = 3 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      if (i) out += (rng() % 17 == 0) ? "  " : " ";
      out += words[rng() % std::size(words)];
      if (rng() % 9 == 0) out += ",";
    }
    out += (rng() % 5 == 0) ? ".\n\n" : ".\n";
  }
  return out;
}

std::string random_utf8(std::mt19937& rng, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    uint32_t cp;
    switch (rng() % 6) {
      case 0: cp = 0x20 + rng() % 0x5F; break;
      case 1: cp = "\n\t  \r"[rng() % 5]; break;
      case 2: cp = 0xA0 + rng() % 0x700; break;
      case 3: cp = 0x4E00 + rng() % 0x5000; break;
      case 4: cp = 0x1F300 + rng() % 0x300; break;
      default: cp = 'a' + rng() % 26; break;
    }
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const dsmoe::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ---- the algorithm ----------------------------------------------------------------------------------------------

TEST(BpeTrainer, HandCheckedWikipediaExample) {
  // "aaabdaaabac": pairs aa 4 (overlapping, within both "aaa"), ab 2, ... -> "aa"; then "a b" and "aa a" tie at 2
  // and ("a","b") < ("aa","a") -> "ab"; then "aa ab" 2 -> "aaab"; everything else occurs once (min_frequency 2).
  const WordCounts words = {{"aaabdaaabac", 1}};
  BpeModel m = train_bpe_from_counts(words, 1000, 2);
  EXPECT_EQ(merge_texts(m), (std::vector<std::string>{"a a", "a b", "aa ab"}));
  ASSERT_EQ(m.tokens.size(), 259u);
  EXPECT_EQ(m.tokens[256], "aa");
  EXPECT_EQ(m.tokens[257], "ab");
  EXPECT_EQ(m.tokens[258], "aaab");
  EXPECT_EQ(m.merge_counts, (std::vector<uint64_t>{4, 2, 2}));

  // min_frequency 1: the count-1 pairs follow in lexicographic order: "a c" < "aaab d" < "d aaab" ...
  m = train_bpe_from_counts(words, 1000, 1);
  EXPECT_EQ(merge_texts(m),
            (std::vector<std::string>{"a a", "a b", "aa ab", "a c", "aaab ac", "aaab d", "aaabd aaabac"}));
  // ... and vocab_size stops it exactly.
  m = train_bpe_from_counts(words, 260, 1);
  EXPECT_EQ(m.tokens.size(), 260u);
  EXPECT_EQ(m.tokens.back(), "ac");
}

TEST(BpeTrainer, HandCheckedWordCounts) {
  // The Hugging Face course example: u g = 10+5+5 = 20, then u n = 12+4 = 16, then h ug = 10+5 = 15.
  const WordCounts words = {{"hug", 10}, {"pug", 5}, {"pun", 12}, {"bun", 4}, {"hugs", 5}};
  const BpeModel m = train_bpe_from_counts(words, 259, 2);
  EXPECT_EQ(merge_texts(m), (std::vector<std::string>{"u g", "u n", "h ug"}));
  EXPECT_EQ(m.merge_counts, (std::vector<uint64_t>{20, 16, 15}));
}

TEST(BpeTrainer, OverlappingRunsMergeLeftToRight) {
  // "aaaaa" x3: a a = 12 -> [aa aa a]: aa aa = 3, aa a = 3; tie -> ("aa","a") < ("aa","aa") -> [aa aaa] ...
  const BpeModel m = train_bpe_from_counts({{"aaaaa", 3}}, 1000, 1);
  EXPECT_EQ(merge_texts(m), (std::vector<std::string>{"a a", "aa a", "aa aaa"}));
  EXPECT_EQ(m.merge_counts, (std::vector<uint64_t>{12, 3, 3}));
}

TEST(BpeTrainer, MatchesNaiveTrainerOnRandomWords) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 30; ++trial) {
    std::map<std::string, uint64_t> counts;
    const int n_words = 1 + static_cast<int>(rng() % 60);
    const int alphabet = 2 + static_cast<int>(rng() % 4);  // few letters: many ties, runs and overlaps
    for (int i = 0; i < n_words; ++i) {
      std::string w;
      const int len = 1 + static_cast<int>(rng() % 12);
      for (int k = 0; k < len; ++k) w += static_cast<char>('a' + rng() % alphabet);
      counts[w] += 1 + rng() % 5;
    }
    const WordCounts words(counts.begin(), counts.end());
    const int64_t vocab = 256 + static_cast<int64_t>(rng() % 80);
    const int64_t min_frequency = static_cast<int64_t>(rng() % 3);
    const BpeModel m = train_bpe_from_counts(words, vocab, min_frequency);
    const std::vector<std::string> expected = naive_bpe(words, vocab, min_frequency);
    ASSERT_EQ(merge_texts(m), expected) << "trial " << trial;
    // Word order in the table does not matter.
    WordCounts shuffled = words;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    ASSERT_EQ(merge_texts(train_bpe_from_counts(shuffled, vocab, min_frequency)), expected) << "trial " << trial;
  }
}

TEST(BpeTrainer, MergesMakeTheirConcatenation) {
  // Every merge's result is the id of its concatenation, token texts are unique (were two merges ever to make the
  // same text, the second reuses the first one's id, as HF does), and merge counts never increase.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::map<std::string, uint64_t> counts;
    for (int i = 0; i < 30; ++i) {
      std::string w;
      const int len = 2 + static_cast<int>(rng() % 6);
      for (int k = 0; k < len; ++k) w += static_cast<char>('a' + rng() % 3);
      counts[w] += 1 + rng() % 4;
    }
    const BpeModel m = train_bpe_from_counts(WordCounts(counts.begin(), counts.end()), 400, 1);
    std::set<std::string> unique(m.tokens.begin(), m.tokens.end());
    ASSERT_EQ(unique.size(), m.tokens.size());
    ASSERT_EQ(m.merge_results.size(), m.merges.size());
    for (size_t i = 0; i < m.merges.size(); ++i) {
      ASSERT_EQ(m.tokens[m.merge_results[i]], m.tokens[m.merges[i].first] + m.tokens[m.merges[i].second]);
      if (i > 0) {
        ASSERT_LE(m.merge_counts[i], m.merge_counts[i - 1]);
      }
    }
  }
}

TEST(BpeTrainer, ForbiddenTextsAreNotLearned) {
  const BpeModel m = train_bpe_from_counts({{"<s>", 50}, {"<s", 10}}, 300, 1, {"<s>"});
  for (const std::string& t : m.tokens) EXPECT_NE(t, "<s>");
  EXPECT_EQ(merge_texts(m), (std::vector<std::string>{"< s"}));
}

TEST(BpeTrainer, ByteLevelSpelling) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  EXPECT_EQ(from_byte_level(to_byte_level(all)), all);
  EXPECT_EQ(to_byte_level(" hello\n"), "\xC4\xA0hello\xC4\x8A");  // Ġhello Ċ
  EXPECT_NE(error_of([] { from_byte_level("a b"); }).find("byte-level alphabet"), std::string::npos);
}

// ---- inputs, files and determinism ------------------------------------------------------------------------------

TEST(BpeTrainer, CountsWordsFromFilesDirectoriesAndJsonl) {
  TempDir dir;
  write_file(dir.file("in/b.txt"), "hello world\nhello");
  write_file(dir.file("in/sub/a.txt"), "world\n");
  write_file(dir.file("in/c.jsonl"), "{\"text\": \"hello\\nthere\"}\n\n{\"text\": \"\", \"id\": 3}\n");
  BpeTrainStats stats;
  const WordCounts words = count_words({dir.file("in")}, simple_pre_tokenize, 2, &stats);
  const WordCounts expected = {{"\n", 3}, {" world", 1}, {"hello", 3}, {"there", 1}, {"world", 1}};
  EXPECT_EQ(words, expected);
  EXPECT_EQ(stats.input_files, 3);
  EXPECT_EQ(stats.words, 9);
  EXPECT_EQ(stats.unique_words, 5);
}

TEST(BpeTrainer, OutputFilesLayout) {
  TempDir dir;
  write_file(dir.file("corpus.txt"), sample_corpus(3000, 1));
  BpeTrainOptions o;
  o.vocab_size = 500;
  const BpeTrainStats stats = train_bpe(o, {dir.file("corpus.txt")}, dir.file("out"), simple_pre_tokenize);
  EXPECT_EQ(stats.vocab_size, 500);
  const json tj = json::parse(read_file(dir.file("out/tokenizer.json")));
  const json cfg = json::parse(read_file(dir.file("out/tokenizer_config.json")));
  EXPECT_FALSE(fs::exists(dir.file("out/tokenizer.json.tmp")));

  EXPECT_EQ(tj["version"], "1.0");
  EXPECT_TRUE(tj["truncation"].is_null());
  EXPECT_TRUE(tj["padding"].is_null());
  EXPECT_EQ(tj["normalizer"], json::parse(R"({"type":"Sequence","normalizers":[]})"));
  EXPECT_EQ(tj["pre_tokenizer"], deepseek_pre_tokenizer_json());
  EXPECT_EQ(tj["decoder"]["type"], "ByteLevel");
  const json& model = tj["model"];
  EXPECT_EQ(model["type"], "BPE");
  for (const char* k : {"dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix"})
    EXPECT_TRUE(model[k].is_null()) << k;
  EXPECT_EQ(model["fuse_unk"], false);
  EXPECT_EQ(model["byte_fallback"], false);

  // Vocabulary: exactly vocab_size ids 0..N-1; 0..255 the byte alphabet in byte order; specials last.
  const json& vocab = model["vocab"];
  ASSERT_EQ(vocab.size(), 500u);
  std::vector<std::string> by_id(500);
  for (const auto& [tok, id] : vocab.items()) {
    ASSERT_TRUE(id.is_number_integer());
    ASSERT_GE(id.get<int>(), 0);
    ASSERT_LT(id.get<int>(), 500);
    ASSERT_TRUE(by_id[id.get<int>()].empty()) << "id " << id << " twice";
    by_id[id.get<int>()] = tok;
  }
  for (int b = 0; b < 256; ++b) EXPECT_EQ(by_id[b], byte_level_alphabet()[b]) << b;
  EXPECT_EQ(by_id[498], kDeepSeekBos);
  EXPECT_EQ(by_id[499], kDeepSeekEos);
  // Merges: "left right", each making a vocabulary token; the first new token is the first merge.
  const json& merges = model["merges"];
  ASSERT_GE(merges.size(), 500u - 256 - 2);
  for (const auto& mj : merges) {
    const std::string m = mj.get<std::string>();
    const size_t sp = m.find(' ');
    ASSERT_NE(sp, std::string::npos);
    ASSERT_TRUE(vocab.contains(m.substr(0, sp)) && vocab.contains(m.substr(sp + 1))) << m;
    ASSERT_TRUE(vocab.contains(m.substr(0, sp) + m.substr(sp + 1))) << m;
  }
  const std::string first = merges[0].get<std::string>();
  EXPECT_EQ(by_id[256], first.substr(0, first.find(' ')) + first.substr(first.find(' ') + 1));

  ASSERT_EQ(tj["added_tokens"].size(), 2u);
  EXPECT_EQ(tj["added_tokens"][0]["id"], 498);
  EXPECT_EQ(tj["added_tokens"][0]["content"], kDeepSeekBos);
  EXPECT_EQ(tj["added_tokens"][0]["special"], true);
  EXPECT_EQ(tj["added_tokens"][1]["id"], 499);
  EXPECT_EQ(tj["added_tokens"][1]["content"], kDeepSeekEos);
  const json& post = tj["post_processor"];
  EXPECT_EQ(post["type"], "TemplateProcessing");
  EXPECT_EQ(post["single"][0]["SpecialToken"]["id"], kDeepSeekBos);
  EXPECT_EQ(post["special_tokens"][kDeepSeekBos]["ids"], json::array({498}));

  // Against DeepSeek's own files, where present: same structure, same config apart from the length.
  const std::string ds = std::string(DSMOE_SHARED_DIR) + "/tokenizers/deepseek-llm";
  if (fs::exists(ds + "/tokenizer.json")) {
    const json ref = json::parse(read_file(ds + "/tokenizer.json"));
    const json ref_cfg = json::parse(read_file(ds + "/tokenizer_config.json"));
    std::vector<std::string> keys, ref_keys;
    for (const auto& [k, v] : tj.items()) keys.push_back(k);
    for (const auto& [k, v] : ref.items()) ref_keys.push_back(k);
    EXPECT_EQ(keys, ref_keys);
    EXPECT_EQ(tj["normalizer"], ref["normalizer"]);
    // (pre_tokenizer: checked above against the embedded block, which repairs the NFC-damaged regex of the file.)
    EXPECT_EQ(tj["decoder"], ref["decoder"]);
    json post_ref = ref["post_processor"];
    post_ref["special_tokens"][kDeepSeekBos]["ids"] = json::array({498});
    EXPECT_EQ(tj["post_processor"], post_ref);
    json ref_model = ref["model"];
    ref_model.erase("vocab");
    ref_model.erase("merges");
    json model_no_vocab = model;
    model_no_vocab.erase("vocab");
    model_no_vocab.erase("merges");
    EXPECT_EQ(model_no_vocab, ref_model);
    json ref_added = ref["added_tokens"][0];
    ref_added["id"] = 498;
    EXPECT_EQ(tj["added_tokens"][0], ref_added);
    EXPECT_EQ(cfg, ref_cfg);  // model_max_length 16384 is DeepSeek's too
    EXPECT_EQ(cfg["chat_template"].get<std::string>(), deepseek_chat_template());
  } else if (dsmoe::testing::running_in_ci()) {
    ADD_FAILURE() << "CI=true: " << dsmoe::testing::missing_shared_message(ds + "/tokenizer.json");
  } else {
    std::fprintf(stderr, "*** SKIPPED the comparison with DeepSeek's files: %s\n",
                 dsmoe::testing::missing_shared_message(ds + "/tokenizer.json").c_str());
  }
  EXPECT_EQ(cfg["add_bos_token"], true);
  EXPECT_EQ(cfg["add_eos_token"], false);
  EXPECT_EQ(cfg["bos_token"], kDeepSeekBos);
  EXPECT_EQ(cfg["eos_token"], kDeepSeekEos);
  EXPECT_EQ(cfg["tokenizer_class"], "LlamaTokenizerFast");
}

TEST(BpeTrainer, RunsOutOfPairsBelowVocabSize) {
  TempDir dir;
  write_file(dir.file("tiny.txt"), "aaabdaaabac\n");
  BpeTrainOptions o;
  o.vocab_size = 5000;
  const BpeTrainStats stats = train_bpe(o, {dir.file("tiny.txt")}, dir.file("out"), simple_pre_tokenize);
  EXPECT_EQ(stats.merges, 3);
  EXPECT_EQ(stats.vocab_size, 256 + 3 + 2);
  const json tj = json::parse(read_file(dir.file("out/tokenizer.json")));
  EXPECT_EQ(tj["model"]["vocab"].size(), 261u);
  EXPECT_EQ(tj["model"]["merges"], json::parse(R"(["a a", "a b", "aa ab"])"));
  EXPECT_EQ(tj["model"]["vocab"][kDeepSeekBos], 259);
}

TEST(BpeTrainer, DeterministicAcrossThreadCounts) {
  TempDir dir;
  // Several blocks' worth is not needed: the split across threads changes with the thread count anyway.
  write_file(dir.file("in/a.txt"), sample_corpus(4000, 2));
  write_file(dir.file("in/b.jsonl"), [] {
    std::string s;
    for (int i = 0; i < 300; ++i) s += json({{"text", sample_corpus(3, 100 + i)}}).dump() + "\n";
    return s;
  }());
  BpeTrainOptions o;
  o.vocab_size = 1000;
  std::string first_tok, first_cfg;
  for (int threads : {1, 2, 3, 8}) {
    o.threads = threads;
    const std::string out = dir.file(fmt::format("out{}", threads));
    train_bpe(o, {dir.file("in")}, out, simple_pre_tokenize);
    const std::string tok = read_file(out + "/tokenizer.json"), cfg = read_file(out + "/tokenizer_config.json");
    if (first_tok.empty()) {
      first_tok = tok;
      first_cfg = cfg;
      EXPECT_FALSE(tok.empty());
    } else {
      EXPECT_EQ(tok, first_tok) << threads << " threads";
      EXPECT_EQ(cfg, first_cfg) << threads << " threads";
    }
  }
  // Training again into the same directory replaces the files with the same bytes.
  o.threads = 2;
  train_bpe(o, {dir.file("in")}, dir.file("out1"), simple_pre_tokenize);
  EXPECT_EQ(read_file(dir.file("out1/tokenizer.json")), first_tok);
}

// ---- errors -----------------------------------------------------------------------------------------------------

TEST(BpeTrainer, ClearErrors) {
  TempDir dir;
  write_file(dir.file("ok.txt"), "hello hello hello\n");
  write_file(dir.file("empty.txt"), "");
  write_file(dir.file("bad.txt"), "fine\nbad \xFF byte\n");
  write_file(dir.file("bad.jsonl"), "{\"text\": \"a\"}\n{\"txt\": \"a\"}\n");
  write_file(dir.file("broken.jsonl"), "{\"text\": \"a\"}\n{\"text\": \n");
  fs::create_directories(dir.file("empty_dir"));
  BpeTrainOptions o;
  o.vocab_size = 300;
  const std::string out = dir.file("out");
  auto train = [&](const BpeTrainOptions& opt, const std::string& input) {
    return error_of([&] { train_bpe(opt, {input}, out, simple_pre_tokenize); });
  };
  std::string e = train(o, dir.file("missing.txt"));
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
  EXPECT_NE(e.find("missing.txt"), std::string::npos) << e;

  e = train(o, dir.file("empty.txt"));
  EXPECT_NE(e.find("no text to train on"), std::string::npos) << e;
  e = train(o, dir.file("empty_dir"));
  EXPECT_NE(e.find("no input files"), std::string::npos) << e;

  BpeTrainOptions small = o;
  small.vocab_size = 257;
  e = train(small, dir.file("ok.txt"));
  EXPECT_NE(e.find("vocab_size 257 is smaller than 256 byte tokens + 2 special tokens = 258"), std::string::npos) << e;
  small.vocab_size = 258;  // just the bytes and the specials: valid, no merges
  EXPECT_EQ(train(small, dir.file("ok.txt")), "");

  e = train(o, dir.file("bad.txt"));
  EXPECT_NE(e.find("bad.txt:2: invalid UTF-8"), std::string::npos) << e;
  e = train(o, dir.file("bad.jsonl"));
  EXPECT_NE(e.find("bad.jsonl:2: expected an object with a string field \"text\""), std::string::npos) << e;
  e = train(o, dir.file("broken.jsonl"));
  EXPECT_NE(e.find("broken.jsonl:2: invalid JSON"), std::string::npos) << e;

  BpeTrainOptions bad_specials = o;
  bad_specials.special_tokens = {"<s>"};
  EXPECT_NE(train(bad_specials, dir.file("ok.txt")).find("at least BOS and EOS"), std::string::npos);
  bad_specials.special_tokens = {"<s>", "<s>"};
  EXPECT_NE(train(bad_specials, dir.file("ok.txt")).find("listed twice"), std::string::npos);
  bad_specials.special_tokens = {"<s>", "a"};
  EXPECT_NE(train(bad_specials, dir.file("ok.txt")).find("spelling of a byte token"), std::string::npos);
  BpeTrainOptions bad_freq = o;
  bad_freq.min_frequency = -1;
  EXPECT_NE(train(bad_freq, dir.file("ok.txt")).find("min_frequency"), std::string::npos);
  // A pre-tokenizer that does not spell pieces in the byte-level alphabet.
  e = error_of([&] {
    train_bpe(o, {dir.file("ok.txt")}, out,
              [](std::string_view text, const std::function<void(std::string_view)>& fn) { fn(text); });
  });
  EXPECT_NE(e.find("byte-level alphabet"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(out + "/tokenizer.json.tmp"));
}

// ---- with the real pre-tokenizer and text::Tokenizer --------------------------------------------------------------

TEST(BpeTrainer, TrainedTokenizerRoundTrips) {
  TempDir dir;
  const std::string corpus =
      sample_corpus(3000, 3) + "Tabs\tand   spaces   \n\r\nnumbers 12345 and ½ and 日本語の文章\n";
  write_file(dir.file("corpus.txt"), corpus);
  BpeTrainOptions o;
  o.vocab_size = 500;
  const BpeTrainStats stats = train_bpe(o, {dir.file("corpus.txt")}, dir.file("out"));
  EXPECT_EQ(stats.vocab_size, 500);

  const Tokenizer tok = Tokenizer::load(dir.file("out"));
  const std::vector<int32_t> ids = tok.encode(corpus);
  EXPECT_EQ(tok.decode(ids), corpus);
  EXPECT_LT(ids.size() * 3, corpus.size()) << "the trained merges should compress the training text";
  for (int32_t id : ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 498);  // never a special token from plain text
  }
  std::mt19937 rng(99);
  for (int i = 0; i < 200; ++i) {
    const std::string s = random_utf8(rng, rng() % 64);
    ASSERT_EQ(tok.decode(tok.encode(s)), s) << "case " << i;
  }
  // add_special puts BOS first, as DeepSeek's post-processor does.
  const std::vector<int32_t> with_bos = tok.encode("hello", true);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos[0], 498);

  // The real pre-tokenizer counts the same words whatever the thread count.
  const PreTokenizeFn pre = make_pre_tokenizer(nullptr);
  EXPECT_EQ(count_words({dir.file("corpus.txt")}, pre, 1), count_words({dir.file("corpus.txt")}, pre, 4));
}

TEST(BpeTrainer, BrownCorpus8K) {
  const std::string brown = std::string(DSMOE_SHARED_DIR) + "/data/brown.txt";
  DSMOE_REQUIRE_SHARED_FILE(brown);
  TempDir dir;
  BpeTrainOptions o;  // 8192, min_frequency 2, DeepSeek pre-tokenizer and specials, all cores
  const BpeTrainStats stats = train_bpe(o, {brown}, dir.file("out"));  // its speed: `dsmoe tokenizer train` prints it
  std::printf("[ brown   ] %.1f MB, %lld words (%lld distinct), vocab %lld, %lld merges\n", stats.input_bytes / 1e6,
              static_cast<long long>(stats.words), static_cast<long long>(stats.unique_words),
              static_cast<long long>(stats.vocab_size), static_cast<long long>(stats.merges));
  EXPECT_EQ(stats.vocab_size, 8192);

  const Tokenizer tok = Tokenizer::load(dir.file("out"));
  const std::string text = read_file(brown);
  const std::string sample = text.substr(0, 200000);
  const std::vector<int32_t> ids = tok.encode(sample);
  EXPECT_EQ(tok.decode(ids), sample);
  std::printf("[ brown   ] first 200 KB: %zu tokens, %.2f bytes/token\n", ids.size(),
              static_cast<double>(sample.size()) / ids.size());
  EXPECT_LT(ids.size() * 3, sample.size());
}
