// Serving without HTTP: the batched forward (several sequences, each its own KV cache) against each sequence run
// alone, the generation loop (stop strings held back, UTF-8 never split, finish reasons), and the engine loop
// (parallel jobs equal to their results alone, prefix reuse, cancellation, queue limit, max_tokens capped by the
// context).
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "core/error.h"
#include "infer/engine.h"
#include "infer/generation.h"
#include "infer/infer_model.h"
#include "model/gguf_model.h"
#include "serve/engine_loop.h"
#include "temp_dir.h"
#include "test_util.h"
#include "text_util.h"

using namespace dsmoe;
using namespace dsmoe::testing;

namespace {
// The model in three storage forms: F32 (sgemm for prompts, dot products for single rows), Q8_0 and Q4_0 (integer
// kernels, packed).
class Serve : public TempDirTest {
 protected:
  std::vector<std::unique_ptr<InferModel>> model_forms(uint64_t seed) const;
};
std::vector<std::unique_ptr<InferModel>> Serve::model_forms(uint64_t seed) const {
  auto m = random_model(block_quant_config_3layers(), seed);
  std::vector<std::unique_ptr<InferModel>> out;
  for (QuantType t : {QuantType::F32, QuantType::Q8_0, QuantType::Q4_0}) {
    const std::string path = file(fmt::format("m{}_{}.gguf", seed, quant_type_name(t)));
    model_save_gguf(*m, path, t);
    out.push_back(infer_model_load(path));
  }
  return out;
}

// Greedy continuation of each prompt by a lone session (prefill, then single-token decodes).
std::vector<int32_t> greedy_alone(const InferModel& m, const std::vector<int32_t>& prompt, int64_t n) {
  InferenceSession s(m, 128);
  const std::vector<float>* l = &s.forward(prompt.data(), static_cast<int64_t>(prompt.size()));
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = static_cast<int32_t>(std::max_element(l->begin(), l->end()) - l->begin());
    out.push_back(t);
    l = &s.forward(&t, 1);
  }
  return out;
}
}  // namespace

// A decode step of several sequences in one forward gives each exactly the logits it gets alone.
TEST_F(Serve, BatchedDecodeStepEqualsEachSequenceAlone) {
  for (const auto& m : model_forms(21)) {
    const int64_t V = m->config.vocab_size;
    const std::vector<std::vector<int32_t>> prompts = {random_tokens(5, V, 1), random_tokens(9, V, 2),
                                                       random_tokens(3, V, 3)};
    const size_t S = prompts.size();
    // Alone: one session per sequence, the same decode tokens.
    std::vector<std::vector<int32_t>> feed(S);
    for (size_t s = 0; s < S; ++s) feed[s] = random_tokens(6, V, 10 + s);
    std::vector<std::vector<float>> want(S);
    for (size_t s = 0; s < S; ++s) {
      InferenceSession one(*m, 64);
      one.forward(prompts[s].data(), static_cast<int64_t>(prompts[s].size()));
      for (int32_t t : feed[s]) {
        const std::vector<float>& l = one.forward(&t, 1);
        want[s].insert(want[s].end(), l.begin(), l.end());
      }
    }
    // Batched: prefills one by one, then every decode step for all three at once.
    Engine engine(*m, 64);
    std::vector<KvCache> caches(S);
    std::vector<std::vector<float>> logits(S, std::vector<float>(static_cast<size_t>(V)));
    for (size_t s = 0; s < S; ++s) {
      caches[s].init(m->config, 64, QuantType::F32);
      const SeqBatch b{&caches[s], prompts[s].data(), static_cast<int64_t>(prompts[s].size()), logits[s].data()};
      engine.forward(&b, 1);
    }
    std::vector<std::vector<float>> got(S);
    for (size_t i = 0; i < feed[0].size(); ++i) {
      std::vector<SeqBatch> batch;
      for (size_t s = 0; s < S; ++s) batch.push_back({&caches[s], &feed[s][i], 1, logits[s].data()});
      engine.forward(batch.data(), batch.size());
      for (size_t s = 0; s < S; ++s) got[s].insert(got[s].end(), logits[s].begin(), logits[s].end());
    }
    for (size_t s = 0; s < S; ++s) {
      EXPECT_EQ(caches[s].length, static_cast<int64_t>(prompts[s].size() + feed[s].size()));
      EXPECT_EQ(std::memcmp(got[s].data(), want[s].data(), want[s].size() * 4), 0)
          << "sequence " << s << ", model " << m->type_summary;
    }
    // A batch may also mix prompt chunks with decode rows: close, not bit-equal (sgemm over other row counts).
    KvCache a, b;
    a.init(m->config, 64, QuantType::F32);
    b.init(m->config, 64, QuantType::F32);
    std::vector<float> la(static_cast<size_t>(V)), lb(static_cast<size_t>(V));
    const SeqBatch mixed[] = {{&a, prompts[1].data(), 9, la.data()}, {&b, prompts[2].data(), 3, lb.data()}};
    engine.forward(mixed, 2);
    InferenceSession alone(*m, 64);
    const std::vector<float>& ref = alone.forward(prompts[1].data(), 9);
    for (int64_t i = 0; i < V; ++i) EXPECT_NEAR(la[i], ref[i], 1e-4 * (1.0 + std::fabs(ref[i])));
    // Bad batches: one cache twice, a cache longer than the engine's positions.
    const SeqBatch twice[] = {{&a, feed[0].data(), 1, nullptr}, {&a, feed[0].data(), 1, nullptr}};
    EXPECT_THROW(engine.forward(twice, 2), Error);
    KvCache big;
    big.init(m->config, 100, QuantType::F32);
    const SeqBatch too_long{&big, feed[0].data(), 1, nullptr};
    EXPECT_THROW(engine.forward(&too_long, 1), Error);
  }
}

// ---- the generation loop ----
namespace {
// Logits that make greedy sampling pick `id`.
std::vector<float> one_hot(int64_t V, int32_t id) {
  std::vector<float> l(static_cast<size_t>(V), 0.0f);
  l[static_cast<size_t>(id)] = 10.0f;
  return l;
}
GenerationOptions greedy(int64_t max_tokens, std::vector<std::string> stops = {}) {
  GenerationOptions o;
  o.sampling.temperature = 0.0;
  o.max_tokens = max_tokens;
  o.stops = std::move(stops);
  o.eos_ids = {257};
  return o;
}
// Feeds the bytes of `text` as byte tokens; returns the pieces take_text() handed out after each step.
std::vector<std::string> feed_bytes(Generation& g, const std::string& text) {
  std::vector<std::string> pieces;
  for (unsigned char c : text) {
    const std::vector<float> l = one_hot(258, c);
    const bool more = g.step(l.data(), 258);
    pieces.push_back(g.take_text());
    if (!more) break;
  }
  pieces.push_back(g.take_text());
  return pieces;
}
}  // namespace

TEST(Generation, StopStringsAreHeldBackAndCut) {
  const text::Tokenizer tok = byte_tokenizer();
  Generation g(&tok, greedy(100, {"STOP", "yz"}), {256});
  const std::vector<std::string> p = feed_bytes(g, "ab STxSTOP tail");
  // "S" and "ST" could start "STOP": held back until "STx" shows they do not.
  EXPECT_EQ(p[0], "a");
  EXPECT_EQ(p[3], "");  // "ab S": S held
  EXPECT_EQ(p[4], "");  // "ab ST": ST held
  EXPECT_EQ(p[5], "STx");
  EXPECT_EQ(g.finish(), Finish::kStop);
  EXPECT_EQ(g.text(), "ab STx");
  EXPECT_STREQ(finish_reason(g.finish()), "stop");
  EXPECT_EQ(g.generated(), 10);  // the tokens of the stop string were generated, not shown
}

TEST(Generation, Utf8CharactersAreNeverSplit) {
  const text::Tokenizer tok = byte_tokenizer();
  Generation g(&tok, greedy(100), {256});
  const std::vector<std::string> p = feed_bytes(g, "h\xC3\xA9\xE2\x82\xAC!");  // "hé€!"
  EXPECT_EQ(p[0], "h");
  EXPECT_EQ(p[1], "");  // first byte of é
  EXPECT_EQ(p[2], "\xC3\xA9");
  EXPECT_EQ(p[3], "");
  EXPECT_EQ(p[4], "");
  EXPECT_EQ(p[5], "\xE2\x82\xAC");
  EXPECT_EQ(p[6], "!");
  // An invalid byte at the end of a reply becomes U+FFFD instead of broken JSON.
  Generation bad(&tok, greedy(2), {256});
  const std::vector<std::string> q = feed_bytes(bad, "a\xC3");
  EXPECT_EQ(bad.finish(), Finish::kLength);
  EXPECT_EQ(bad.text(), "a\xEF\xBF\xBD");
}

TEST(Generation, FinishReasons) {
  const text::Tokenizer tok = byte_tokenizer();
  Generation eos(&tok, greedy(100), {256});
  const std::vector<float> a = one_hot(258, 'a'), end = one_hot(258, 257);
  EXPECT_TRUE(eos.step(a.data(), 258));
  EXPECT_FALSE(eos.step(end.data(), 258));
  EXPECT_EQ(eos.finish(), Finish::kEos);
  EXPECT_EQ(eos.generated(), 1);  // EOS is not part of the reply
  Generation length(&tok, greedy(2), {256});
  EXPECT_TRUE(length.step(a.data(), 258));
  EXPECT_FALSE(length.step(a.data(), 258));
  EXPECT_EQ(length.finish(), Finish::kLength);
  Generation zero(&tok, greedy(0), {256});
  EXPECT_FALSE(zero.step(a.data(), 258));
  EXPECT_EQ(zero.generated(), 0);
  Generation cancelled(&tok, greedy(10), {256});
  cancelled.step(a.data(), 258);
  cancelled.end(Finish::kCancelled);
  EXPECT_FALSE(cancelled.step(a.data(), 258));
  EXPECT_EQ(cancelled.generated(), 1);
  // Leading whitespace skipped for chat replies; log-probabilities of the chosen token with alternatives.
  GenerationOptions chat = greedy(10);
  chat.skip_leading_space = true;
  chat.top_logprobs = 2;
  Generation lead(&tok, chat, {256});
  const std::vector<std::string> p = feed_bytes(lead, "  hi");
  EXPECT_EQ(lead.text(), "hi");
  ASSERT_EQ(lead.logprobs().size(), 4u);
  EXPECT_EQ(lead.logprobs()[2].id, 'h');
  const double log_z = 10.0 + std::log1p(257.0 * std::exp(-10.0));  // one logit of 10, 257 of 0
  EXPECT_NEAR(lead.logprobs()[2].logprob, 10.0 - log_z, 1e-9);
  ASSERT_EQ(lead.logprobs()[2].top.size(), 2u);
  EXPECT_EQ(lead.logprobs()[2].top[0].first, 'h');
  EXPECT_EQ(lead.logprobs()[2].top[1].first, 0);  // ties: the lowest id first
  EXPECT_NEAR(lead.logprobs()[2].top[1].second, -log_z, 1e-9);
}

// ---- the engine loop ----
namespace {
serve::JobOutput run_to_end(const std::shared_ptr<serve::JobHandle>& h) {
  serve::JobOutput out;
  while (!h->wait(out, std::chrono::milliseconds(1000))) {
  }
  return out;
}
serve::Job job(const std::vector<int32_t>& prompt, int64_t max_tokens) {
  serve::Job j;
  j.prompt = prompt;
  j.options.sampling.temperature = 0.0;
  j.options.max_tokens = max_tokens;
  return j;
}
}  // namespace

TEST_F(Serve, EngineLoopParallelJobsEqualTheirResultsAlone) {
  for (const auto& m : model_forms(22)) {
    const int64_t V = m->config.vocab_size;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 5; ++i) prompts.push_back(random_tokens(3 + 4 * i, V, 30 + i));
    serve::LoopOptions o;
    o.parallel = 4;  // 5 jobs: one waits for a slot
    o.ctx = 64;
    o.prefill_chunk = 4;  // prompts enter in chunks while the others decode
    serve::EngineLoop loop(*m, nullptr, o);
    std::vector<std::shared_ptr<serve::JobHandle>> handles;
    for (const auto& p : prompts) handles.push_back(loop.submit(job(p, 12)));
    for (size_t i = 0; i < prompts.size(); ++i) {
      ASSERT_TRUE(handles[i]);
      const serve::JobOutput out = run_to_end(handles[i]);
      EXPECT_EQ(out.finish, Finish::kLength);
      EXPECT_EQ(out.completion_tokens, 12);
      EXPECT_EQ(out.prompt_tokens, static_cast<int64_t>(prompts[i].size()));
      // F32 prompts run in chunks here: sgemm over other shapes may move a last bit; quantized models are exact.
      const std::vector<int32_t> alone = greedy_alone(*m, prompts[i], 12);
      if (m->type_summary.rfind("F32", 0) != 0 || prompts[i].size() <= 4) {
        EXPECT_EQ(out.tokens, alone) << "job " << i << " " << m->type_summary;
      }
    }
    const serve::LoopMetrics mt = loop.metrics();
    EXPECT_EQ(mt.requests, 5);
    EXPECT_EQ(mt.generated_tokens, 60);
    EXPECT_LT(mt.decode_steps, 60);  // steps were shared
  }
}

TEST_F(Serve, EngineLoopPrefixReuseCancellationQueueAndContext) {
  const auto forms = model_forms(23);
  const InferModel& m = *forms[1];  // Q8_0
  const int64_t V = m.config.vocab_size;
  serve::LoopOptions o;
  o.parallel = 1;
  o.ctx = 48;
  o.max_queue = 1;
  serve::EngineLoop loop(m, nullptr, o);
  // Multi-turn: the second prompt extends the first and its reply; only the new part is evaluated.
  const std::vector<int32_t> p1 = random_tokens(10, V, 40);
  const serve::JobOutput r1 = run_to_end(loop.submit(job(p1, 5)));
  std::vector<int32_t> p2 = p1;
  p2.insert(p2.end(), r1.tokens.begin(), r1.tokens.end());
  const std::vector<int32_t> more = random_tokens(4, V, 41);
  p2.insert(p2.end(), more.begin(), more.end());
  const serve::JobOutput r2 = run_to_end(loop.submit(job(p2, 3)));
  EXPECT_EQ(r2.cached_tokens, 14);  // p1 and the 4 replies that were run (the 5th was sampled, never run)
  EXPECT_EQ(r2.tokens, greedy_alone(m, p2, 3));
  // max_tokens beyond the context: capped, finish "length".
  const serve::JobOutput r3 = run_to_end(loop.submit(job(random_tokens(40, V, 42), 1000)));
  EXPECT_EQ(r3.completion_tokens, 8);
  EXPECT_EQ(r3.finish, Finish::kLength);
  // Cancellation (a longer context, so that the job cannot end by itself first): the job ends within a step and
  // the slot serves the next one.
  serve::LoopOptions o2 = o;
  o2.ctx = 128;
  serve::EngineLoop loop2(m, nullptr, o2);
  auto long_job = loop2.submit(job(random_tokens(4, V, 43), -1));
  serve::JobOutput partial;
  while (partial.tokens.empty()) long_job->wait(partial, std::chrono::milliseconds(100));
  long_job->cancel();
  const serve::JobOutput cancelled = run_to_end(long_job);
  EXPECT_EQ(cancelled.finish, Finish::kCancelled);
  EXPECT_LT(cancelled.completion_tokens, 124);
  const serve::JobOutput after = run_to_end(loop2.submit(job(random_tokens(4, V, 44), 2)));
  EXPECT_EQ(after.completion_tokens, 2);
  // Queue: one slot busy with a long job, one waiting, the next refused.
  auto busy = loop2.submit(job(random_tokens(4, V, 45), -1));
  serve::JobOutput first;
  while (first.tokens.empty()) busy->wait(first, std::chrono::milliseconds(100));
  auto waiting = loop2.submit(job(random_tokens(4, V, 46), 2));
  EXPECT_TRUE(waiting);
  EXPECT_FALSE(loop2.submit(job(random_tokens(4, V, 47), 2)));
  busy->cancel();
  EXPECT_EQ(run_to_end(waiting).completion_tokens, 2);
  EXPECT_THROW(loop2.submit(job(random_tokens(128, V, 48), 2)), Error);  // prompt >= ctx
  // Shutdown answers whatever is still running.
  auto last = loop2.submit(job(random_tokens(4, V, 49), -1));
  loop2.shutdown();
  EXPECT_TRUE(run_to_end(last).done);
  EXPECT_FALSE(loop2.submit(job(random_tokens(4, V, 50), 2)));
}

// ---- constrained JSON ----
namespace {
bool accepts_whole(JsonConstraint c, const std::string& text) {
  for (char ch : text)
    if (!c.advance(std::string(1, ch))) return false;
  return c.complete();
}
const nlohmann::ordered_json kPersonSchema = nlohmann::ordered_json::parse(R"({
  "type": "object",
  "properties": {
    "name": {"type": "string"},
    "age": {"type": "integer"},
    "height": {"type": "number"},
    "tags": {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]}},
    "ok": {"type": "boolean"},
    "pet": {"type": ["object", "null"], "properties": {"kind": {"type": "string"}}, "required": ["kind"]}
  },
  "required": ["name", "age"]
})");

// The schema above, checked directly on a parsed value.
bool valid_person(const nlohmann::json& v) {
  if (!v.is_object() || !v.contains("name") || !v["name"].is_string() || !v.contains("age") ||
      !v["age"].is_number_integer())
    return false;
  for (const auto& [k, x] : v.items()) {
    if (k == "name" || k == "age") continue;
    if (k == "height" && x.is_number()) continue;
    if (k == "ok" && x.is_boolean()) continue;
    if (k == "tags" && x.is_array()) {
      for (const auto& t : x)
        if (!t.is_string() || (t != "red" && t != "green" && t != "blue")) return false;
      continue;
    }
    if (k == "pet" && (x.is_null() || (x.is_object() && x.size() == 1 && x.contains("kind") && x["kind"].is_string())))
      continue;
    return false;
  }
  return true;
}
}  // namespace

TEST(JsonConstraint, AcceptsExactlyTheSchema) {
  const JsonConstraint any = JsonConstraint::any_object();
  EXPECT_TRUE(accepts_whole(any, R"({"a":[1,-2.5e3,0,"x\"y\u00e9",true,null,{}],"b":{"c":[]}})"));
  EXPECT_TRUE(accepts_whole(any, "{\"caf\xC3\xA9\":\"\xE2\x82\xAC\"}"));
  for (const char* bad : {"[1]", "{a:1}", R"({"a":01})", R"({"a": 1})", R"({"a":1,})", R"({"a":tru})", "\"x\"",
                          R"({"a":"\x01"})", "{\"a\":\"\xC3\"}", "{\"a\":\"\xED\xA0\x80\"}", R"({"a":1.})"})
    EXPECT_FALSE(accepts_whole(any, bad)) << bad;
  const JsonConstraint person = JsonConstraint::from_schema(kPersonSchema);
  for (const char* good : {R"({"name":"Ann","age":31})", R"({"name":"","age":-4,"ok":false})",
                           R"({"name":"B","age":0,"height":1.85,"tags":["red","blue"],"ok":true,"pet":{"kind":"cat"}})",
                           R"({"name":"C","age":7,"pet":null})"})
    EXPECT_TRUE(accepts_whole(person, good)) << good;
  for (const char* bad : {R"({"age":31,"name":"Ann"})", R"({"name":"Ann"})", R"({"name":"Ann","age":3.5})",
                          R"({"name":"Ann","age":3,"tags":["pink"]})", R"({"name":1,"age":3})",
                          R"({"name":"A","age":3,"extra":1})", R"({"name":"A","age":3,"pet":{}})"})
    EXPECT_FALSE(accepts_whole(person, bad)) << bad;
  // Schemas it cannot enforce are refused, naming the keyword.
  try {
    JsonConstraint::from_schema(nlohmann::ordered_json::parse(R"({"type":"string","pattern":"^a"})"));
    ADD_FAILURE() << "pattern accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pattern"), std::string::npos) << e.what();
  }
  EXPECT_THROW(JsonConstraint::from_schema(nlohmann::ordered_json::parse(R"({"type":"strung"})")), Error);
  EXPECT_THROW(
      JsonConstraint::from_schema(nlohmann::ordered_json::parse(R"({"properties":{"a":{}},"required":["b"]})")), Error);
}

namespace {
// One reply sampled at temperature 1 from random logits over a byte-level vocabulary, constrained to the person
// schema (even samples) or to any object (odd ones); `quote_boost` raises '"' so that strings end sooner.
struct JsonReply {
  std::string text;
  Finish finish;
  int64_t generated;
};
JsonReply sample_json_reply(const text::Tokenizer& tok, int sample, int64_t max_tokens, std::mt19937_64& rng,
                            float quote_boost) {
  GenerationOptions o;
  o.sampling.temperature = 1.0;
  o.sampling.top_k = 0;
  o.sampling.top_p = 1.0;
  o.sampling.min_p = 0.0;
  o.sampling.seed = static_cast<uint64_t>(sample);
  o.max_tokens = max_tokens;
  o.eos_ids = {257};
  o.json = std::make_shared<const JsonConstraint>(sample % 2 ? JsonConstraint::any_object()
                                                             : JsonConstraint::from_schema(kPersonSchema));
  Generation g(&tok, o, {256});
  std::vector<float> logits(258);
  for (;;) {
    for (float& l : logits) l = static_cast<float>(rng() % 1000) / 250.0f;
    logits['"'] += quote_boost;
    if (!g.step(logits.data(), 258)) break;
  }
  g.take_text();
  return {g.text(), g.finish(), g.generated()};
}
}  // namespace

// Sampling at temperature 1 from random logits (a byte-level vocabulary): every reply parses and validates.
TEST(JsonConstraint, EverySampledReplyParsesAndValidates) {
  const text::Tokenizer tok = byte_tokenizer();
  std::mt19937_64 rng(7);
  for (int sample = 0; sample < 60; ++sample) {
    const JsonReply r = sample_json_reply(tok, sample, 20000, rng, 2.0f);
    ASSERT_EQ(r.finish, Finish::kStop) << r.text;
    nlohmann::json v;
    ASSERT_NO_THROW(v = nlohmann::json::parse(r.text)) << r.text;
    if (sample % 2 == 0)
      EXPECT_TRUE(valid_person(v)) << r.text;
    else
      EXPECT_TRUE(v.is_object()) << r.text;
  }
}

// A tight token budget still ends in complete JSON: near the end only tokens that shorten the shortest completion
// are allowed. And bytes_to_close counts exactly that shortest completion.
TEST(JsonConstraint, ClosesWithinTheTokenBudget) {
  JsonConstraint c = JsonConstraint::from_schema(kPersonSchema);
  EXPECT_EQ(c.bytes_to_close(), static_cast<int>(std::string(R"({"name":"","age":0})").size()));
  ASSERT_TRUE(c.advance(R"({"name":"abc)"));
  EXPECT_EQ(c.bytes_to_close(), static_cast<int>(std::string(R"(","age":0})").size()));
  ASSERT_TRUE(c.advance(R"(","age":12,"tags":["gr)"));
  EXPECT_EQ(c.bytes_to_close(), static_cast<int>(std::string(R"(een"]})").size()));
  const text::Tokenizer tok = byte_tokenizer();
  std::mt19937_64 rng(9);
  for (int budget : {20, 24, 40, 80}) {
    for (int sample = 0; sample < 10; ++sample) {
      const JsonReply r = sample_json_reply(tok, sample, budget, rng, 0.0f);
      EXPECT_LE(r.generated, budget);
      nlohmann::json v;
      ASSERT_NO_THROW(v = nlohmann::json::parse(r.text)) << "budget " << budget << ": " << r.text;
      if (sample % 2 == 0) {
        EXPECT_TRUE(valid_person(v)) << r.text;
      }
    }
  }
}
