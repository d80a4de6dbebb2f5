// GGUF tokenizer metadata (src/text/gguf_vocab): the llama.cpp keys written for a tokenizer trained in-test and
// for the real DeepSeek LLM tokenizer, round trips through a GGUF file (same ids, same bytes), and clear errors.
#include "text/gguf_vocab.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "expect_error.h"
#include "io/gguf.h"
#include "shared_data.h"
#include "text/bpe_trainer.h"
#include "text/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using dsmoe::io::GgufFile;
using dsmoe::io::GgufKV;
using dsmoe::io::GgufType;
using dsmoe::io::GgufValue;
using dsmoe::text::Tokenizer;
using json = nlohmann::json;

const std::string kDeepSeekDir = std::string(DSMOE_SHARED_DIR) + "/tokenizers/deepseek-llm";
const std::string kBos = dsmoe::text::kDeepSeekBos;
const std::string kEos = dsmoe::text::kDeepSeekEos;

// A per-test scratch file path, removed afterwards.
struct TempFile {
  fs::path path;
  TempFile() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() / fmt::format("dsmoe_vocab_{}_{}_{}.gguf", info->test_suite_name(), info->name(),
                                                   static_cast<long>(::getpid()));
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
  std::string str() const { return path.string(); }
};

const GgufValue& kv(const std::vector<GgufKV>& kvs, const std::string& key) {
  auto it = std::find_if(kvs.begin(), kvs.end(), [&](const GgufKV& k) { return k.key == key; });
  if (it == kvs.end()) throw std::runtime_error("no key " + key);
  return it->value;
}

bool has_kv(const std::vector<GgufKV>& kvs, const std::string& key) {
  return std::any_of(kvs.begin(), kvs.end(), [&](const GgufKV& k) { return k.key == key; });
}

std::vector<GgufKV> without(std::vector<GgufKV> kvs, const std::string& key) {
  kvs.erase(std::remove_if(kvs.begin(), kvs.end(), [&](const GgufKV& k) { return k.key == key; }), kvs.end());
  return kvs;
}

void set_kv(std::vector<GgufKV>& kvs, const std::string& key, GgufValue v) {
  for (auto& k : kvs)
    if (k.key == key) k.value = std::move(v);
}

// Writes the KVs (no tensors) and reads the tokenizer back.
Tokenizer via_gguf(const std::vector<GgufKV>& kvs, const TempFile& file) {
  dsmoe::io::write_gguf(file.str(), kvs, {});
  return dsmoe::text::tokenizer_from_gguf(GgufFile::open(file.str()));
}

// Multi-script text with digits, runs of spaces, tabs, newlines and the special tokens.
const std::vector<std::string> kTexts = {
    "Hello world",
    " Hello  World  ",
    "the café naïve Führer Straße, 1961 and 42.",
    "Numbers: 1234567890 3.14159 -7e10",
    "日本語の文章とひらがな、カタカナ。",
    "한국어 텍스트 Ελληνικά Кириллица עברית العربية",
    "emoji 🙂🚀 and symbols ½ ∑ → ©",
    "tabs\tand   spaces   \n\r\nnewlines\n\n\n",
    "   ",
    "",
    kBos + "a chat" + kEos + "then more",
    "<|extra|> between " + std::string("<user>") + "words<user>",
    "literal [PAD405] is plain text",
};

// ---------------------------------------------------------------------------------------------------------
// A tokenizer trained in-test
// ---------------------------------------------------------------------------------------------------------

// Some English-like text with a little non-ASCII, deterministic.
std::string corpus() {
  static const char* words[] = {"the",   "of",   "and",    "to",     "in",   "that",   "is",
                                "was",   "for",  "with",   "his",    "on",   "people", "Führer",
                                "naïve", "café", "日本語", "Straße", "1961", "42",     "文章"};
  std::string out;
  uint32_t x = 12345;
  for (int line = 0; line < 800; ++line) {
    for (int i = 0; i < 8; ++i) {
      x = x * 1664525u + 1013904223u;
      if (i) out += ' ';
      out += words[(x >> 8) % std::size(words)];
    }
    out += line % 5 == 0 ? ".\n\n" : ".\n";
  }
  return out;
}

// Trained on corpus() with the DeepSeek pre-tokenizer: 300 tokens (256 bytes + merges), then BOS, EOS and
// "<|extra|>" (special) at 300..302. A non-special added token "<user>" is put at id 305, so ids 303 and 304
// have no token: every token type and fillers in between appear.
Tokenizer trained_tokenizer() {
  using namespace dsmoe::text;
  const PreTokenizeFn pre = make_pre_tokenizer(nullptr);
  std::map<std::string, uint64_t> counts;
  pre(corpus(), [&](std::string_view piece) { ++counts[from_byte_level(piece)]; });
  const WordCounts words(counts.begin(), counts.end());
  BpeTrainOptions o;
  o.special_tokens = {kBos, kEos, "<|extra|>"};
  const BpeModel model = train_bpe_from_counts(words, 300, 2, o.special_tokens);
  EXPECT_EQ(model.tokens.size(), 300u);
  json tj = json::parse(bpe_tokenizer_json(model, o).dump());
  tj["added_tokens"].push_back({{"id", 305},
                                {"content", "<user>"},
                                {"single_word", false},
                                {"lstrip", false},
                                {"rstrip", false},
                                {"normalized", true},
                                {"special", false}});
  return Tokenizer::from_json(tj, json::parse(bpe_tokenizer_config_json(o).dump()), "trained in-test");
}

TEST(GgufVocab, KeysOfATrainedTokenizer) {
  const Tokenizer tok = trained_tokenizer();
  ASSERT_EQ(tok.vocab_size(), 306);
  const auto kvs = dsmoe::text::tokenizer_to_gguf(tok, 320);
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.model").s, "gpt2");
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.pre").s, "deepseek-llm");
  const auto& tokens = kv(kvs, "tokenizer.ggml.tokens").strings;
  const auto& types = kv(kvs, "tokenizer.ggml.token_type");
  EXPECT_EQ(types.elem, GgufType::INT32);
  ASSERT_EQ(tokens.size(), 320u);
  ASSERT_EQ(types.ints.size(), 320u);
  for (int32_t id = 0; id < 300; ++id) {
    EXPECT_EQ(tokens[id], tok.token_piece(id));
    EXPECT_EQ(types.ints[id], 1) << id;
  }
  EXPECT_EQ(tokens[0], "\xC4\x80");  // byte-level alphabet: byte 0 is spelled U+0100
  EXPECT_EQ(tokens[33], "!");
  EXPECT_EQ(tokens[300], kBos);
  EXPECT_EQ(tokens[301], kEos);
  EXPECT_EQ(tokens[302], "<|extra|>");
  EXPECT_EQ(tokens[305], "<user>");
  EXPECT_EQ((std::vector<int64_t>(types.ints.begin() + 300, types.ints.begin() + 307)),
            (std::vector<int64_t>{3, 3, 3, 5, 5, 4, 5}));
  for (int id : {303, 304, 306, 319}) EXPECT_EQ(tokens[id], fmt::format("[PAD{}]", id));
  const auto& merges = kv(kvs, "tokenizer.ggml.merges").strings;
  ASSERT_EQ(merges.size(), tok.merges().size());
  ASSERT_EQ(merges.size(), 300u - 256u);
  EXPECT_EQ(merges[0], tok.token_piece(tok.merges()[0].first) + " " + tok.token_piece(tok.merges()[0].second));
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.bos_token_id").i, 300);
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.bos_token_id").type, GgufType::UINT32);
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.eos_token_id").i, 301);
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.padding_token_id").i, 301);
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.add_bos_token").type, GgufType::BOOL);
  EXPECT_TRUE(kv(kvs, "tokenizer.ggml.add_bos_token").b);
  EXPECT_FALSE(kv(kvs, "tokenizer.ggml.add_eos_token").b);
  EXPECT_EQ(kv(kvs, "tokenizer.chat_template").s, dsmoe::text::deepseek_chat_template());
}

TEST(GgufVocab, TrainedTokenizerRoundTripsThroughAFile) {
  const Tokenizer tok = trained_tokenizer();
  TempFile file;
  const Tokenizer back = via_gguf(dsmoe::text::tokenizer_to_gguf(tok, 320), file);
  EXPECT_EQ(back.vocab_size(), 320);  // fillers included
  EXPECT_EQ(back.source(), file.str());
  EXPECT_EQ(back.bos_id(), 300);
  EXPECT_EQ(back.eos_id(), 301);
  EXPECT_TRUE(back.add_bos());
  EXPECT_FALSE(back.add_eos());
  EXPECT_EQ(back.config()["chat_template"], tok.config()["chat_template"]);
  std::vector<std::string> texts = kTexts;
  texts.push_back(corpus().substr(0, 2000));
  for (const std::string& text : texts) {
    const auto ids = tok.encode(text);
    EXPECT_EQ(back.encode(text), ids) << json(text).dump();
    EXPECT_EQ(back.encode(text, true), tok.encode(text, true)) << json(text).dump();
    EXPECT_EQ(back.decode(ids), text) << json(text).dump();
  }
  for (int32_t id = 0; id < 306; ++id) {
    if (tok.token_kind(id) == Tokenizer::TokenKind::Missing) continue;
    EXPECT_EQ(back.token_bytes(id), tok.token_bytes(id)) << id;
    EXPECT_EQ(back.token_kind(id), tok.token_kind(id)) << id;
  }
  EXPECT_EQ(back.encode("<|extra|><user>"), (std::vector<int32_t>{302, 305}));
  EXPECT_EQ(back.token_kind(303), Tokenizer::TokenKind::Normal);  // a filler: in the vocab, never produced
  EXPECT_EQ(back.token_bytes(303), "[PAD303]");

  // Written again from the rebuilt tokenizer: the same KVs.
  const auto again = dsmoe::text::tokenizer_to_gguf(back, 320);
  const auto first = dsmoe::text::tokenizer_to_gguf(tok, 320);
  for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"})
    EXPECT_EQ(kv(again, key).strings, kv(first, key).strings) << key;
}

TEST(GgufVocab, VocabSizeEqualToTheTokenizerHasNoTrailingFillers) {
  const Tokenizer tok = trained_tokenizer();
  const auto kvs = dsmoe::text::tokenizer_to_gguf(tok, tok.vocab_size());
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.tokens").strings.size(), 306u);
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.tokens").strings.back(), "<user>");
}

// ---------------------------------------------------------------------------------------------------------
// The real DeepSeek LLM tokenizer
// ---------------------------------------------------------------------------------------------------------

#define REQUIRE_DEEPSEEK() DSMOE_REQUIRE_SHARED_FILE(kDeepSeekDir + "/tokenizer.json")

TEST(GgufVocab, DeepSeekKeysAsTheReferenceSays) {
  REQUIRE_DEEPSEEK();
  const Tokenizer tok = Tokenizer::load(kDeepSeekDir);
  const auto kvs = dsmoe::text::tokenizer_to_gguf(tok, 102400);
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.pre").s, "deepseek-llm");  // the file's NFC-damaged regex is recognised
  const auto& tokens = kv(kvs, "tokenizer.ggml.tokens").strings;
  const auto& types = kv(kvs, "tokenizer.ggml.token_type").ints;
  ASSERT_EQ(tokens.size(), 102400u);
  EXPECT_EQ(tokens[100000], kBos);
  EXPECT_EQ(tokens[100001], kEos);
  EXPECT_EQ(tokens[100014], "\xC3\xBC");  // "ü", an added (user-defined) token
  EXPECT_EQ(tokens[100015], "[PAD100015]");
  EXPECT_EQ(tokens[102399], "[PAD102399]");
  std::map<int64_t, int64_t> count;
  for (int64_t t : types) ++count[t];
  EXPECT_EQ(count, (std::map<int64_t, int64_t>{{1, 100000}, {3, 2}, {4, 13}, {5, 2385}}));
  for (int64_t id = 100002; id <= 100014; ++id) EXPECT_EQ(types[id], 4) << id;
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.merges").strings.size(), 99757u);
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.bos_token_id").i, 100000);
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.eos_token_id").i, 100001);
  EXPECT_EQ(kv(kvs, "tokenizer.ggml.padding_token_id").i, 100001);
  EXPECT_TRUE(kv(kvs, "tokenizer.ggml.add_bos_token").b);
  EXPECT_FALSE(kv(kvs, "tokenizer.ggml.add_eos_token").b);
  EXPECT_EQ(kv(kvs, "tokenizer.chat_template").s, tok.config()["chat_template"].get<std::string>());
}

TEST(GgufVocab, DeepSeekGoldenEncodingsThroughAGgufFile) {
  REQUIRE_DEEPSEEK();
  const Tokenizer tok = Tokenizer::load(kDeepSeekDir);
  TempFile file;
  const Tokenizer back = via_gguf(dsmoe::text::tokenizer_to_gguf(tok, 102400), file);
  EXPECT_EQ(back.vocab_size(), 102400);
  EXPECT_EQ(back.bos_id(), 100000);
  EXPECT_EQ(back.eos_id(), 100001);
  EXPECT_TRUE(back.add_bos());
  std::ifstream f(kDeepSeekDir + "/golden.jsonl");
  ASSERT_TRUE(f.good());
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    const json j = json::parse(line);
    const std::string text = j["text"].get<std::string>();
    const auto want = j["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(back.encode(text), want) << json(text).dump();
    EXPECT_EQ(back.decode(want), tok.decode(want)) << json(text).dump();
    ++n;
  }
  EXPECT_EQ(n, 46);
  for (const std::string& text : kTexts)
    EXPECT_EQ(back.encode(text, true), tok.encode(text, true)) << json(text).dump();
  for (int32_t id = 0; id < 100015; ++id) ASSERT_EQ(back.token_bytes(id), tok.token_bytes(id)) << id;
}

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

TEST(GgufVocab, ReadErrorsNameTheFileAndKey) {
  const auto kvs = dsmoe::text::tokenizer_to_gguf(trained_tokenizer(), 320);
  TempFile file;
  auto expect_read_error = [&](const std::vector<GgufKV>& bad, std::vector<std::string> parts) {
    parts.push_back(file.str());
    expect_error([&] { via_gguf(bad, file); }, parts);
  };
  expect_read_error(without(kvs, "tokenizer.ggml.tokens"), {"missing key tokenizer.ggml.tokens"});
  expect_read_error(without(kvs, "tokenizer.ggml.merges"), {"missing key tokenizer.ggml.merges"});
  expect_read_error(without(kvs, "tokenizer.ggml.pre"), {"missing key tokenizer.ggml.pre"});

  auto bad = kvs;
  set_kv(bad, "tokenizer.ggml.pre", GgufValue::str("llama-bpe"));
  expect_read_error(bad, {"tokenizer.ggml.pre", "\"llama-bpe\"", "deepseek-llm"});
  bad = kvs;
  set_kv(bad, "tokenizer.ggml.model", GgufValue::str("llama"));
  expect_read_error(bad, {"tokenizer.ggml.model", "\"llama\""});
  bad = kvs;
  set_kv(bad, "tokenizer.ggml.tokens", GgufValue::str("not an array"));
  expect_read_error(bad, {"tokenizer.ggml.tokens", "not an array of strings"});
  bad = kvs;
  set_kv(bad, "tokenizer.ggml.token_type", GgufValue::str_array({"1"}));
  expect_read_error(bad, {"tokenizer.ggml.token_type", "not an array of integers"});
  bad = kvs;
  set_kv(bad, "tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, {1, 1}));
  expect_read_error(bad, {"tokenizer.ggml.token_type", "2 entries for 320 tokens"});
  bad = kvs;
  auto types = kv(kvs, "tokenizer.ggml.token_type").ints;
  types[7] = 6;
  set_kv(bad, "tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, types));
  expect_read_error(bad, {"tokenizer.ggml.token_type", "token 7 has type 6"});
  bad = kvs;
  set_kv(bad, "tokenizer.ggml.bos_token_id", GgufValue::u32(320));
  expect_read_error(bad, {"tokenizer.ggml.bos_token_id", "320"});
  bad = kvs;
  set_kv(bad, "tokenizer.ggml.add_bos_token", GgufValue::u32(1));
  expect_read_error(bad, {"tokenizer.ggml.add_bos_token", "expected a bool"});
  bad = kvs;
  auto tokens = kv(kvs, "tokenizer.ggml.tokens").strings;
  tokens[5] = tokens[6];
  set_kv(bad, "tokenizer.ggml.tokens", GgufValue::str_array(tokens));
  expect_read_error(bad, {"tokenizer.ggml.tokens", "appears at ids 5 and 6"});
  bad = kvs;
  auto merges = kv(kvs, "tokenizer.ggml.merges").strings;
  merges[3] = "zzzq " + merges[3].substr(merges[3].find(' ') + 1);
  set_kv(bad, "tokenizer.ggml.merges", GgufValue::str_array(merges));
  expect_read_error(bad, {"merge #3", "missing from the vocab", "zzzq"});
}

// A bytes-only tokenizer without tokenizer_config, with one tokenizer.json block replaced when key is given.
Tokenizer bytes_only(const char* key = nullptr, json block = nullptr) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[dsmoe::text::byte_level_alphabet()[b]] = b;
  json tj = {{"normalizer", nullptr},
             {"pre_tokenizer", dsmoe::text::deepseek_pre_tokenizer_json()},
             {"decoder", {{"type", "ByteLevel"}}},
             {"model", dsmoe::text::bpe_model_json(vocab, json::array())}};
  if (key) tj[key] = std::move(block);
  return Tokenizer::from_json(tj, nullptr, "variant");
}

TEST(GgufVocab, WithoutConfigOnlyTheRequiredKeys) {
  const auto kvs = dsmoe::text::tokenizer_to_gguf(bytes_only(), 256);
  for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                          "tokenizer.ggml.padding_token_id", "tokenizer.chat_template"})
    EXPECT_FALSE(has_kv(kvs, key)) << key;
  EXPECT_FALSE(kv(kvs, "tokenizer.ggml.add_bos_token").b);
  EXPECT_TRUE(kv(kvs, "tokenizer.ggml.merges").strings.empty());
  TempFile file;
  const Tokenizer back = via_gguf(kvs, file);
  EXPECT_EQ(back.bos_id(), -1);
  EXPECT_EQ(back.eos_id(), -1);
  EXPECT_FALSE(back.add_bos());
  EXPECT_EQ(back.encode("ab 1"), (std::vector<int32_t>{97, 98, 32, 49}));  // id = byte
}

TEST(GgufVocab, WriteErrorsForWhatLlamaCppCannotReproduce) {
  const Tokenizer tok = trained_tokenizer();
  expect_error([&] { dsmoe::text::tokenizer_to_gguf(tok, 305); }, {"trained in-test", "vocab_size 305", "306"});

  auto with = [](const char* key, json block) { return bytes_only(key, std::move(block)); };
  // A GPT-2 style pre-tokenizer: llama.cpp's "deepseek-llm" regexes would split differently.
  const json gpt2_pre = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  expect_error([&] { dsmoe::text::tokenizer_to_gguf(with("pre_tokenizer", gpt2_pre), 258); },
               {"variant", "pre_tokenizer has no llama.cpp name", "deepseek-llm"});
  expect_error(
      [&] {
        dsmoe::text::tokenizer_to_gguf(with("normalizer", {{"type", "NFC"}}), 258);
      },
      {"variant", "normalizer"});
  expect_error(
      [&] {
        dsmoe::text::tokenizer_to_gguf(with("decoder", {{"type", "Fuse"}}), 258);
      },
      {"variant", "decoder is not ByteLevel"});
}

TEST(GgufVocab, HasTokenizer) {
  TempFile file;
  dsmoe::io::write_gguf(file.str(), {{"general.architecture", GgufValue::str("deepseek")}}, {});
  EXPECT_FALSE(dsmoe::text::gguf_has_tokenizer(GgufFile::open(file.str())));
  dsmoe::io::write_gguf(file.str(), dsmoe::text::tokenizer_to_gguf(trained_tokenizer(), 306), {});
  EXPECT_TRUE(dsmoe::text::gguf_has_tokenizer(GgufFile::open(file.str())));
}

}  // namespace
