// Token sampling: greedy, seeds, the softmax law of the draw, top-k / top-p / min-p / temperature, the penalties
// against hand-computed logits, stop strings, and parameter validation.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "expect_error.h"
#include "infer/sampling.h"

using dsmoe::find_stop;
using dsmoe::Sampler;
using dsmoe::SamplingParams;
using dsmoe::TokenProb;

namespace {

SamplingParams plain(double temperature = 1.0) {  // no truncation, no penalties
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0;
  p.min_p = 0.0;
  return p;
}

std::vector<float> log_probs(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double q : probs) l.push_back(static_cast<float>(std::log(q)));
  return l;
}

std::set<int32_t> ids(const std::vector<TokenProb>& d) {
  std::set<int32_t> s;
  for (const auto& t : d) s.insert(t.id);
  return s;
}

std::vector<double> softmax(const std::vector<float>& l, double t = 1.0) {
  const double m = *std::max_element(l.begin(), l.end());
  std::vector<double> p;
  double sum = 0;
  for (float x : l) sum += std::exp((x - m) / t);
  for (float x : l) p.push_back(std::exp((x - m) / t) / sum);
  return p;
}

double entropy(const std::vector<TokenProb>& d) {
  double h = 0;
  for (const auto& t : d)
    if (t.p > 0) h -= t.p * std::log(t.p);
  return h;
}

// Deterministic pseudo-random logits for the larger cases.
std::vector<float> noisy_logits(size_t n, uint64_t seed, float scale) {
  std::vector<float> l(n);
  uint64_t s = seed;
  for (auto& x : l) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = scale * (static_cast<float>(s >> 40) / static_cast<float>(1 << 24) - 0.5f);
  }
  return l;
}

}  // namespace

TEST(Sampling, GreedyIsArgmaxLowestIdOnTiesAndDeterministic) {
  const std::vector<float> l = {0.1f, 2.5f, -1.0f, 2.5f, 1.0f};
  for (uint64_t seed : {0ull, 1ull, 99ull}) {
    SamplingParams p;  // default truncation on: it must not matter for greedy
    p.temperature = 0;
    p.seed = seed;
    Sampler s(p);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(l.data(), 5, {}), 1);
  }
  const auto big = noisy_logits(100000, 7, 20.0f);
  Sampler s(plain(0));
  const auto want = std::max_element(big.begin(), big.end()) - big.begin();
  EXPECT_EQ(s.sample(big.data(), static_cast<int64_t>(big.size()), {}), want);
  const auto d = s.distribution(big.data(), static_cast<int64_t>(big.size()), {});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].id, want);
  EXPECT_EQ(d[0].p, 1.0);
  Sampler tiny(plain(1e-320));  // 1/T overflows: still the argmax, never NaN
  EXPECT_EQ(tiny.sample(l.data(), 5, {}), 1);
}

TEST(Sampling, GreedyAppliesPenalties) {
  const std::vector<float> l = {3.0f, 2.0f, 1.0f};
  SamplingParams p = plain(0);
  p.repetition_penalty = 2.0;  // 3 -> 1.5 < 2
  Sampler s(p);
  EXPECT_EQ(s.sample(l.data(), 3, {0}), 1);
  EXPECT_EQ(s.sample(l.data(), 3, {2}), 0);
}

TEST(Sampling, SameSeedSameSequenceDifferentSeedsDiffer) {
  const auto l = noisy_logits(1000, 3, 4.0f);
  const auto run = [&](uint64_t seed) {
    SamplingParams p;
    p.seed = seed;
    Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.sample(l.data(), 1000, out));
    return out;
  };
  const auto a = run(42);
  EXPECT_EQ(a, run(42));
  EXPECT_NE(a, run(43));
  EXPECT_NE(a, run(0));

  SamplingParams p;
  p.seed = 42;
  Sampler s(p);
  std::vector<int32_t> b;
  for (int i = 0; i < 50; ++i) b.push_back(s.sample(l.data(), 1000, b));
  s.reset(42);
  std::vector<int32_t> c;
  for (int i = 0; i < 50; ++i) c.push_back(s.sample(l.data(), 1000, c));
  EXPECT_EQ(b, c);
  EXPECT_EQ(b, std::vector<int32_t>(a.begin(), a.begin() + 50));
}

TEST(Sampling, DrawsFollowSoftmaxChiSquare) {
  const std::vector<float> l = {1.0f, 0.0f, -0.5f, 2.0f, 0.3f, -2.0f, 1.5f, 0.7f};
  const auto want = softmax(l);
  Sampler s([] {
    SamplingParams p = plain(1.0);
    p.seed = 12345;
    return p;
  }());
  const auto d = s.distribution(l.data(), 8, {});
  ASSERT_EQ(d.size(), 8u);
  for (const auto& t : d) EXPECT_NEAR(t.p, want[static_cast<size_t>(t.id)], 1e-12);

  const int n = 50000;
  std::vector<int> counts(8, 0);
  for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(s.sample(l.data(), 8, {}))];
  double chi2 = 0;
  for (size_t i = 0; i < 8; ++i) {
    const double e = n * want[i];
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  // 7 degrees of freedom: P(chi2 > 24.32) = 0.001. The seed is fixed, so this cannot flake.
  EXPECT_LT(chi2, 24.32) << "chi-square " << chi2;
}

TEST(Sampling, TopKNeverLeavesTheTopK) {
  const auto l = noisy_logits(5000, 11, 3.0f);
  std::vector<int32_t> order(5000);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  const std::set<int32_t> top(order.begin(), order.begin() + 10);

  SamplingParams p = plain(1.5);
  p.top_k = 10;
  p.seed = 5;
  Sampler s(p);
  EXPECT_EQ(ids(s.distribution(l.data(), 5000, {})), top);
  std::set<int32_t> seen;
  for (int i = 0; i < 5000; ++i) {
    const int32_t t = s.sample(l.data(), 5000, {});
    EXPECT_TRUE(top.count(t)) << t;
    seen.insert(t);
  }
  EXPECT_EQ(seen, top);  // and every one of them is reachable

  p.top_k = 1000;  // a large k takes the nth_element path instead of the heap
  Sampler wide(p);
  const auto dw = wide.distribution(l.data(), 5000, {});
  ASSERT_EQ(dw.size(), 1000u);
  for (size_t i = 0; i < dw.size(); ++i) ASSERT_EQ(dw[i].id, order[i]) << i;  // sorted, best first

  p.top_k = 1;
  Sampler one(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(one.sample(l.data(), 5000, {}), order[0]);
  p.top_k = 99999;  // larger than the vocabulary: off
  Sampler all(p);
  EXPECT_EQ(all.distribution(l.data(), 5000, {}).size(), 5000u);
}

TEST(Sampling, TopPKeepsSmallestPrefixReachingP) {
  const auto l = log_probs({0.15, 0.5, 0.05, 0.3});  // sorted: 1 (0.5), 3 (0.3), 0 (0.15), 2 (0.05)
  const auto kept = [&](double top_p) {
    SamplingParams p = plain(1.0);
    p.top_p = top_p;
    Sampler s(p);
    return s.distribution(l.data(), 4, {});
  };
  EXPECT_EQ(ids(kept(0.4)), (std::set<int32_t>{1}));
  EXPECT_EQ(ids(kept(0.75)), (std::set<int32_t>{1, 3}));
  EXPECT_EQ(ids(kept(0.85)), (std::set<int32_t>{1, 3, 0}));
  EXPECT_EQ(ids(kept(0.97)), (std::set<int32_t>{1, 3, 0, 2}));
  const auto d = kept(0.75);  // renormalised over the kept set, in descending order
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].id, 1);
  EXPECT_NEAR(d[0].p, 0.5 / 0.8, 1e-6);
  EXPECT_NEAR(d[1].p, 0.3 / 0.8, 1e-6);

  // A flat 100K vocabulary: the nucleus is large, so the partial sort must grow; compare with a full sort.
  const size_t n = 100000;
  const auto big = noisy_logits(n, 17, 2.0f);
  const auto prob = softmax(big);
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return big[a] > big[b] || (big[a] == big[b] && a < b); });
  for (double top_p : {0.001, 0.3, 0.9}) {
    double cum = 0;
    size_t k = 0;
    while (cum < top_p) cum += prob[static_cast<size_t>(order[k++])];
    SamplingParams p = plain(1.0);
    p.top_p = top_p;
    Sampler s(p);
    const auto d = s.distribution(big.data(), static_cast<int64_t>(n), {});
    // The boundary may move by one token where the double sums round differently.
    EXPECT_NEAR(static_cast<double>(d.size()), static_cast<double>(k), 1.0) << top_p;
    for (size_t i = 0; i + 1 < std::min(d.size(), k); ++i) ASSERT_EQ(d[i].id, order[i]) << i;
  }
}

TEST(Sampling, MinPKeepsTokensAboveFractionOfMax) {
  const auto l = log_probs({0.15, 0.5, 0.05, 0.3});
  const auto kept = [&](double min_p) {
    SamplingParams p = plain(1.0);
    p.min_p = min_p;
    Sampler s(p);
    return s.distribution(l.data(), 4, {});
  };
  EXPECT_EQ(ids(kept(0.2)), (std::set<int32_t>{0, 1, 3}));  // threshold 0.1
  EXPECT_EQ(ids(kept(0.5)), (std::set<int32_t>{1, 3}));     // threshold 0.25
  EXPECT_EQ(ids(kept(0.7)), (std::set<int32_t>{1}));        // threshold 0.35
  EXPECT_EQ(ids(kept(0.05)).size(), 4u);                    // threshold 0.025
  const auto d = kept(0.5);
  double sum = 0;
  for (const auto& t : d) sum += t.p;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  for (const auto& t : d) EXPECT_NEAR(t.p, (t.id == 1 ? 0.5 : 0.3) / 0.8, 1e-6);
  // Before temperature (llama.cpp order): a high temperature does not widen the min-p set.
  SamplingParams p = plain(5.0);
  p.min_p = 0.5;
  Sampler hot(p);
  EXPECT_EQ(ids(hot.distribution(l.data(), 4, {})), (std::set<int32_t>{1, 3}));
}

TEST(Sampling, TemperatureScalesEntropy) {
  const std::vector<float> l = {1.0f, 0.0f, -0.5f, 2.0f, 0.3f, -2.0f, 1.5f, 0.7f};
  double last = -1;
  for (double t : {0.1, 0.5, 1.0, 2.0, 10.0}) {
    Sampler s(plain(t));
    const auto d = s.distribution(l.data(), 8, {});
    const auto want = softmax(l, t);
    for (const auto& x : d) EXPECT_NEAR(x.p, want[static_cast<size_t>(x.id)], 1e-12);
    const double h = entropy(d);
    EXPECT_GT(h, last) << "temperature " << t;
    last = h;
  }
  EXPECT_LT(last, std::log(8.0));
  EXPECT_GT(last, std::log(8.0) - 0.05);  // T = 10 is nearly uniform
  // A low temperature samples the argmax almost always.
  SamplingParams p = plain(0.05);
  p.seed = 9;
  Sampler cold(p);
  int hits = 0;
  for (int i = 0; i < 1000; ++i) hits += cold.sample(l.data(), 8, {}) == 3;
  EXPECT_GE(hits, 999);
}

TEST(Sampling, RepetitionPenaltyHandComputed) {
  std::vector<float> l = {2.0f, -1.0f, 0.5f, 3.0f, 0.0f};
  SamplingParams p = plain();
  p.repetition_penalty = 2.0;
  dsmoe::apply_penalties(l.data(), 5, {0, 1, 1, 3, 4}, p);
  EXPECT_FLOAT_EQ(l[0], 1.0f);   // positive: divided
  EXPECT_FLOAT_EQ(l[1], -2.0f);  // negative: multiplied (once, whatever the count)
  EXPECT_FLOAT_EQ(l[2], 0.5f);   // absent
  EXPECT_FLOAT_EQ(l[3], 1.5f);
  EXPECT_FLOAT_EQ(l[4], 0.0f);  // zero stays zero
}

TEST(Sampling, PresenceAndFrequencyPenaltiesHandComputed) {
  std::vector<float> l = {2.0f, -1.0f, 0.5f, 3.0f};
  SamplingParams p = plain();
  p.presence_penalty = 0.5;
  p.frequency_penalty = 0.25;
  dsmoe::apply_penalties(l.data(), 4, {1, 3, 1, 1, 0}, p);
  EXPECT_FLOAT_EQ(l[0], 2.0f - 0.25f - 0.5f);       // count 1
  EXPECT_FLOAT_EQ(l[1], -1.0f - 3 * 0.25f - 0.5f);  // count 3
  EXPECT_FLOAT_EQ(l[2], 0.5f);                      // absent
  EXPECT_FLOAT_EQ(l[3], 3.0f - 0.25f - 0.5f);       // count 1

  // All three together: repetition first, then presence and frequency.
  std::vector<float> m = {2.0f, -1.0f};
  p.repetition_penalty = 1.25;
  dsmoe::apply_penalties(m.data(), 2, {0, 0, 1}, p);
  EXPECT_FLOAT_EQ(m[0], 2.0f / 1.25f - 2 * 0.25f - 0.5f);
  EXPECT_FLOAT_EQ(m[1], -1.0f * 1.25f - 0.25f - 0.5f);

  // Negative values reward repetition (OpenAI allows -2..2).
  std::vector<float> r = {1.0f};
  SamplingParams q = plain();
  q.presence_penalty = -1.0;
  dsmoe::apply_penalties(r.data(), 1, {0}, q);
  EXPECT_FLOAT_EQ(r[0], 2.0f);
}

TEST(Sampling, PenaltyWindowIsTheLastNTokens) {
  SamplingParams p = plain();
  p.frequency_penalty = 1.0;
  p.penalty_last_n = 3;
  const std::vector<int32_t> history = {0, 0, 0, 1, 2, 2};  // window: 1, 2, 2
  std::vector<float> l(3, 0.0f);
  dsmoe::apply_penalties(l.data(), 3, history, p);
  EXPECT_EQ(l, (std::vector<float>{0.0f, -1.0f, -2.0f}));
  p.penalty_last_n = -1;  // the whole history
  l.assign(3, 0.0f);
  dsmoe::apply_penalties(l.data(), 3, history, p);
  EXPECT_EQ(l, (std::vector<float>{-3.0f, -1.0f, -2.0f}));
  p.penalty_last_n = 0;  // off
  l.assign(3, 0.0f);
  dsmoe::apply_penalties(l.data(), 3, history, p);
  EXPECT_EQ(l, (std::vector<float>(3, 0.0f)));
  p.penalty_last_n = 100;  // longer than the history
  l.assign(3, 0.0f);
  dsmoe::apply_penalties(l.data(), 3, history, p);
  EXPECT_EQ(l, (std::vector<float>{-3.0f, -1.0f, -2.0f}));

  // The Sampler applies the same penalties before the softmax.
  p.penalty_last_n = 3;
  Sampler s(p);
  const std::vector<float> z(3, 0.0f);
  const auto d = s.distribution(z.data(), 3, history);
  const auto want = softmax({0.0f, -1.0f, -2.0f});
  for (const auto& t : d) EXPECT_NEAR(t.p, want[static_cast<size_t>(t.id)], 1e-7);
}

TEST(Sampling, FindStop) {
  const auto npos = std::string::npos;
  auto m = find_stop("Hello</s>world", {"</s>"});  // in the middle
  EXPECT_EQ(m.stop_at, 5u);
  EXPECT_EQ(m.hold_back, 9u);          // text.size() - stop_at: nothing from the stop on is emitted
  m = find_stop("Hello</", {"</s>"});  // a partial prefix at the end
  EXPECT_EQ(m.stop_at, npos);
  EXPECT_EQ(m.hold_back, 2u);
  m = find_stop("Hello<", {"</s>"});
  EXPECT_EQ(m.hold_back, 1u);
  m = find_stop("Hello", {"</s>"});
  EXPECT_EQ(m.hold_back, 0u);
  m = find_stop("ab", {"abc"});  // the whole text could start the stop
  EXPECT_EQ(m.hold_back, 2u);
  m = find_stop("</s", {"</s>"});
  EXPECT_EQ(m.hold_back, 3u);
  // Multiple stops: the earliest match wins; without a match, the longest partial prefix.
  m = find_stop("one\n\nUser: two###", {"###", "User:"});
  EXPECT_EQ(m.stop_at, 5u);
  m = find_stop("text Us", {"###", "User:", "s"});
  EXPECT_EQ(m.stop_at, 6u);
  m = find_stop("text ##", {"###", "User:"});
  EXPECT_EQ(m.stop_at, npos);
  EXPECT_EQ(m.hold_back, 2u);
  m = find_stop("texU", {"User:", "xU"});
  EXPECT_EQ(m.stop_at, 2u);              // "xU" matched, although "U" could also start "User:"
  m = find_stop("aaa", {"aaab", "ab"});  // overlapping partial prefixes: the longest
  EXPECT_EQ(m.hold_back, 3u);
  // No stops, and empty stop strings, never match.
  m = find_stop("anything", {});
  EXPECT_EQ(m.stop_at, npos);
  EXPECT_EQ(m.hold_back, 0u);
  m = find_stop("anything", {""});
  EXPECT_EQ(m.stop_at, npos);
  EXPECT_EQ(m.hold_back, 0u);
  m = find_stop("", {"stop"});
  EXPECT_EQ(m.stop_at, npos);
  EXPECT_EQ(m.hold_back, 0u);
  m = find_stop("stop", {"stop"});  // exactly the stop
  EXPECT_EQ(m.stop_at, 0u);
  EXPECT_EQ(m.hold_back, 4u);
}

TEST(Sampling, ValidationErrors) {
  const auto bad = [](auto set, std::vector<std::string> parts) {
    SamplingParams p;
    set(p);
    expect_error([&] { p.validate(); }, parts);
    expect_error([&] { Sampler s(p); }, parts);
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  bad([](SamplingParams& p) { p.temperature = -0.1; }, {"temperature", "-0.1"});
  bad([&](SamplingParams& p) { p.temperature = nan; }, {"temperature", "nan"});
  bad([&](SamplingParams& p) { p.temperature = inf; }, {"temperature"});
  bad([](SamplingParams& p) { p.top_k = -1; }, {"top_k", "-1"});
  bad([](SamplingParams& p) { p.top_p = 0; }, {"top_p", "(0, 1]"});
  bad([](SamplingParams& p) { p.top_p = 1.5; }, {"top_p", "1.5"});
  bad([](SamplingParams& p) { p.min_p = -0.01; }, {"min_p"});
  bad([](SamplingParams& p) { p.min_p = 1.01; }, {"min_p", "1.01"});
  bad([](SamplingParams& p) { p.repetition_penalty = 0; }, {"repetition_penalty", "> 0"});
  bad([&](SamplingParams& p) { p.presence_penalty = nan; }, {"presence_penalty"});
  bad([&](SamplingParams& p) { p.frequency_penalty = -inf; }, {"frequency_penalty"});
  bad([](SamplingParams& p) { p.penalty_last_n = -2; }, {"penalty_last_n", "-2"});
  SamplingParams ok;
  ok.validate();  // the defaults are valid
  ok.temperature = 0;
  ok.top_p = 1;
  ok.min_p = 1;
  ok.penalty_last_n = -1;
  ok.validate();

  // Bad inputs to sample().
  SamplingParams p = plain();
  p.repetition_penalty = 1.1;
  Sampler s(p);
  const std::vector<float> l = {0.0f, 1.0f};
  expect_error([&] { s.sample(l.data(), 2, {0, 2}); }, {"token id 2", "vocabulary of 2"});
  expect_error([&] { s.sample(l.data(), 2, {-1}); }, {"token id -1"});
  expect_error([&] { s.sample(l.data(), 0, {}); }, {"vocabulary size", "0"});
  const std::vector<float> with_nan = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  expect_error([&] { s.sample(with_nan.data(), 2, {}); }, {"logit of token 1", "nan"});
  const float ninf = -std::numeric_limits<float>::infinity();
  const std::vector<float> masked = {ninf, ninf};
  expect_error([&] { s.sample(masked.data(), 2, {}); }, {"every logit is -inf"});
}

TEST(Sampling, MaskedTokensAreNeverSampled) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const std::vector<float> l = {ninf, 0.0f, ninf, 0.0f, ninf};
  SamplingParams p = plain(1.0);
  p.seed = 1;
  Sampler s(p);
  for (int i = 0; i < 2000; ++i) {
    const int32_t t = s.sample(l.data(), 5, {});
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
}

TEST(Sampling, DefaultChainOnLargeVocab) {
  const size_t n = 100000;
  const auto l = noisy_logits(n, 23, 30.0f);
  SamplingParams p;  // defaults: top-k 40, top-p 0.95, min-p 0.05, T 0.8
  p.repetition_penalty = 1.1;
  p.seed = 77;
  Sampler s(p);
  std::vector<int32_t> history;
  std::vector<int32_t> order(n);
  for (int i = 0; i < 100; ++i) {
    std::vector<float> pen = l;  // the top 40 after this step's penalties
    dsmoe::apply_penalties(pen.data(), static_cast<int64_t>(n), history, p);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 40, order.end(),
                      [&](int32_t a, int32_t b) { return pen[a] > pen[b]; });
    const std::set<int32_t> top(order.begin(), order.begin() + 40);
    const int32_t t = s.sample(l.data(), static_cast<int64_t>(n), history);
    ASSERT_TRUE(top.count(t)) << t;
    history.push_back(t);
  }
}
