// infer/logprob_file: the perplexity --save-logits / --kld-base format, its checks and the KL divergence sum.
#include "infer/logprob_file.h"

#include <cmath>
#include <filesystem>
#include <vector>

#include <gtest/gtest.h>

#include "expect_error.h"
#include "temp_dir.h"

namespace dsmoe {
namespace {

using LogprobFileTest = testing::TempDirTest;

// log-softmax of `logits`.
std::vector<float> log_softmax(const std::vector<float>& logits) {
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x));
  std::vector<float> out;
  for (float x : logits) out.push_back(x - static_cast<float>(std::log(sum)));
  return out;
}

TEST_F(LogprobFileTest, RoundTripsRowsAndHeader) {
  const std::string path = file("a.dslp");
  const std::vector<std::vector<float>> rows = {log_softmax({1, 2, 3}), log_softmax({0, 0, 5}),
                                                log_softmax({-1, 4, 0})};
  {
    LogprobWriter w(path, 3, 3);
    for (const auto& r : rows) w.write_row(r.data());
    EXPECT_FALSE(std::filesystem::exists(path)) << "the final name appears only when the file is complete";
    w.finish();
  }
  EXPECT_EQ(std::filesystem::file_size(path), 24u + 3 * 3 * 4);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  LogprobReader r(path);
  EXPECT_EQ(r.tokens(), 3);
  EXPECT_EQ(r.vocab(), 3);
  std::vector<float> row(3);
  for (const auto& want : rows) {
    r.read_row(row.data());
    EXPECT_EQ(row, want);
  }
  expect_error([&] { r.read_row(row.data()); }, {"holds only 3 rows"});
}

TEST_F(LogprobFileTest, UnfinishedWriterLeavesNoFile) {
  const std::string path = file("b.dslp");
  {
    LogprobWriter w(path, 2, 3);
    const std::vector<float> row = log_softmax({1, 2, 3});
    w.write_row(row.data());
    expect_error([&] { w.finish(); }, {"1 rows written of the 2 declared"});
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  {
    LogprobWriter w(path, 1, 3);  // destroyed without finish(), as when an evaluation throws
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_F(LogprobFileTest, RefusesDamagedFiles) {
  const std::string path = file("c.dslp");
  {
    LogprobWriter w(path, 2, 4);
    const std::vector<float> row = log_softmax({1, 2, 3, 4});
    w.write_row(row.data());
    w.write_row(row.data());
    w.finish();
  }
  const std::vector<uint8_t> good = testing::slurp(path);
  auto with = [&](auto edit) {
    std::vector<uint8_t> bytes = good;
    edit(bytes);
    testing::spit(path, bytes);
  };
  with([](std::vector<uint8_t>& b) { b[0] = 'X'; });
  expect_error([&] { LogprobReader r(path); }, {"not a dsmoe log-probability file"});
  with([](std::vector<uint8_t>& b) { b[4] = 2; });
  expect_error([&] { LogprobReader r(path); }, {"version 2"});
  with([](std::vector<uint8_t>& b) { b.resize(b.size() - 4); });
  expect_error([&] { LogprobReader r(path); }, {"bytes, but its header's 2 tokens x 4 vocab need"});
  with([](std::vector<uint8_t>& b) { b[8 + 7] = 0x40; });  // tokens = 2^62 + 2: a header claiming exabytes
  expect_error([&] { LogprobReader r(path); }, {"need"});
  with([](std::vector<uint8_t>& b) { b.resize(10); });
  expect_error([&] { LogprobReader r(path); }, {"not a dsmoe log-probability file"});
  expect_error([&] { LogprobReader r(file("missing.dslp")); }, {"cannot open"});
}

TEST(KlDivergence, ZeroForIdenticalRowsAndExactForTwoTokens) {
  const std::vector<float> p = log_softmax({0.5f, 1.5f, -2.0f});
  KlDivergence same;
  same.add_row(p.data(), p.data(), 3);
  EXPECT_EQ(same.mean(), 0.0);
  EXPECT_EQ(same.same_top_percent(), 100.0);

  // Two tokens: base (0.75, 0.25), model (0.5, 0.5): KL = 0.75 ln 1.5 + 0.25 ln 0.5.
  const std::vector<float> base = {std::log(0.75f), std::log(0.25f)}, model = {std::log(0.5f), std::log(0.5f)};
  KlDivergence kl;
  kl.add_row(base.data(), model.data(), 2);
  const std::vector<float> flipped = {std::log(0.25f), std::log(0.75f)};
  kl.add_row(base.data(), flipped.data(), 2);  // KL = 0.75 ln 3 + 0.25 ln(1/3); top token differs
  const double want = (0.75 * std::log(1.5) + 0.25 * std::log(0.5) + 0.5 * std::log(3.0)) / 2;
  EXPECT_NEAR(kl.mean(), want, 1e-6);
  EXPECT_EQ(kl.rows, 2);
  EXPECT_EQ(kl.same_top, 1) << "the tie (0.5, 0.5) puts token 0 on top (the first maximum), as base does";
}

}  // namespace
}  // namespace dsmoe
