// Corpus preparation: documents from text, directories and JSONL; the token files decode back to exactly the input
// documents (BOS per document as configured, EOS after each); validation split; sidecar; errors.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "shared_data.h"
#include "text/corpus.h"
#include "text/synth.h"
#include "text/tokenizer.h"
#include "text_util.h"

namespace fs = std::filesystem;
using namespace dsmoe;
using namespace dsmoe::text;
using json = nlohmann::json;

using dsmoe::testing::byte_tokenizer;

namespace {

std::vector<uint32_t> read_u32(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const size_t n = static_cast<size_t>(in.tellg()) / 4;
  std::vector<uint32_t> out(n);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(out.data()), n * 4);
  return out;
}

// Split a token file into documents at EOS; check BOS first; decode each.
std::vector<std::string> decode_documents(const Tokenizer& tok, const std::vector<uint32_t>& tokens) {
  std::vector<std::string> docs;
  std::vector<int32_t> cur;
  for (uint32_t t : tokens) {
    if (static_cast<int32_t>(t) == tok.eos_id()) {
      EXPECT_FALSE(cur.empty());
      EXPECT_EQ(cur.front(), tok.bos_id()) << "every document starts with BOS";
      docs.push_back(tok.decode(std::vector<int32_t>(cur.begin() + 1, cur.end())));
      cur.clear();
    } else {
      cur.push_back(static_cast<int32_t>(t));
    }
  }
  EXPECT_TRUE(cur.empty()) << "token file ends with EOS";
  return docs;
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("dsmoe_corpus_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Prepare `inputs` and check that train + val decode to exactly the documents, split as documented.
void check_round_trip(const Tokenizer& tok, const std::vector<std::string>& inputs, const fs::path& dir,
                      double val_fraction, int64_t* n_docs = nullptr) {
  PrepareOptions o;
  o.inputs = inputs;
  o.out_prefix = (dir / "out").string();
  o.val_fraction = val_fraction;
  o.progress = false;
  PrepareStats stats = prepare_corpus(tok, o);
  std::vector<std::string> want_train, want_val;
  int64_t n = 0;
  for_each_document(inputs, [&](std::string&& doc) {
    const bool is_val = static_cast<int64_t>((n + 1) * val_fraction) > static_cast<int64_t>(n * val_fraction);
    (is_val ? want_val : want_train).push_back(doc);
    ++n;
  });
  EXPECT_EQ(stats.documents, n);
  EXPECT_EQ(decode_documents(tok, read_u32(o.out_prefix + ".train.bin")), want_train);
  EXPECT_EQ(decode_documents(tok, read_u32(o.out_prefix + ".val.bin")), want_val);
  json sidecar = json::parse(std::ifstream(o.out_prefix + ".json"));
  EXPECT_EQ(sidecar["documents"], n);
  EXPECT_EQ(sidecar["train"]["tokens"], stats.train_tokens);
  EXPECT_EQ(sidecar["tokenizer_fingerprint"], tok.fingerprint());
  if (n_docs) *n_docs = n;
}

}  // namespace

TEST(Corpus, PlainTextDirectoriesAndJsonlRoundTrip) {
  fs::path dir = temp_dir("mixed");
  fs::create_directories(dir / "in" / "sub");
  std::ofstream(dir / "in" / "a.txt") << "first doc line one\nline two\n\n\n  \nsecond doc\r\nwith CRLF\n\nthird";
  std::ofstream(dir / "in" / "sub" / "b.txt") << "Ünïcödé doc 😀 and 12345\n";
  std::ofstream(dir / "in" / "c.jsonl") << R"({"text": "json doc\n\nwith a blank line inside"})"
                                        << "\n"
                                        << R"({"text": "second json doc", "meta": 1})"
                                        << "\n";
  int64_t n = 0;
  check_round_trip(byte_tokenizer(), {(dir / "in").string()}, dir, 0.34, &n);
  EXPECT_EQ(n, 6);
  fs::remove_all(dir);
}

TEST(Corpus, SyntheticCorpusRoundTripsAndSplits) {
  fs::path dir = temp_dir("synth");
  write_synth_corpus((dir / "synth.txt").string(), 300000, 7);
  int64_t n = 0;
  check_round_trip(byte_tokenizer(), {(dir / "synth.txt").string()}, dir, 0.01, &n);
  EXPECT_GT(n, 100);
  fs::remove_all(dir);
}

TEST(Corpus, BrownWithTheDeepSeekTokenizerDecodesToTheInput) {
  const fs::path shared = DSMOE_SHARED_DIR;
  DSMOE_REQUIRE_SHARED_FILE((shared / "tokenizers/deepseek-llm/tokenizer.json").string());
  DSMOE_REQUIRE_SHARED_FILE((shared / "data/brown.txt").string());
  const Tokenizer tok = Tokenizer::load((shared / "tokenizers/deepseek-llm").string());
  fs::path dir = temp_dir("brown");
  int64_t n = 0;
  check_round_trip(tok, {(shared / "data/brown.txt").string()}, dir, 0.005, &n);
  EXPECT_EQ(n, 500);
  fs::remove_all(dir);
}

TEST(Corpus, ErrorsAreClear) {
  fs::path dir = temp_dir("errors");
  PrepareOptions o;
  o.out_prefix = (dir / "out").string();
  o.progress = false;
  o.inputs = {(dir / "missing.txt").string()};
  try {
    prepare_corpus(byte_tokenizer(), o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "bad.jsonl") << "{\"text\": \"ok\"}\n{\"txt\": 1}\n";
  o.inputs = {(dir / "bad.jsonl").string()};
  try {
    prepare_corpus(byte_tokenizer(), o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out.train.bin")) << "no partial output after an error";
  fs::remove_all(dir);
}
