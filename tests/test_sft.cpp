// SFT data (src/train/sft): the loss mask covers exactly the assistant replies + EOS (not the headers, user or system
// text), the ids equal one-go tokenization of the rendered conversation, the boundary rule for tokens that straddle
// an assistant span, JSONL loading with its errors (FILE:LINE), and padded batches with -1 targets and truncation.
// Runs with a byte-level tokenizer built in code and, when ../shared has it, the real DeepSeek LLM tokenizer.
#include "train/sft.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "expect_error.h"
#include "shared_data.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "text_util.h"

namespace fs = std::filesystem;
using namespace dsmoe;
using namespace dsmoe::text;
using json = nlohmann::json;

using dsmoe::testing::byte_tokenizer;

namespace {

bool have_deepseek() { return fs::exists(fs::path(DSMOE_SHARED_DIR) / "tokenizers/deepseek-llm/tokenizer.json"); }
Tokenizer deepseek_tokenizer() {
  return Tokenizer::load((fs::path(DSMOE_SHARED_DIR) / "tokenizers/deepseek-llm").string());
}

std::string bos_of(const Tokenizer& tok) { return tok.token_bytes(tok.bos_id()); }
std::string eos_of(const Tokenizer& tok) { return tok.token_bytes(tok.eos_id()); }

// Maximal runs of tokens with mask value `m`, each decoded.
std::vector<std::string> runs(const Tokenizer& tok, const SftExample& ex, uint8_t m) {
  std::vector<std::string> out;
  std::vector<int32_t> cur;
  for (size_t i = 0; i <= ex.ids.size(); ++i) {
    if (i < ex.ids.size() && ex.loss_mask[i] == m) {
      cur.push_back(ex.ids[i]);
    } else if (!cur.empty()) {
      out.push_back(tok.decode(cur));
      cur.clear();
    }
  }
  return out;
}

// The full check for the DeepSeek template: ids = one-go tokenization; trained runs = " " + reply + EOS per
// assistant message; untrained runs = BOS + system/user text + "Assistant:" headers; nothing straddles.
void check_deepseek_conversation(const Tokenizer& tok, const std::vector<ChatMessage>& msgs) {
  const ChatTemplate tpl = ChatTemplate::deepseek();
  const std::string bos = bos_of(tok), eos = eos_of(tok);
  int64_t straddling = -1;
  const SftExample ex = sft_example(msgs, tok, tpl, "test", &straddling);
  const std::string full = tpl.render(msgs, false, bos, eos);
  ASSERT_EQ(ex.ids.size(), ex.loss_mask.size());
  EXPECT_EQ(ex.ids, tok.encode(full, false)) << "ids must equal tokenizing the whole conversation in one go";
  EXPECT_EQ(tok.decode(ex.ids), full);
  EXPECT_EQ(straddling, 0);

  std::vector<std::string> want_trained, want_context;
  std::string context = bos;
  for (const ChatMessage& m : msgs) {
    if (m.role == "assistant") {
      want_context.push_back(context + "Assistant:");
      want_trained.push_back(" " + m.content + eos);
      context.clear();
    } else {
      context += m.role == "user" ? "User: " + m.content + "\n\n" : m.content + "\n\n";
    }
  }
  if (!context.empty()) want_context.push_back(context);
  EXPECT_EQ(runs(tok, ex, 1), want_trained);
  EXPECT_EQ(runs(tok, ex, 0), want_context);
  EXPECT_EQ(ex.loss_mask.front(), 0) << "BOS is not trained on";
  EXPECT_EQ(ex.ids.front(), tok.bos_id());
}

const std::vector<ChatMessage> kMultiTurn = {{"user", "Who are you?"},
                                             {"assistant", "I am DeepSeek Chat."},
                                             {"user", "What is 2+2? Answer in one word."},
                                             {"assistant", "Four."},
                                             {"user", "Thanks!"},
                                             {"assistant", "You're welcome.\n\nAnything else?"}};

const std::vector<ChatMessage> kAwkward = {{"system", "Be brief."},
                                           {"user", "Unicode: héllo wörld, 日本語, emoji 🙂"},
                                           {"assistant", "  leading spaces and a trailing newline\n"},
                                           {"user", "empty reply next"},
                                           {"assistant", ""},
                                           {"user", "punctuation"},
                                           {"assistant", "!?... 12345 ¿qué?"},
                                           {"assistant", "\nsecond assistant message in a row"},
                                           {"user", "a final user turn that is only context"}};

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("dsmoe_sft_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

json conversation_json(const std::vector<ChatMessage>& msgs) {
  json arr = json::array();
  for (const ChatMessage& m : msgs) arr.push_back({{"role", m.role}, {"content", m.content}});
  return {{"messages", arr}};
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Loss mask

TEST(SftMask, ByteTokenizerMultiTurnTrainsOnRepliesAndEos) {
  check_deepseek_conversation(byte_tokenizer(), kMultiTurn);
}

TEST(SftMask, ByteTokenizerSystemUnicodeEmptyAndConsecutiveReplies) {
  check_deepseek_conversation(byte_tokenizer(), kAwkward);
}

TEST(SftMask, DeepSeekTokenizerMultiTurn) {
  DSMOE_REQUIRE_SHARED_FILE(dsmoe::testing::shared_path("tokenizers/deepseek-llm/tokenizer.json"));
  const Tokenizer tok = deepseek_tokenizer();
  check_deepseek_conversation(tok, kMultiTurn);
  check_deepseek_conversation(tok, kAwkward);
  // The template from the tokenizer's own config gives the same example as the built-in one.
  const ChatTemplate own = ChatTemplate::from_jinja(tok.config().at("chat_template").get<std::string>());
  const SftExample a = sft_example(kMultiTurn, tok, own), b = sft_example(kMultiTurn, tok, ChatTemplate::deepseek());
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.loss_mask, b.loss_mask);
}

// A template whose header and reply meet inside one pre-token: with a merge "A"+"b" the token "Ab" straddles the
// span boundary and, by the documented rule, is not trained on (and is counted); without the merge every reply byte
// is trained on. Either way the ids are the one-go tokenization.
TEST(SftMask, TokenStraddlingTheReplyBoundaryIsNotTrainedOn) {
  const ChatTemplate tpl = ChatTemplate::from_jinja(
      "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}{{ m.content + '\n' }}"
      "{% else %}{{ 'A' + m.content + eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}A{% endif %}");
  const std::vector<ChatMessage> msgs = {{"user", "hi"}, {"assistant", "bc"}};
  const std::string full = "<s>hi\nAbc</s>";
  ASSERT_EQ(tpl.render(msgs, false, "<s>", "</s>"), full);

  const Tokenizer plain = byte_tokenizer();
  int64_t straddling = -1;
  SftExample ex = sft_example(msgs, plain, tpl, "test", &straddling);
  EXPECT_EQ(ex.ids, plain.encode(full, false));
  EXPECT_EQ(straddling, 0);
  EXPECT_EQ(runs(plain, ex, 1), std::vector<std::string>({"bc</s>"}));

  const Tokenizer merging = byte_tokenizer({{"A", "b"}});
  ex = sft_example(msgs, merging, tpl, "test", &straddling);
  EXPECT_EQ(ex.ids, merging.encode(full, false));
  EXPECT_EQ(ex.ids, std::vector<int32_t>({256, 'h', 'i', '\n', 258, 'c', 257}));
  EXPECT_EQ(ex.loss_mask, std::vector<uint8_t>({0, 0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(straddling, 1);
}

TEST(SftMask, NonIncrementalTemplateIsAnError) {
  // Appends "!" after the last message only: render(messages[:1]) is not a prefix of the full render.
  const ChatTemplate tpl = ChatTemplate::from_jinja(
      "{% for m in messages %}{{ m.content }}{% if loop.last %}!{% endif %}{% endfor %}"
      "{% if add_generation_prompt %}>{% endif %}");
  expect_error(
      [&] {
        sft_example({{"user", "u"}, {"assistant", "a"}}, byte_tokenizer(), tpl, "conv");
      },
      {"conv", "not incremental"});
  // The generation prompt is not a prefix of the reply render.
  const ChatTemplate tpl2 = ChatTemplate::from_jinja(
      "{% for m in messages %}{{ m.role + ': ' + m.content + '\n' }}{% endfor %}"
      "{% if add_generation_prompt %}Reply:{% endif %}");
  expect_error(
      [&] {
        sft_example({{"user", "u"}, {"assistant", "a"}}, byte_tokenizer(), tpl2, "conv");
      },
      {"conv", "not incremental", "assistant message 1"});
}

TEST(SftMask, NeedsAnAssistantMessageAndAnEosToken) {
  expect_error(
      [] {
        sft_example({{"user", "u"}}, byte_tokenizer(), ChatTemplate::deepseek(), "conv");
      },
      {"conv", "no assistant message"});
  expect_error(
      [] {
        sft_example({{"user", "u"}, {"assistant", "a"}}, byte_tokenizer({}, false), ChatTemplate::deepseek(), "c");
      },
      {"EOS"});
}

// ---------------------------------------------------------------------------------------------------------------
// JSONL loading

TEST(SftLoad, ReadsEveryConversationInOrderWithStats) {
  const fs::path dir = temp_dir("load");
  const Tokenizer tok = byte_tokenizer();
  const ChatTemplate tpl = ChatTemplate::deepseek();
  const std::vector<std::vector<ChatMessage>> convs = {kMultiTurn, kAwkward, {{"user", "x"}, {"assistant", "y"}}};
  std::string text = "\n";  // leading blank line: skipped
  for (const auto& c : convs) text += conversation_json(c).dump() + "\n";
  text += "   \n";  // blank (whitespace-only) line: skipped
  json extra = conversation_json(convs[2]);
  extra["id"] = 17;  // other keys are ignored
  extra["messages"][0]["name"] = "someone";
  text += extra.dump() + "\r\n";  // CRLF line end
  const std::string path = write_file(dir / "data.jsonl", text);

  SftLoadStats st;
  const std::vector<SftExample> exs = sft_load(path, tok, tpl, &st);
  ASSERT_EQ(exs.size(), 4u);
  int64_t tokens = 0, trained = 0;
  for (size_t k = 0; k < exs.size(); ++k) {
    const SftExample want = sft_example(convs[std::min<size_t>(k, 2)], tok, tpl);
    EXPECT_EQ(exs[k].ids, want.ids) << k;
    EXPECT_EQ(exs[k].loss_mask, want.loss_mask) << k;
    tokens += static_cast<int64_t>(want.ids.size());
    for (uint8_t m : want.loss_mask) trained += m;
  }
  EXPECT_EQ(st.conversations, 4);
  EXPECT_EQ(st.blank_lines, 2);
  EXPECT_EQ(st.with_system, 1);
  EXPECT_EQ(st.tokens, tokens);
  EXPECT_EQ(st.trained_tokens, trained);
  EXPECT_EQ(st.boundary_tokens, 0);
  fs::remove_all(dir);
}

TEST(SftLoad, BadLinesNameFileAndLine) {
  const fs::path dir = temp_dir("errors");
  const Tokenizer tok = byte_tokenizer();
  const ChatTemplate tpl = ChatTemplate::deepseek();
  const std::string good = conversation_json({{"user", "u"}, {"assistant", "a"}}).dump() + "\n";
  auto load = [&](const std::string& name, const std::string& text) {
    const std::string path = write_file(dir / name, text);
    return [&tok, &tpl, path] { sft_load(path, tok, tpl); };
  };
  expect_error(load("json.jsonl", good + "{\"messages\": [\n" + good), {"json.jsonl:2", "invalid JSON"});
  expect_error(load("missing.jsonl", "{\"conversation\": []}\n"), {"missing.jsonl:1", "\"messages\" array"});
  expect_error(load("notarray.jsonl", good + good + "{\"messages\": \"hi\"}\n"), {"notarray.jsonl:3", "\"messages\""});
  expect_error(load("noassist.jsonl", good + "\n" + conversation_json({{"system", "s"}, {"user", "u"}}).dump() + "\n"),
               {"noassist.jsonl:3", "no assistant message"});
  expect_error(load("role.jsonl", R"({"messages": [{"role": "bot", "content": "x"}]})"),
               {"role.jsonl:1", "messages[0]", "unknown role 'bot'"});
  expect_error(load("content.jsonl", good + R"({"messages": [{"role": "user", "content": 3}]})"),
               {"content.jsonl:2", "messages[0]", "content"});
  expect_error(load("utf8.jsonl", good + R"({"messages": [{"role": "user", "content": "\ud800"}, )"
                                         R"({"role": "assistant", "content": "a"}]})"),
               {"utf8.jsonl:2"});
  // Several bad lines: the first in file order is the one reported.
  std::string many;
  for (int i = 0; i < 200; ++i) many += i % 50 == 49 ? std::string("nope\n") : good;
  expect_error(load("many.jsonl", many), {"many.jsonl:50:", "invalid JSON"});
  expect_error([&] { sft_load((dir / "absent.jsonl").string(), tok, tpl); }, {"cannot open", "absent.jsonl"});
  expect_error([&] { sft_load((dir / "json.jsonl").string(), byte_tokenizer({}, false), tpl); }, {"EOS"});
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------------------------
// Batches

TEST(SftBatch, PadsMasksAndTruncates) {
  const int32_t pad = 9;
  const std::vector<SftExample> exs = {
      {{1, 2, 3, 4, 5}, {0, 0, 1, 1, 1}},                                           // short: padded
      {{10, 11, 12, 13, 14, 15, 16}, {0, 1, 0, 1, 1, 0, 1}},                        // exactly S+1 = 7: not truncated
      {{20, 21, 22, 23, 24, 25, 26, 27, 28, 29}, {0, 0, 0, 0, 1, 1, 1, 1, 1, 1}}};  // 10 > 7: truncated
  const SftBatch b = sft_batch(exs, {0, 1, 2, 0}, 6, pad);
  EXPECT_EQ(b.B, 4);
  EXPECT_EQ(b.S, 6);
  const std::vector<int32_t> want_in = {1,  2,  3,  4,  5,  pad,  //
                                        10, 11, 12, 13, 14, 15,   //
                                        20, 21, 22, 23, 24, 25,   //
                                        1,  2,  3,  4,  5,  pad};
  // Row 2 keeps tokens 20..26 (S+1 = 7): targets are tokens 21..26, trained where the mask is 1 (24, 25, 26).
  const std::vector<int32_t> want_tg = {-1, 3,  4,  5,  -1, -1,  //
                                        11, -1, 13, 14, -1, 16,  //
                                        -1, -1, -1, 24, 25, 26,  //
                                        -1, 3,  4,  5,  -1, -1};
  EXPECT_EQ(b.inputs, want_in);
  EXPECT_EQ(b.targets, want_tg);
  EXPECT_EQ(b.trained_tokens, 3 + 4 + 3 + 3);
  EXPECT_EQ(b.truncated, 1);
  EXPECT_EQ(b.truncated_trained, 3);  // tokens 27, 28, 29
}

TEST(SftBatch, TargetsAreTheTrainedTokensOfLoadedConversations) {
  const Tokenizer tok = byte_tokenizer();
  const ChatTemplate tpl = ChatTemplate::deepseek();
  const std::vector<SftExample> exs = {sft_example(kMultiTurn, tok, tpl), sft_example(kAwkward, tok, tpl)};
  const int64_t S = static_cast<int64_t>(std::max(exs[0].ids.size(), exs[1].ids.size()));  // no truncation
  const SftBatch b = sft_batch(exs, {1, 0}, S, tok.eos_id());
  ASSERT_EQ(b.inputs.size(), static_cast<size_t>(2 * S));
  ASSERT_EQ(b.targets.size(), static_cast<size_t>(2 * S));
  EXPECT_EQ(b.truncated, 0);
  int64_t trained = 0;
  for (int r = 0; r < 2; ++r) {
    const SftExample& ex = exs[r == 0 ? 1 : 0];
    std::vector<int32_t> targets;
    for (int64_t j = 0; j < S; ++j) {
      const int32_t t = b.targets[r * S + j];
      if (t != -1) targets.push_back(t);
      EXPECT_EQ(b.inputs[r * S + j], j < static_cast<int64_t>(ex.ids.size()) ? ex.ids[j] : tok.eos_id());
    }
    trained += static_cast<int64_t>(targets.size());
    std::string want;
    for (const std::string& run : runs(tok, ex, 1)) want += run;
    EXPECT_EQ(tok.decode(targets), want) << "row " << r;
  }
  EXPECT_EQ(b.trained_tokens, trained);

  // Truncated to 8 tokens: the first reply starts later, so nothing is trained on.
  const SftBatch t = sft_batch(exs, {0}, 8, tok.eos_id());
  EXPECT_EQ(t.trained_tokens, 0);
  EXPECT_EQ(t.truncated, 1);
  EXPECT_EQ(t.truncated_trained, std::count(exs[0].loss_mask.begin(), exs[0].loss_mask.end(), uint8_t{1}));
  for (int32_t x : t.targets) EXPECT_EQ(x, -1);
}

TEST(SftBatch, Errors) {
  const std::vector<SftExample> exs = {{{1, 2, 3}, {0, 1, 1}}, {{1, 2}, {0}}};
  expect_error([&] { sft_batch(exs, {0, 2}, 4, 0); }, {"index 2 out of range"});
  expect_error([&] { sft_batch(exs, {-1}, 4, 0); }, {"index -1 out of range"});
  expect_error([&] { sft_batch(exs, {0}, 0, 0); }, {"sequence length"});
  expect_error([&] { sft_batch(exs, {0}, 4, -1); }, {"pad id"});
  expect_error([&] { sft_batch(exs, {}, 4, 0); }, {"empty batch"});
  expect_error([&] { sft_batch(exs, {1}, 4, 0); }, {"example 1", "mask"});
}
