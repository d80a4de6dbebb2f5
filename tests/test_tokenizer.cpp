// Tests for src/text/tokenizer: the DeepSeek golden encodings (HF tokenizers), round trips, added tokens,
// normalizers, every Split behaviour, BPE options, the Oniguruma->PCRE2 regex bridge, and malformed inputs.
#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "expect_error.h"
#include "shared_data.h"
#include "text/pretokenizer.h"
#include "text/unicode.h"

namespace {

using dsmoe::text::Tokenizer;
using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kDeepSeekDir = std::string(DSMOE_SHARED_DIR) + "/tokenizers/deepseek-llm";

bool have_deepseek() { return fs::exists(kDeepSeekDir + "/tokenizer.json"); }

#define REQUIRE_DEEPSEEK() DSMOE_REQUIRE_SHARED_FILE(kDeepSeekDir + "/tokenizer.json")

// One shared load for the DeepSeek tests (loading is measured separately in LoadTime).
const Tokenizer& deepseek() {
  static const Tokenizer t = Tokenizer::load(kDeepSeekDir);
  return t;
}

std::string u8(char32_t c) { return dsmoe::text::unicode::to_utf8(c); }

// ---------------------------------------------------------------------------------------------------------
// Small tokenizers built in code
// ---------------------------------------------------------------------------------------------------------

// A model whose vocab holds every character of `chars` (ids in order) plus `extra` tokens, with `merges`.
json char_model(const std::string& chars, const std::vector<std::string>& extra = {},
                const std::vector<std::string>& merges = {}) {
  json vocab = json::object();
  int id = 0;
  size_t i = 0;
  while (i < chars.size()) {
    const size_t st = i;
    dsmoe::text::unicode::next_cp(chars, i);
    const std::string c = chars.substr(st, i - st);
    if (!vocab.contains(c)) vocab[c] = id++;
  }
  for (const auto& e : extra)
    if (!vocab.contains(e)) vocab[e] = id++;
  return {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"dropout", nullptr}, {"unk_token", nullptr}};
}

json tokenizer_json(json model, json pre = nullptr, json norm = nullptr, json added = json::array(),
                    json decoder = nullptr) {
  return {{"version", "1.0"},          {"added_tokens", added}, {"normalizer", norm}, {"pre_tokenizer", pre},
          {"post_processor", nullptr}, {"decoder", decoder},    {"model", model}};
}

// A byte-level BPE over the full 256-symbol alphabet with a few merges, GPT-2 pre-tokenization, ByteLevel
// decoder: the round-trip property runs on it even without ../shared.
Tokenizer tiny_byte_level() {
  const auto& a = dsmoe::text::byte_level_alphabet();
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[a[b]] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"\xC4\xA0", "t"},        {"h", "e"}, {"\xC4\xA0t", "he"},      {"i", "n"},
      {"\xC4\xA0", "a"},        {"e", "r"}, {"\xC3\xA4", "\xC2\xBA"}, {"\xC4\xA0", "\xC4\xA0"},
      {"\xC4\x8A", "\xC4\x8A"}, {"o", "n"}};
  json jm = json::array();
  int id = 256;
  for (const auto& [l, r] : merges) {
    jm.push_back(l + " " + r);
    if (!vocab.contains(l + r)) vocab[l + r] = id++;
  }
  json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", jm}};
  json pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  json added = json::array({{{"id", id}, {"content", "<|end|>"}, {"special", true}, {"normalized", false}}});
  return Tokenizer::from_json(tokenizer_json(model, pre, nullptr, added, {{"type", "ByteLevel"}}), nullptr, "tiny");
}

std::vector<std::string> pieces_of(const Tokenizer& t, const std::string& text) {
  std::vector<std::string> out;
  t.pre_tokenize(text, [&](std::string_view p) { out.emplace_back(p); });
  return out;
}

using Strings = std::vector<std::string>;

// Random UTF-8 text mixing scripts, emoji (ZWJ sequences, flags, skin tones), combining marks, whitespace
// runs, CR LF, tabs, NUL, digits, Latin-1 letters (DeepSeek's added tokens) and special-token strings.
std::string random_text(std::mt19937& rng) {
  static const std::vector<std::string> pool = {"a",
                                                "Z",
                                                "q",
                                                "the",
                                                " of",
                                                "K",
                                                "_",
                                                "-",
                                                "'s",
                                                "'ll",
                                                "!",
                                                "?",
                                                "...",
                                                "(",
                                                "]",
                                                "{",
                                                "`",
                                                "~",
                                                "$",
                                                "é",
                                                "ü",
                                                "ø",
                                                "À",
                                                "ß",
                                                "ÿ",
                                                "½",
                                                "²",
                                                "Ω",
                                                "ω",
                                                "ὦ",
                                                "ᾯ",
                                                "ΐ",
                                                "Ω",
                                                "K",
                                                "ι",
                                                "Привет",
                                                "ж",
                                                "Ё",
                                                "中",
                                                "文",
                                                "龥",
                                                "一",
                                                "ࠀ",
                                                "가",
                                                "한국",
                                                "ㄱ",
                                                "日本語",
                                                "カタカナ",
                                                "مرحبا",
                                                "ש",
                                                "हिन्दी",
                                                "ไทย",
                                                "ក",
                                                "ា",
                                                "់",
                                                "😀",
                                                "🦙",
                                                "🚀",
                                                "👍🏽",
                                                "👨‍👩‍👧‍👦",
                                                "😶‍🌫️",
                                                "🏳️‍🌈",
                                                "🇫🇷",
                                                "❤️",
                                                "✅",
                                                "e\u0301",
                                                "a\u0308\u0323",
                                                "\u0301",
                                                "\u200d",
                                                "\ufe0f",
                                                "\u00a0",
                                                "\u3000",
                                                "\u2028",
                                                "\u180e",
                                                "\u0085",
                                                " ",
                                                "  ",
                                                "    ",
                                                "\t",
                                                "\t\t",
                                                "\n",
                                                "\n\n",
                                                "\r\n",
                                                "\r",
                                                std::string(1, '\0'),
                                                "\x01",
                                                "\x7f",
                                                "0",
                                                "7",
                                                "42",
                                                "2024",
                                                "٣",
                                                "Ⅻ",
                                                "①",
                                                "ＡＢＣ",
                                                "！",
                                                "，",
                                                "“",
                                                "”",
                                                "—",
                                                "…",
                                                "€",
                                                "𝔘",
                                                "𐐀",
                                                "𞤀",
                                                "<｜begin▁of▁sentence｜>",
                                                "<｜end▁of▁sentence｜>",
                                                "<|end|>",
                                                "\xEF\xBF\xBD"};
  std::uniform_int_distribution<int> len(0, 24);
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  std::string s;
  for (int k = len(rng); k > 0; --k) s += pool[pick(rng)];
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// DeepSeek: golden encodings, load time, specials, round trips
// ---------------------------------------------------------------------------------------------------------

TEST(DeepSeekTokenizer, GoldenEncodingsMatchHF) {
  REQUIRE_DEEPSEEK();
  std::ifstream f(kDeepSeekDir + "/golden.jsonl");
  ASSERT_TRUE(f.good());
  std::string line;
  int n = 0, ok = 0;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    const json j = json::parse(line);
    const std::string text = j["text"].get<std::string>();
    const auto want = j["ids"].get<std::vector<int32_t>>();
    const auto got = deepseek().encode(text);
    ++n;
    if (got == want) ++ok;
    EXPECT_EQ(got, want) << "text: " << json(text).dump();
  }
  EXPECT_EQ(n, 46);
  EXPECT_EQ(ok, n);
  std::printf("[          ] golden: %d/%d exact\n", ok, n);
}

// Load time is measured by bench/bench_tokenizer, not asserted here.
TEST(DeepSeekTokenizer, Loads) {
  REQUIRE_DEEPSEEK();
  const Tokenizer t = Tokenizer::load(kDeepSeekDir);
  EXPECT_EQ(t.vocab_size(), 100015);
}

TEST(DeepSeekTokenizer, SpecialTokensAndConfig) {
  REQUIRE_DEEPSEEK();
  const Tokenizer& t = deepseek();
  EXPECT_EQ(t.bos_id(), 100000);
  EXPECT_EQ(t.eos_id(), 100001);
  EXPECT_TRUE(t.add_bos());
  EXPECT_FALSE(t.add_eos());
  EXPECT_EQ(t.encode("Hello", true), (std::vector<int32_t>{100000, 17464}));
  EXPECT_EQ(t.encode("", true), (std::vector<int32_t>{100000}));
  EXPECT_EQ(t.encode("Führer"), (std::vector<int32_t>{37, 100014, 71, 6245}));
  // Special tokens in the text are matched (add_special only controls the BOS/EOS wrapping).
  EXPECT_EQ(t.encode("<｜begin▁of▁sentence｜>Hello<｜end▁of▁sentence｜>"),
            (std::vector<int32_t>{100000, 17464, 100001}));
  EXPECT_EQ(t.decode({100000, 17464, 100001}), "<｜begin▁of▁sentence｜>Hello<｜end▁of▁sentence｜>");
  EXPECT_EQ(t.token_bytes(100014), "ü");      // added token: its content, not byte-level decoded
  EXPECT_EQ(t.token_piece(207), "\xC4\xA0");  // "Ġ"
  EXPECT_EQ(t.token_bytes(207), " ");
  EXPECT_EQ(t.token_to_id("\xC4\xA0"), 207);
  EXPECT_EQ(t.token_to_id("<｜end▁of▁sentence｜>"), 100001);
  EXPECT_FALSE(t.token_to_id("definitely not a token").has_value());
  EXPECT_TRUE(t.config().contains("chat_template"));
  EXPECT_EQ(t.fingerprint().size(), 64u);
}

TEST(DeepSeekTokenizer, RoundTripGoldenAndRandom) {
  REQUIRE_DEEPSEEK();
  const Tokenizer& t = deepseek();
  std::ifstream f(kDeepSeekDir + "/golden.jsonl");
  std::string line;
  while (std::getline(f, line)) {
    const std::string text = json::parse(line)["text"].get<std::string>();
    EXPECT_EQ(t.decode(t.encode(text)), text);
  }
  std::mt19937 rng(1234);
  for (int k = 0; k < 2500; ++k) {
    const std::string s = random_text(rng);
    ASSERT_EQ(t.decode(t.encode(s)), s) << "text: " << json(s).dump();
  }
}

TEST(DeepSeekTokenizer, EmbeddedPreTokenizerGivesTheSameEncodings) {
  REQUIRE_DEEPSEEK();
  std::ifstream f(kDeepSeekDir + "/tokenizer.json");
  json tj = json::parse(f);
  tj["pre_tokenizer"] = dsmoe::text::deepseek_pre_tokenizer_json();
  const Tokenizer t = Tokenizer::from_json(tj, nullptr, "deepseek+embedded");
  std::ifstream g(kDeepSeekDir + "/golden.jsonl");
  std::string line;
  while (std::getline(g, line)) {
    const json j = json::parse(line);
    EXPECT_EQ(t.encode(j["text"].get<std::string>()), j["ids"].get<std::vector<int32_t>>());
  }
  std::mt19937 rng(99);
  for (int k = 0; k < 500; ++k) {
    const std::string s = random_text(rng);
    EXPECT_EQ(t.encode(s), deepseek().encode(s)) << json(s).dump();
  }
}

TEST(DeepSeekTokenizer, NfcDamagedClassIsRestored) {
  REQUIRE_DEEPSEEK();
  // The shipped regex 2 has NFC-normalised endpoints (three descending ranges, which Oniguruma rejects);
  // after repair it must compile to exactly the embedded original.
  std::ifstream f(kDeepSeekDir + "/tokenizer.json");
  const json tj = json::parse(f);
  const std::string shipped = tj["pre_tokenizer"]["pretokenizers"][1]["pattern"]["Regex"];
  const std::string original = dsmoe::text::deepseek_pre_tokenizer_json()["pretokenizers"][1]["pattern"]["Regex"];
  EXPECT_NE(shipped, original);
  EXPECT_EQ(dsmoe::text::detail::onig_to_pcre2(shipped), dsmoe::text::detail::onig_to_pcre2(original));
  // Behaviour that depends on it: the damaged "K-\u212D" range would make '_' (and everything from U+004B to
  // U+212D) a letter of regex 2, gluing "a_b" into one piece. (Greek Extended letters are then cut out again
  // by regex 5, whose range U+0800-U+4E00 covers them.)
  EXPECT_EQ(pieces_of(deepseek(), "a_b \u1F7C \u1F7C"),
            (Strings{"a", "_", "b", "\xC4\xA0", "\xC3\xA1\xC2\xBD\xC2\xBC", "\xC4\xA0", "\xC3\xA1\xC2\xBD\xC2\xBC"}));
}

TEST(DeepSeekTokenizer, PreTokenizeForTrainer) {
  REQUIRE_DEEPSEEK();
  EXPECT_EQ(pieces_of(deepseek(), "Hello, world! 123"),
            (Strings{"Hello", ",", "\xC4\xA0world", "!", "\xC4\xA0", "1", "2", "3"}));
  // Added tokens are atomic and not reported.
  EXPECT_EQ(pieces_of(deepseek(), "Führer<｜end▁of▁sentence｜>x"), (Strings{"F", "hrer", "x"}));
}

TEST(DeepSeekTokenizer, ThreadSafe) {
  REQUIRE_DEEPSEEK();
  std::mt19937 rng(7);
  std::vector<std::string> texts;
  for (int k = 0; k < 400; ++k) texts.push_back(random_text(rng));
  std::vector<std::vector<int32_t>> want;
  for (const auto& s : texts) want.push_back(deepseek().encode(s));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int th = 0; th < 4; ++th)
    threads.emplace_back([&, th] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t k = th; k < texts.size(); k += 1)
          if (deepseek().encode(texts[k]) != want[k]) ++bad;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// ---------------------------------------------------------------------------------------------------------
// Round trip on the tiny in-test tokenizer (always runs)
// ---------------------------------------------------------------------------------------------------------

TEST(Tokenizer, RoundTripTinyByteLevel) {
  const Tokenizer t = tiny_byte_level();
  std::mt19937 rng(42);
  for (int k = 0; k < 3000; ++k) {
    const std::string s = random_text(rng);
    const auto ids = t.encode(s);
    ASSERT_EQ(t.decode(ids), s) << json(s).dump();
  }
  EXPECT_EQ(t.encode("the"), t.encode("the"));
  EXPECT_EQ(t.decode(t.encode(" the end<|end|>")), " the end<|end|>");
  const auto ids = t.encode(" the<|end|>");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(t.token_piece(ids[0]), "\xC4\xA0the");
  EXPECT_EQ(t.token_bytes(ids[1]), "<|end|>");
}

TEST(Tokenizer, ByteLevelAlphabet) {
  const auto& a = dsmoe::text::byte_level_alphabet();
  EXPECT_EQ(a[' '], "\xC4\xA0");   // Ġ
  EXPECT_EQ(a['\n'], "\xC4\x8A");  // Ċ
  EXPECT_EQ(a['A'], "A");
  EXPECT_EQ(a[0xE9], "\xC3\xA9");  // é stands for itself
  EXPECT_EQ(a[0], "\xC4\x80");
  std::set<std::string> distinct(a.begin(), a.end());
  EXPECT_EQ(distinct.size(), 256u);
}

// ---------------------------------------------------------------------------------------------------------
// Added tokens
// ---------------------------------------------------------------------------------------------------------

json added_token(int id, const std::string& content, bool special, bool normalized, bool lstrip = false,
                 bool rstrip = false, bool single_word = false) {
  return {{"id", id},         {"content", content}, {"special", special},        {"normalized", normalized},
          {"lstrip", lstrip}, {"rstrip", rstrip},   {"single_word", single_word}};
}

TEST(Tokenizer, AddedTokensLeftmostLongestBeforePreTokenization) {
  const std::string chars = "abcdxyz <>/sm";
  json added = json::array({added_token(100, "ab", false, false), added_token(101, "abc", false, false),
                            added_token(102, "<s>", true, false), added_token(103, "bcd", false, false)});
  // A pre-tokenizer that isolates every character: added tokens must be cut out before it.
  json pre = {{"type", "Split"}, {"pattern", {{"Regex", "."}}}, {"behavior", "Isolated"}, {"invert", false}};
  const Tokenizer t = Tokenizer::from_json(tokenizer_json(char_model(chars), pre, nullptr, added), nullptr, "t");
  auto id = [&](const char* c) { return *t.token_to_id(c); };
  EXPECT_EQ(t.encode("dabcd"), (std::vector<int32_t>{id("d"), 101, id("d")}));  // longest at leftmost
  EXPECT_EQ(t.encode("dabd"), (std::vector<int32_t>{id("d"), 100, id("d")}));
  EXPECT_EQ(t.encode("xbcdab"), (std::vector<int32_t>{id("x"), 103, 100}));
  EXPECT_EQ(t.encode("abcd"), (std::vector<int32_t>{101, id("d")}));  // leftmost wins over "bcd"
  EXPECT_EQ(t.encode("<s>abc<s>"), (std::vector<int32_t>{102, 101, 102}));
  EXPECT_EQ(t.decode({102, 101}), "<s>abc");
  EXPECT_EQ(t.vocab_size(), 104);
}

TEST(Tokenizer, AddedTokensNormalizedFlag) {
  // "AB" (normalized: false) matches the raw text; "cd" (normalized: true) matches after Lowercase.
  json added = json::array({added_token(50, "AB", false, false), added_token(51, "cd", false, true)});
  const Tokenizer t =
      Tokenizer::from_json(tokenizer_json(char_model("abcdx"), nullptr, {{"type", "Lowercase"}}, added), nullptr, "t");
  auto id = [&](const char* c) { return *t.token_to_id(c); };
  EXPECT_EQ(t.encode("ABxCD"), (std::vector<int32_t>{50, id("x"), 51}));
  EXPECT_EQ(t.encode("ab"), (std::vector<int32_t>{id("a"), id("b")}));
  EXPECT_EQ(t.encode("Ab"), (std::vector<int32_t>{id("a"), id("b")}));
}

TEST(Tokenizer, AddedTokensStripAndSingleWord) {
  json added = json::array({added_token(60, "<m>", true, false, /*lstrip=*/true, /*rstrip=*/true),
                            added_token(61, "ab", false, false, false, false, /*single_word=*/true),
                            added_token(62, "<n>", true, false)});
  const Tokenizer t = Tokenizer::from_json(tokenizer_json(char_model("abcdx <>mn")), nullptr, "t");
  const Tokenizer ts =
      Tokenizer::from_json(tokenizer_json(char_model("abcdx <>mn"), nullptr, nullptr, added), nullptr, "t");
  auto id = [&](const char* c) { return *ts.token_to_id(c); };
  EXPECT_EQ(ts.encode("a  <m>  b"), (std::vector<int32_t>{id("a"), 60, id("b")}));
  EXPECT_EQ(ts.encode("a  <n>  b"), (std::vector<int32_t>{id("a"), id(" "), id(" "), 62, id(" "), id(" "), id("b")}));
  EXPECT_EQ(ts.encode("ab cd"), (std::vector<int32_t>{61, id(" "), id("c"), id("d")}));
  EXPECT_EQ(ts.encode("xab"), (std::vector<int32_t>{id("x"), id("a"), id("b")}));
  EXPECT_EQ(ts.encode("abx"), (std::vector<int32_t>{id("a"), id("b"), id("x")}));
  EXPECT_EQ(t.encode("<m>").size(), 3u);  // without added tokens: plain characters
}

// ---------------------------------------------------------------------------------------------------------
// Normalizers
// ---------------------------------------------------------------------------------------------------------

TEST(Tokenizer, NormalizerNfcAndNfkc) {
  const std::string chars = "e\u0301\u00e9fi1 ";
  json model = char_model(chars, {"fi"}, {"f i"});
  const Tokenizer none = Tokenizer::from_json(tokenizer_json(model), nullptr, "none");
  const Tokenizer nfc = Tokenizer::from_json(tokenizer_json(model, nullptr, {{"type", "NFC"}}), nullptr, "nfc");
  const Tokenizer nfd = Tokenizer::from_json(tokenizer_json(model, nullptr, {{"type", "NFD"}}), nullptr, "nfd");
  const Tokenizer nfkc = Tokenizer::from_json(
      tokenizer_json(model, nullptr, {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFKC"}}})}}),
      nullptr, "nfkc");
  const int32_t e_acute = *none.token_to_id("\u00e9");
  const int32_t e = *none.token_to_id("e"), comb = *none.token_to_id("\u0301");
  EXPECT_EQ(none.encode("e\u0301"), (std::vector<int32_t>{e, comb}));
  EXPECT_EQ(nfc.encode("e\u0301"), (std::vector<int32_t>{e_acute}));
  EXPECT_EQ(nfd.encode("\u00e9"), (std::vector<int32_t>{e, comb}));
  EXPECT_EQ(nfc.encode("\ufb01"), (std::vector<int32_t>{}));  // NFC keeps the ligature: not in vocab, dropped
  EXPECT_EQ(nfkc.encode("\ufb01"), (std::vector<int32_t>{*none.token_to_id("fi")}));  // ﬁ -> fi
  EXPECT_EQ(nfkc.encode("\u2460"), (std::vector<int32_t>{*none.token_to_id("1")}));   // ① -> 1
  EXPECT_EQ(pieces_of(nfkc, "\u00bd"), (Strings{"1\u20442"}));                        // ½ -> 1⁄2
}

TEST(Tokenizer, NormalizerLowercaseAndOthers) {
  json model = char_model("abcσςi\u0307 ");
  auto with = [&](json norm) { return Tokenizer::from_json(tokenizer_json(model, nullptr, norm), nullptr, "n"); };
  EXPECT_EQ(pieces_of(with({{"type", "Lowercase"}}), "ABC ΣΑΣ Σ"), (Strings{"abc σας σ"}));
  EXPECT_EQ(pieces_of(with({{"type", "Lowercase"}}), "İ"), (Strings{"i\u0307"}));
  EXPECT_EQ(pieces_of(with({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}), "  ab \t"),
            (Strings{"ab"}));
  EXPECT_EQ(pieces_of(with({{"type", "StripAccents"}}), "e\u0301"), (Strings{"e"}));
  EXPECT_EQ(pieces_of(with({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "_"}}), "a b"),
            (Strings{"a_b"}));
  EXPECT_EQ(pieces_of(with({{"type", "Prepend"}, {"prepend", "_"}}), "ab"), (Strings{"_ab"}));
}

// ---------------------------------------------------------------------------------------------------------
// Pre-tokenizers
// ---------------------------------------------------------------------------------------------------------

Tokenizer with_pre(const json& pre) {
  return Tokenizer::from_json(tokenizer_json(char_model("a"), pre), nullptr, "pre");
}

json split(const std::string& pattern, const std::string& behavior, bool invert, bool regex = true) {
  return {{"type", "Split"},
          {"pattern", {{regex ? "Regex" : "String", pattern}}},
          {"behavior", behavior},
          {"invert", invert}};
}

TEST(Tokenizer, SplitBehaviorsMatchHF) {
  // HF tokenizers' own split.rs test: \w+|[^\w\s]+ inverted on "How are you doing?".
  const std::string text = "How are you doing?";
  const std::string re = R"(\w+|[^\w\s]+)";
  EXPECT_EQ(pieces_of(with_pre(split(re, "Removed", true)), text), (Strings{"How", "are", "you", "doing", "?"}));
  EXPECT_EQ(pieces_of(with_pre(split(re, "Isolated", true)), text),
            (Strings{"How", " ", "are", " ", "you", " ", "doing", "?"}));
  EXPECT_EQ(pieces_of(with_pre(split(re, "MergedWithPrevious", true)), text),
            (Strings{"How ", "are ", "you ", "doing", "?"}));
  EXPECT_EQ(pieces_of(with_pre(split(re, "MergedWithNext", true)), text),
            (Strings{"How", " are", " you", " doing", "?"}));
  EXPECT_EQ(pieces_of(with_pre(split(re, "Contiguous", true)), text),
            (Strings{"How", " ", "are", " ", "you", " ", "doing?"}));
}

TEST(Tokenizer, SplitBehaviorsBothWays) {
  struct Case {
    const char* behavior;
    Strings plain, inverted;
  };
  const std::vector<Case> cases = {
      {"Removed", {"a", "b", "c"}, {"-", "-", "-"}},
      {"Isolated", {"a", "--", "b", "x", "x", "-", "c"}, {"a", "-", "-", "b", "-", "c"}},
      {"MergedWithPrevious", {"a--", "bx", "x", "-", "c"}, {"a", "-", "-b", "-c"}},
      {"MergedWithNext", {"a", "--b", "x", "x", "-c"}, {"a-", "-", "b-", "c"}},
      {"Contiguous", {"a", "--", "b", "xx-", "c"}, {"a", "--", "b", "-", "c"}},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(pieces_of(with_pre(split("-+|x", c.behavior, false)), "a--bxx-c"), c.plain) << c.behavior;
    EXPECT_EQ(pieces_of(with_pre(split("-", c.behavior, true)), "a--b-c"), c.inverted) << c.behavior << " inverted";
  }
  // String patterns match literally (regex metacharacters included).
  EXPECT_EQ(pieces_of(with_pre(split(".", "Removed", false, false)), "a.b.c"), (Strings{"a", "b", "c"}));
  EXPECT_EQ(pieces_of(with_pre(split("a+", "Isolated", false, false)), "xa+ya+"), (Strings{"x", "a+", "y", "a+"}));
  // An empty-matching regex: onig find_iter semantics (no empty match right after a match).
  EXPECT_EQ(pieces_of(with_pre(split("x*", "Isolated", false)), "axxb"), (Strings{"a", "xx", "b"}));
}

TEST(Tokenizer, OtherPreTokenizers) {
  EXPECT_EQ(pieces_of(with_pre({{"type", "Digits"}, {"individual_digits", true}}), "a12٣½b"),
            (Strings{"a", "1", "2", "٣", "½", "b"}));
  EXPECT_EQ(pieces_of(with_pre({{"type", "Digits"}, {"individual_digits", false}}), "a12٣½b"),
            (Strings{"a", "12٣½", "b"}));
  EXPECT_EQ(
      pieces_of(with_pre({{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}), "hi there  you"),
      (Strings{"\xC4\xA0hi", "\xC4\xA0there", "\xC4\xA0", "\xC4\xA0you"}));
  EXPECT_EQ(pieces_of(with_pre({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}), "a b\n"),
            (Strings{"a\xC4\xA0"
                     "b\xC4\x8A"}));
  EXPECT_EQ(
      pieces_of(with_pre({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}), "I'll  go!!"),
      (Strings{"I", "'ll", "\xC4\xA0", "\xC4\xA0go", "!!"}));
  json seq = {
      {"type", "Sequence"},
      {"pretokenizers", json::array({split(" ", "Isolated", false, false),
                                     {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", false}}})}};
  EXPECT_EQ(pieces_of(with_pre(seq), "a b"), (Strings{"\xC4\xA0"
                                                      "a",
                                                      "\xC4\xA0",
                                                      "\xC4\xA0"
                                                      "b"}));
  EXPECT_EQ(pieces_of(with_pre({{"type", "Whitespace"}}), "Hey, man!  ok"), (Strings{"Hey", ",", "man", "!", "ok"}));
  EXPECT_EQ(pieces_of(with_pre({{"type", "WhitespaceSplit"}}), "Hey, man!\tok"), (Strings{"Hey,", "man!", "ok"}));
  EXPECT_EQ(
      pieces_of(with_pre({{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}, {"split", true}}),
                "Hey friend"),
      (Strings{"▁Hey", "▁friend"}));
  EXPECT_EQ(
      pieces_of(with_pre({{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "never"}, {"split", false}}),
                "Hey friend"),
      (Strings{"Hey▁friend"}));
}

TEST(Tokenizer, PreTokenizerNullPassesSegmentsThrough) {
  EXPECT_EQ(pieces_of(with_pre(nullptr), "a b\nc"), (Strings{"a b\nc"}));
  EXPECT_TRUE(pieces_of(with_pre(nullptr), "").empty());
}

// ---------------------------------------------------------------------------------------------------------
// BPE model options
// ---------------------------------------------------------------------------------------------------------

TEST(Tokenizer, BpeMergesLowestRankFirst) {
  // b+c outranks a+b, so "abc" -> a, bc -> abc; "abd" -> ab, d.
  json model = char_model("abcd", {"ab", "bc", "abc"}, {"b c", "a b", "a bc"});
  const Tokenizer t = Tokenizer::from_json(tokenizer_json(model), nullptr, "bpe");
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{*t.token_to_id("abc")}));
  EXPECT_EQ(t.encode("abd"), (std::vector<int32_t>{*t.token_to_id("ab"), *t.token_to_id("d")}));
  // Merges given as pairs are the same thing.
  json pairs = char_model("abcd", {"ab", "bc", "abc"});
  pairs["merges"] = json::array({json::array({"b", "c"}), json::array({"a", "b"}), json::array({"a", "bc"})});
  const Tokenizer tp = Tokenizer::from_json(tokenizer_json(pairs), nullptr, "pairs");
  EXPECT_EQ(tp.encode("abcabd"), t.encode("abcabd"));
  // Repeated symbols merge left to right.
  json rep = char_model("a", {"aa"}, {"a a"});
  const Tokenizer tr = Tokenizer::from_json(tokenizer_json(rep), nullptr, "rep");
  EXPECT_EQ(tr.encode("aaa"), (std::vector<int32_t>{*tr.token_to_id("aa"), *tr.token_to_id("a")}));
}

TEST(Tokenizer, BpeIgnoreMergesUnkAndByteFallback) {
  json model = char_model("abc", {"ab", "abc", "<unk>", "<0x3F>", "<0xC3>", "<0xA9>"}, {"a b"});
  auto make = [&](json m, json decoder = nullptr) {
    return Tokenizer::from_json(tokenizer_json(m, nullptr, nullptr, json::array(), decoder), nullptr, "m");
  };
  const Tokenizer plain = make(model);
  auto id = [&](const char* c) { return *plain.token_to_id(c); };
  EXPECT_EQ(plain.encode("abc"), (std::vector<int32_t>{id("ab"), id("c")}));
  // No unk_token: unknown characters are dropped (HF), and the neighbours then merge.
  EXPECT_EQ(plain.encode("a?b"), (std::vector<int32_t>{id("ab")}));
  EXPECT_EQ(plain.encode("a?c"), (std::vector<int32_t>{id("a"), id("c")}));
  json m = model;
  m["ignore_merges"] = true;
  EXPECT_EQ(make(m).encode("abc"), (std::vector<int32_t>{id("abc")}));
  m = model;
  m["unk_token"] = "<unk>";
  EXPECT_EQ(make(m).encode("a??b"), (std::vector<int32_t>{id("a"), id("<unk>"), id("<unk>"), id("b")}));
  m["fuse_unk"] = true;
  EXPECT_EQ(make(m).encode("a??b"), (std::vector<int32_t>{id("a"), id("<unk>"), id("b")}));
  m = model;
  m["byte_fallback"] = true;
  const Tokenizer fb =
      make(m, {{"type", "Sequence"}, {"decoders", json::array({{{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}});
  EXPECT_EQ(fb.encode("a?é"), (std::vector<int32_t>{id("a"), id("<0x3F>"), id("<0xC3>"), id("<0xA9>")}));
  EXPECT_EQ(fb.decode(fb.encode("a?é")), "a?é");
}

TEST(Tokenizer, BpeSubwordPrefixAndSuffix) {
  json pre = {{"type", "WhitespaceSplit"}};
  json m1 = char_model("a", {"##b", "##c", "ab", "abc"}, {"a ##b", "ab ##c"});
  m1["continuing_subword_prefix"] = "##";
  const Tokenizer t1 = Tokenizer::from_json(tokenizer_json(m1, pre), nullptr, "prefix");
  EXPECT_EQ(t1.encode("abc"), (std::vector<int32_t>{*t1.token_to_id("abc")}));
  EXPECT_EQ(t1.encode("ac"), (std::vector<int32_t>{*t1.token_to_id("a"), *t1.token_to_id("##c")}));
  json m2 = char_model("a", {"b</w>", "ab</w>"}, {"a b</w>"});
  m2["end_of_word_suffix"] = "</w>";
  const Tokenizer t2 = Tokenizer::from_json(tokenizer_json(m2, pre), nullptr, "suffix");
  EXPECT_EQ(t2.encode("ab ab"), (std::vector<int32_t>{*t2.token_to_id("ab</w>"), *t2.token_to_id("ab</w>")}));
}

// ---------------------------------------------------------------------------------------------------------
// Regex bridge (Oniguruma semantics on PCRE2)
// ---------------------------------------------------------------------------------------------------------

std::vector<std::pair<size_t, size_t>> matches(const std::string& pattern, const std::string& s) {
  dsmoe::text::detail::Regex re(pattern);
  std::vector<std::pair<size_t, size_t>> out;
  dsmoe::text::detail::for_each_match(re, s, [&](size_t a, size_t b) { out.emplace_back(a, b); });
  return out;
}

TEST(Regex, OnigurumaSemantics) {
  using P = std::vector<std::pair<size_t, size_t>>;
  // \s is White_Space: U+180E is not a space for Oniguruma (it is for PCRE2 10.42).
  EXPECT_EQ(matches(R"(\s)", u8(0x180E)), P{});
  EXPECT_EQ(matches(R"(\s)", u8(0x85)), (P{{0, 2}}));
  EXPECT_EQ(matches(R"([^\s]+)", u8('a') + u8(0x180E)), (P{{0, 4}}));
  // \h is a hex digit in Ruby syntax, \v the VT character, \uHHHH a code point.
  EXPECT_EQ(matches(R"(\h+)", "xBEEFy"), (P{{1, 5}}));
  EXPECT_EQ(matches(R"(\v)", "\x0B\n"), (P{{0, 1}}));
  EXPECT_EQ(matches(R"(\u00e9)", "é"), (P{{0, 2}}));
  // \w outside a class counts ½ (Latin-1 No), inside a class it does not (Oniguruma quirk).
  EXPECT_EQ(matches(R"(\w+)", "a½"), (P{{0, 3}}));
  EXPECT_EQ(matches(R"([^\w\s]+)", "-½"), (P{{0, 3}}));
  EXPECT_EQ(matches(R"([\W]+)", "-½a"), (P{{0, 3}}));
  // $ and ^ are line anchors; (?m) is dot-all.
  EXPECT_EQ(matches(R"(\s+$)", "a \nb "), (P{{1, 2}, {4, 5}}));
  EXPECT_EQ(matches(R"(^b)", "a\nb"), (P{{2, 3}}));
  EXPECT_EQ(matches(R"((?m:a.b))", "a\nb"), (P{{0, 3}}));
  // Scripts are Script, not Script_Extensions: U+3001 is not Han.
  EXPECT_EQ(matches(R"(\p{Han})", u8(0x3001)), P{});
  EXPECT_EQ(matches(R"(\p{Letter}+)", "ab1"), (P{{0, 2}}));
  EXPECT_EQ(matches(R"(a{,2})", "aaa"), (P{{0, 2}, {2, 3}}));
  EXPECT_EQ(matches(R"(\p{Yi}+)", u8(0xA000) + "a"), (P{{0, 3}}));
  EXPECT_EQ(matches(R"([\b\]\-\\]+)", "\b]-\\x"), (P{{0, 4}}));
}

TEST(Regex, DescendingRangesAreRepairedOrDropped) {
  using dsmoe::text::detail::onig_to_pcre2;
  // NFC-damaged endpoint: U+03CE stands for U+1F7D (its canonical singleton pre-image above U+1F5F).
  EXPECT_EQ(onig_to_pcre2(u8('[') + u8(0x1F5F) + u8('-') + u8(0x3CE) + u8(']')),
            onig_to_pcre2(u8('[') + u8(0x1F5F) + u8('-') + u8(0x1F7D) + u8(']')));
  // No pre-image: the empty range is dropped, the rest of the class stays.
  EXPECT_EQ(matches("[z-ab]+", "abz"), (std::vector<std::pair<size_t, size_t>>{{1, 2}}));
  EXPECT_EQ(matches("[z-a]", "abz"), (std::vector<std::pair<size_t, size_t>>{}));
  EXPECT_EQ(matches("x[z-a]*y", "xy"), (std::vector<std::pair<size_t, size_t>>{{0, 2}}));
  EXPECT_EQ(matches("[^z-a]", "z"), (std::vector<std::pair<size_t, size_t>>{{0, 1}}));
  // Ascending classes are never touched.
  EXPECT_EQ(onig_to_pcre2(std::string("[K-").append(u8(0x212D)).append("]")), "[\\x{4B}-\\x{212D}]");
}

// ---------------------------------------------------------------------------------------------------------
// Fingerprint, UTF-8 and errors
// ---------------------------------------------------------------------------------------------------------

TEST(Tokenizer, FingerprintIsSha256OfCanonicalJson) {
  const json tj = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", json::array()}}}};
  const Tokenizer t = Tokenizer::from_json(tj, nullptr, "fp");
  // sha256 of {"model":{"merges":[],"type":"BPE","vocab":{"a":0}}}
  EXPECT_EQ(t.fingerprint(), "ff736b62ce5cbea9c02e759c5ca7744fe6795006bd31d495e7a348742d0c7a4f");
  json other = tj;
  other["model"]["vocab"]["b"] = 1;
  EXPECT_NE(Tokenizer::from_json(other, nullptr, "fp2").fingerprint(), t.fingerprint());

  const fs::path dir = fs::temp_directory_path() / "dsmoe_test_tokenizer_fp";
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tj.dump(2);
  EXPECT_EQ(Tokenizer::load(dir.string()).fingerprint(), t.fingerprint());  // formatting does not matter
  EXPECT_EQ(Tokenizer::load((dir / "tokenizer.json").string()).fingerprint(), t.fingerprint());
  EXPECT_TRUE(Tokenizer::load(dir.string()).config().is_null());
  fs::remove_all(dir);
}

TEST(Tokenizer, InvalidUtf8IsAnError) {
  const Tokenizer t = tiny_byte_level();
  expect_error([&] { t.encode("ab\xC3(cd"); }, {"tiny", "not valid UTF-8", "byte offset 2"});
  expect_error([&] { t.encode("\xED\xA0\x80"); }, {"not valid UTF-8", "byte offset 0"});  // surrogate
  expect_error([&] { t.encode("\xC0\xAF"); }, {"not valid UTF-8"});                       // overlong
  expect_error([&] { t.decode({-1}); }, {"token id -1"});
  expect_error([&] { t.token_piece(1 << 20); }, {"not in the vocabulary"});
}

void expect_load_error(const std::string& content, const std::vector<std::string>& parts) {
  const fs::path dir = fs::temp_directory_path() / "dsmoe_test_tokenizer_bad";
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << content;
  std::vector<std::string> all = parts;
  all.push_back((dir / "tokenizer.json").string());  // the message names the file
  expect_error([&] { Tokenizer::load(dir.string()); }, all);
  fs::remove_all(dir);
}

TEST(Tokenizer, MalformedFilesGiveClearErrors) {
  expect_load_error("{\"model\": {\"type\": \"BPE\", ", {"invalid JSON"});
  expect_load_error("[1, 2]", {"not a tokenizer.json"});
  expect_load_error("{\"version\": \"1.0\"}", {"no \"model\""});
  auto tj = [](json model, json pre = nullptr, json norm = nullptr) { return tokenizer_json(model, pre, norm).dump(); };
  expect_load_error(tj({{"type", "WordPiece"}, {"vocab", json::object()}}),
                    {"model type \"WordPiece\" is not supported"});
  expect_load_error(tj({{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", {"a b"}}}),
                    {"merge #0", "missing from the vocab", "\"b\""});
  expect_load_error(tj({{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", {"a b"}}}),
                    {"merge #0", "merged token \"ab\" is not in the vocab"});
  expect_load_error(tj({{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 0}}}, {"merges", json::array()}}),
                    {"duplicate id 0"});
  expect_load_error(tj({{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", {"a"}}}), {"merge #0", "two tokens"});
  expect_load_error(tj({{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", json::array()}, {"dropout", 0.1}}),
                    {"dropout"});
  expect_load_error(tj({{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", json::array()}, {"unk_token", "<unk>"}}),
                    {"unk_token \"<unk>\" is not in the vocab"});
  expect_load_error(tj({{"type", "BPE"}, {"vocab", {{"a", "x"}}}, {"merges", json::array()}}), {"non-integer id"});
  const json ok_model = {{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", json::array()}};
  expect_load_error(tj(ok_model, split("(abc", "Isolated", false)), {"regex", "(abc"});
  expect_load_error(tj(ok_model, split("a", "Sideways", false)), {"unknown split behavior \"Sideways\""});
  expect_load_error(tj(ok_model, {{"type", "UnicodeScripts"}}),
                    {"pre_tokenizer type \"UnicodeScripts\" is not supported"});
  expect_load_error(tj(ok_model, nullptr, {{"type", "BertNormalizer"}}),
                    {"normalizer type \"BertNormalizer\" is not supported"});
  expect_load_error(
      tj(ok_model, {{"type", "Split"}, {"pattern", {{"Glob", "*"}}}, {"behavior", "Isolated"}, {"invert", false}}),
      {"pattern must be"});
  expect_error([] { Tokenizer::load("/nonexistent/dsmoe/tokenizer"); }, {"/nonexistent/dsmoe/tokenizer", "no such"});
  // from_json names its source.
  expect_error([] { Tokenizer::from_json(json::parse(R"({"model": {"type": "Unigram"}})"), nullptr, "my-source"); },
               {"my-source:", "Unigram"});
  // tokenizer_config problems.
  expect_error(
      [&] {
        Tokenizer::from_json(json::parse(tj(ok_model)), {{"add_bos_token", true}, {"bos_token", "<s>"}}, "cfg");
      },
      {"cfg:", "bos_token \"<s>\" is not a token"});
}

TEST(Tokenizer, ConfigBosEosForms) {
  json model = char_model("ab", {"<s>", "</s>"});
  const Tokenizer t = Tokenizer::from_json(
      tokenizer_json(model),
      {{"add_bos_token", true}, {"add_eos_token", true}, {"bos_token", {{"content", "<s>"}}}, {"eos_token", "</s>"}},
      "cfg");
  EXPECT_EQ(t.bos_id(), *t.token_to_id("<s>"));
  EXPECT_EQ(t.eos_id(), *t.token_to_id("</s>"));
  EXPECT_EQ(t.encode("ab", true),
            (std::vector<int32_t>{t.bos_id(), *t.token_to_id("a"), *t.token_to_id("b"), t.eos_id()}));
  EXPECT_EQ(t.encode("ab", false).size(), 2u);
  const Tokenizer n = Tokenizer::from_json(tokenizer_json(model), nullptr, "nocfg");
  EXPECT_EQ(n.bos_id(), -1);
  EXPECT_FALSE(n.add_bos());
  EXPECT_EQ(n.encode("ab", true).size(), 2u);
}

}  // namespace
