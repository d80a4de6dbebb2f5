// Evaluation-time routing options (RoutingOptions, model/routing.h; the paper's §4.5 analyses): no shared experts,
// masking each token's top experts, another number of activated experts.
//  - against the PyTorch reference: fixtures written by tools/reference/make_fixtures.py under fixtures/routing/
//    (float64 from the same F32 weights; logits within test_fixtures' 1e-4, expert counts exactly);
//  - the fast path against the scalar reference forward under the same options;
//  - properties: the default options are the trained routing bit for bit, masking is a shift of the ranks,
//    every expert at once ignores the renormalisation, invalid or training use is refused.
//
// Dimension legend: B sequences, S positions, T = B*S tokens, V vocabulary, E routed experts, k experts per token,
// m masked top experts per token.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "check.h"
#include "expect_error.h"
#include "io/safetensors.h"
#include "model/checkpoint.h"
#include "model/reference.h"
#include "model/routing.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace dsmoe;
using namespace dsmoe::testing;

namespace {

constexpr double kTol = 1e-4;     // the PyTorch fixtures' tolerance (test_fixtures.cpp)
constexpr double kRefTol = 1e-5;  // fast path vs scalar reference (test_properties.cpp)

fs::path routing_root() {
  const char* env = std::getenv("DSMOE_FIXTURES");
  return fs::path(env ? env : "fixtures") / "routing";
}

std::vector<std::string> routing_fixture_names() {
  std::vector<std::string> names;
  if (!fs::is_directory(routing_root())) return names;
  for (const auto& entry : fs::directory_iterator(routing_root()))
    if (fs::exists(entry.path() / "routing.safetensors")) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

RoutingOptions options(bool disable_shared, int64_t top_k, int64_t mask_top) {
  RoutingOptions o;
  o.disable_shared = disable_shared;
  o.top_k = top_k;
  o.mask_top = mask_top;
  return o;
}

// Eval forward under `o`; the activations stay in `acts` (plans, counts).
std::vector<float> logits_with(const Model& m, const std::vector<int32_t>& tokens, int64_t B, int64_t S,
                               const RoutingOptions& o, Activations& acts) {
  acts.routing = o;
  model_forward(m, tokens.data(), B, S, acts, false);
  return std::vector<float>(acts.logits.data(), acts.logits.data() + B * S * m.config.vocab_size);
}

std::vector<float> logits_with(const Model& m, const std::vector<int32_t>& tokens, int64_t B, int64_t S,
                               const RoutingOptions& o) {
  Activations acts;
  return logits_with(m, tokens, B, S, o, acts);
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// PyTorch fixtures: every option set of every routing fixture.

class RoutingFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(RoutingFixture, MatchesPyTorchAndScalarReference) {
  const fs::path dir = routing_root() / GetParam();
  auto model = model_load((dir / "model").string());
  const ModelConfig& c = model->config;
  io::SafetensorsArchive fx = io::SafetensorsArchive::open((dir / "routing.safetensors").string());
  nlohmann::json meta = nlohmann::json::parse(std::ifstream(dir / "routing.json"));
  const int64_t B = meta.at("batch"), S = meta.at("seq_len"), V = c.vocab_size, E = c.n_routed_experts;
  const std::vector<int64_t> moe_layers = meta.at("moe_layers").get<std::vector<int64_t>>();
  std::vector<int32_t> inputs = fx.read_i32("input_ids");
  ASSERT_EQ(static_cast<int64_t>(inputs.size()), B * S);
  ASSERT_GE(meta.at("option_sets").size(), 5u);

  const std::vector<float> want_default = fx.read_f32("logits.default");
  for (const nlohmann::json& set : meta.at("option_sets")) {
    const std::string name = set.at("name");
    SCOPED_TRACE("option set " + name);
    const RoutingOptions o = options(set.at("disable_shared"), set.at("top_k"), set.at("mask_top"));
    Activations acts;
    const std::vector<float> got = logits_with(*model, inputs, B, S, o, acts);
    const std::vector<float> want = fx.read_f32("logits." + name);
    ASSERT_EQ(static_cast<int64_t>(want.size()), B * S * V);
    DSMOE_EXPECT_CLOSE("logits." + name, got.data(), want.data(), B * S * V, kTol);

    // Expert usage of the experts actually chosen, per MoE layer, exactly as PyTorch counted it.
    const std::vector<int32_t> counts = fx.read_i32("selected_count." + name);  // [layers, E]
    ASSERT_EQ(counts.size(), moe_layers.size() * E);
    for (size_t i = 0; i < moe_layers.size(); ++i) {
      const RoutingPlan& plan = acts.layers[moe_layers[i]].moe.plan;
      EXPECT_EQ(plan.k, o.experts_per_token(c));
      for (int64_t e = 0; e < E; ++e)
        EXPECT_EQ(plan.selected_count[e], counts[i * E + e]) << "layer " << moe_layers[i] << " expert " << e;
    }

    const std::vector<float> ref = reference_forward(*model, inputs.data(), B, S, o);
    DSMOE_EXPECT_CLOSE("fast vs scalar reference, " + name, got.data(), ref.data(), B * S * V, kRefTol);

    // Each non-default set must change the model's output, or the comparison above would not test the option.
    if (name != "default") {
      EXPECT_GT(compare(want.data(), want_default.data(), B * S * V).rel, 1e-3) << name << " routes as the default";
    }
    std::printf("%s/%s: logits rel err %.2e\n", GetParam().c_str(), name.c_str(),
                compare(got.data(), want.data(), B * S * V).rel);
  }
}

INSTANTIATE_TEST_SUITE_P(PyTorch, RoutingFixture, ::testing::ValuesIn(routing_fixture_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Fails loudly when the fixtures were not generated, instead of silently running zero cases.
TEST(RoutingFixtureSet, Present) {
  EXPECT_GE(routing_fixture_names().size(), 2u) << "expected >= 2 routing fixtures under " << routing_root()
                                                << " (run tools/reference/make_fixtures.py --out DIR)";
}

// ---------------------------------------------------------------------------------------------------------------
// Fast path == scalar reference under options, on random models (capacity, norm_topk_prob, no shared experts).

class OptionsFastVsReference : public ::testing::TestWithParam<int> {};
TEST_P(OptionsFastVsReference, Logits) {
  ModelConfig c = tiny_config();  // E = 6, k = 2, 1 shared, layer 0 dense
  RoutingOptions o;
  switch (GetParam()) {
    case 0: o = options(false, 0, 1); break;
    case 1: o = options(true, 3, 0); break;
    case 2:
      c.norm_topk_prob = true;
      o = options(false, 3, 2);
      break;
    case 3:
      c.capacity_factor = 0.7;
      o = options(false, 3, 1);
      break;  // C = ceil(0.7 T 3 / E) follows k
    case 4:
      c.n_shared_experts = 2;
      c.first_k_dense_replace = 0;
      o = options(true, 1, 4);
      break;
    case 5:
      c.norm_topk_prob = true;
      o = options(false, 6, 0);
      break;
  }
  c.validate();
  auto m = random_model(c, 70 + GetParam());
  const int64_t B = 3, S = 7;
  std::vector<int32_t> tokens = random_tokens(B * S, c.vocab_size, 71);
  std::vector<float> fast = logits_with(*m, tokens, B, S, o), ref = reference_forward(*m, tokens.data(), B, S, o);
  DSMOE_EXPECT_CLOSE("fast vs scalar reference logits", fast.data(), ref.data(), B * S * c.vocab_size, kRefTol);
  // The options matter on these models (else the comparison would not test them).
  std::vector<float> plain = logits_with(*m, tokens, B, S, RoutingOptions{});
  EXPECT_GT(compare(fast.data(), plain.data(), B * S * c.vocab_size).rel, 1e-4);
}
INSTANTIATE_TEST_SUITE_P(Options, OptionsFastVsReference, ::testing::Values(0, 1, 2, 3, 4, 5));

// ---------------------------------------------------------------------------------------------------------------
// Properties.

// Options spelling out the trained routing (top_k = the config's k, mask 0, shared on) route bit for bit as the
// default, with and without renormalisation and capacity.
TEST(RoutingOptionsProperties, ExplicitDefaultsAreBitIdentical) {
  for (int variant = 0; variant < 3; ++variant) {
    ModelConfig c = tiny_config();
    if (variant == 1) c.norm_topk_prob = true;
    if (variant == 2) c.capacity_factor = 0.6;
    auto m = random_model(c, 80 + variant);
    const int64_t B = 2, S = 9;
    std::vector<int32_t> tokens = random_tokens(B * S, c.vocab_size, 81);
    Activations a0, a1;
    const std::vector<float> plain = logits_with(*m, tokens, B, S, RoutingOptions{}, a0);
    const std::vector<float> spelled = logits_with(*m, tokens, B, S, options(false, c.num_experts_per_tok, 0), a1);
    EXPECT_TRUE(bit_equal(plain, spelled)) << "variant " << variant;
    const RoutingPlan &p0 = a0.layers[1].moe.plan, &p1 = a1.layers[1].moe.plan;
    EXPECT_EQ(p0.topk_expert, p1.topk_expert);
    EXPECT_EQ(p0.topk_weight, p1.topk_weight);
    EXPECT_EQ(p0.slot_row, p1.slot_row);
    EXPECT_EQ(p0.selected_count, p1.selected_count);
  }
}

// Without shared experts, disable_shared has nothing to remove; with them it changes the output.
TEST(RoutingOptionsProperties, DisableSharedWithoutSharedExpertsIsIdentical) {
  ModelConfig c = tiny_config();
  c.n_shared_experts = 0;
  auto m = random_model(c, 90);
  const int64_t B = 2, S = 8;
  std::vector<int32_t> tokens = random_tokens(B * S, c.vocab_size, 91);
  EXPECT_TRUE(
      bit_equal(logits_with(*m, tokens, B, S, RoutingOptions{}), logits_with(*m, tokens, B, S, options(true, 0, 0))));

  ModelConfig cs = tiny_config();
  auto ms = random_model(cs, 92);
  const std::vector<float> a = logits_with(*ms, tokens, B, S, RoutingOptions{});
  const std::vector<float> b = logits_with(*ms, tokens, B, S, options(true, 0, 0));
  EXPECT_GT(compare(b.data(), a.data(), B * S * cs.vocab_size).rel, 1e-3);
}

// top_k = E: every token uses every expert with its full softmax probability, whose sum is 1, so renormalising
// changes nothing but rounding; every expert is counted once per token.
TEST(RoutingOptionsProperties, AllExpertsMakesRenormalisationMoot) {
  ModelConfig c = tiny_config();
  auto m_raw = random_model(c, 100);
  c.norm_topk_prob = true;
  auto m_norm = random_model(c, 100);  // same weights: init depends on the seed and shapes only
  const int64_t B = 2, S = 8, T = B * S, E = c.n_routed_experts;
  std::vector<int32_t> tokens = random_tokens(T, c.vocab_size, 101);
  const RoutingOptions all = options(false, E, 0);
  Activations acts;
  const std::vector<float> raw = logits_with(*m_raw, tokens, B, S, all, acts);
  const std::vector<float> norm = logits_with(*m_norm, tokens, B, S, all);
  DSMOE_EXPECT_CLOSE("top_k = E: norm_topk_prob on vs off", norm.data(), raw.data(), T * c.vocab_size, 1e-6);
  const RoutingPlan& plan = acts.layers[1].moe.plan;
  for (int64_t e = 0; e < E; ++e) EXPECT_EQ(plan.selected_count[e], T);
  for (int64_t t = 0; t < T; ++t) {
    double sum = 0;
    for (int64_t j = 0; j < E; ++j) sum += plan.topk_weight[t * E + j];
    EXPECT_NEAR(sum, 1.0, 1e-5) << "token " << t;
  }
  // ... and it differs from the trained top-2 (the test above would pass trivially otherwise).
  const std::vector<float> top2 = logits_with(*m_raw, tokens, B, S, RoutingOptions{});
  EXPECT_GT(compare(raw.data(), top2.data(), T * c.vocab_size).rel, 1e-4);
}

// Masking m then taking k is ranks m .. m+k-1 of the plain top-(m+k), weights the unmasked probabilities; ties go
// to the lower index in both (one order). An explicit tie case pins the direction.
TEST(RoutingOptionsProperties, MaskIsARankShiftOfTheTopK) {
  const int64_t T = 40, E = 8;
  std::vector<float> probs = random_vector(T * E, 1.0f, 110);
  for (float& p : probs) p = std::fabs(p);
  for (int64_t e = 0; e < E; ++e) probs[3 * E + e] = 0.125f;  // token 3: all tied
  for (int64_t m = 0; m <= 3; ++m)
    for (int64_t k = 1; m + k <= E; k += 2) {
      const RoutingPlan masked = routing_plan_build(probs.data(), T, E, k, false, 0.0, nullptr, m);
      const RoutingPlan wide = routing_plan_build(probs.data(), T, E, m + k, false, 0.0, nullptr, 0);
      std::vector<int64_t> hist(E, 0);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < k; ++j) {
          const int32_t e = masked.topk_expert[t * k + j];
          EXPECT_EQ(e, wide.topk_expert[t * (m + k) + m + j]) << "m " << m << " k " << k << " token " << t;
          EXPECT_EQ(masked.topk_weight[t * k + j], probs[t * E + e]);
          // No chosen expert is more probable than a masked one.
          for (int64_t i = 0; i < m; ++i) EXPECT_GE(probs[t * E + wide.topk_expert[t * (m + k) + i]], probs[t * E + e]);
          hist[e]++;
        }
      EXPECT_EQ(masked.selected_count, hist);
      EXPECT_EQ(masked.rows(), T * k);
    }
  // Tied token: order 0, 1, 2, ...: mask 2 -> experts 2, 3 chosen.
  const RoutingPlan tied = routing_plan_build(probs.data(), T, E, 2, false, 0.0, nullptr, 2);
  EXPECT_EQ(tied.topk_expert[3 * 2 + 0], 2);
  EXPECT_EQ(tied.topk_expert[3 * 2 + 1], 3);
}

// Renormalisation runs over the chosen experts only: with norm_topk_prob each token's chosen weights sum to 1.
TEST(RoutingOptionsProperties, RenormalisationOverTheChosenOnly) {
  const int64_t T = 10, E = 6;
  std::vector<float> probs = random_vector(T * E, 1.0f, 120);
  for (float& p : probs) p = std::fabs(p) + 0.01f;
  const RoutingPlan plan = routing_plan_build(probs.data(), T, E, 2, true, 0.0, nullptr, 3);
  for (int64_t t = 0; t < T; ++t) {
    const float p0 = probs[t * E + plan.topk_expert[t * 2]], p1 = probs[t * E + plan.topk_expert[t * 2 + 1]];
    EXPECT_NEAR(plan.topk_weight[t * 2], p0 / (p0 + p1), 1e-6);
    EXPECT_NEAR(plan.topk_weight[t * 2] + plan.topk_weight[t * 2 + 1], 1.0, 1e-6);
  }
}

// After an eval forward under options, each MoE layer's selected_count counts the experts actually chosen (T*k in
// all, never a token's masked experts); what the analysis command reads.
TEST(RoutingOptionsProperties, SelectedCountCountsTheChosenExperts) {
  ModelConfig c = tiny_config();
  c.num_hidden_layers = 3;
  c.validate();
  auto m = random_model(c, 130);
  const int64_t B = 2, S = 8, T = B * S, E = c.n_routed_experts;
  std::vector<int32_t> tokens = random_tokens(T, c.vocab_size, 131);
  Activations acts;
  logits_with(*m, tokens, B, S, options(true, 3, 1), acts);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const RoutingPlan& plan = acts.layers[l].moe.plan;
    if (!c.is_moe_layer(l)) {
      EXPECT_TRUE(plan.selected_count.empty()) << "dense layer " << l;
      continue;
    }
    ASSERT_EQ(plan.k, 3);
    std::vector<int64_t> hist(E, 0);
    const float* probs = acts.layers[l].moe.probs.data();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t best = std::max_element(probs + t * E, probs + (t + 1) * E) - (probs + t * E);
      for (int64_t j = 0; j < 3; ++j) {
        EXPECT_NE(plan.topk_expert[t * 3 + j], best) << "layer " << l << " token " << t << " chose its masked expert";
        hist[plan.topk_expert[t * 3 + j]]++;
      }
    }
    EXPECT_EQ(plan.selected_count, hist) << "layer " << l;
  }
}

TEST(RoutingOptionsProperties, InvalidOptionsAreRefused) {
  ModelConfig c = tiny_config();  // E = 6, k = 2
  auto m = random_model(c, 140);
  const int64_t B = 1, S = 4;
  std::vector<int32_t> tokens = random_tokens(B * S, c.vocab_size, 141);
  auto eval = [&](RoutingOptions o) { return [&m, &tokens, o] { logits_with(*m, tokens, B, S, o); }; };
  expect_error(eval(options(false, 2, 5)), {"invalid routing options", "top_k 2", "mask_top 5", "6"});
  expect_error(eval(options(false, 0, 5)), {"invalid routing options", "mask_top 5"});  // config k = 2: 5 + 2 > 6
  expect_error(eval(options(false, 7, 0)), {"invalid routing options", "top_k 7"});
  expect_error(eval(options(false, -1, 0)), {"invalid routing options", "top_k -1"});
  expect_error(eval(options(false, 0, -1)), {"invalid routing options", "mask_top -1"});
  expect_error([&] { reference_forward(*m, tokens.data(), B, S, options(false, 3, 4)); }, {"invalid routing options"});
  // The largest valid ones are accepted.
  EXPECT_NO_THROW(logits_with(*m, tokens, B, S, options(true, 1, 5)));
  EXPECT_NO_THROW(logits_with(*m, tokens, B, S, options(false, 6, 0)));

  ModelConfig dense = tiny_config();
  dense.n_routed_experts = 0;
  dense.n_shared_experts = 0;
  auto md = random_model(dense, 142);
  expect_error([&] { logits_with(*md, tokens, B, S, options(true, 0, 0)); }, {"need a MoE model"});
  EXPECT_NO_THROW(logits_with(*md, tokens, B, S, RoutingOptions{}));
}

// Options are evaluation-only: a training forward, or gradients after an options forward, are refused (the balance
// losses and the backward pass are those of the trained routing) -- even options that spell out the trained k.
TEST(RoutingOptionsProperties, TrainingWithOptionsIsRefused) {
  ModelConfig c = tiny_config();
  auto m = random_model(c, 150);
  const int64_t B = 1, S = 4;
  std::vector<int32_t> tokens = random_tokens(B * S, c.vocab_size, 151),
                       targets = random_tokens(B * S, c.vocab_size, 152);
  for (const RoutingOptions& o :
       {options(false, 0, 1), options(true, 0, 0), options(false, c.num_experts_per_tok, 0)}) {
    Activations acts;
    acts.routing = o;
    expect_error([&] { model_forward(*m, tokens.data(), B, S, acts, true); }, {"evaluation-only"});
    Gradients grads(*m);
    expect_error([&] { model_step(*m, tokens.data(), targets.data(), B, S, acts, &grads); }, {"evaluation-only"});
    model_forward(*m, tokens.data(), B, S, acts, false);
    expect_error([&] { model_loss_backward(*m, tokens.data(), targets.data(), B, S, acts, &grads); },
                 {"evaluation-only"});
    EXPECT_NO_THROW(model_loss_backward(*m, tokens.data(), targets.data(), B, S, acts, nullptr));  // eval loss: fine
  }
}
