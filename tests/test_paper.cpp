// The paper suite's pieces that need no training: the ablation ladder's configs (same total and activated
// parameters up to the routers, the paper's expert counts and widths), the standard FFN width, the seed
// statistics, and the analyses' domain reader.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "expect_error.h"
#include "model/flops.h"
#include "paper/ablation.h"
#include "paper/stats.h"
#include "temp_dir.h"

using namespace dsmoe;
using namespace dsmoe::paper;

TEST(Ablation, StandardFfnWidthIsEightThirdsOfDRoundedToFour) {
  EXPECT_EQ(standard_ffn_width(128), 340);    // 341.3 -> 85 * 4
  EXPECT_EQ(standard_ffn_width(64), 172);     // 170.7 -> 43 * 4
  EXPECT_EQ(standard_ffn_width(1280), 3412);  // 3413.3 -> 853 * 4
  EXPECT_EQ(standard_ffn_width(3), 8);
  for (int64_t d : {32, 48, 96, 128, 200, 512}) EXPECT_EQ(standard_ffn_width(d) % 4, 0) << d;
}

TEST(Ablation, LadderHasThePapersShapesAndEqualParameters) {
  for (const AblationScale& s : {AblationScale::full(), AblationScale::quick()}) {
    const auto v = ablation_variants(s, 4096, 4094, 4095, /*with_gshard_x15=*/true);
    ASSERT_EQ(v.size(), 6u);
    const int64_t W = standard_ffn_width(s.hidden), d = s.hidden, L = s.layers;
    struct Want {
      const char* name;
      int64_t shared, routed, k, width;
    };
    const Want want[] = {
        {"gshard", 0, 16, 2, W}, {"shared", 1, 15, 1, W}, {"m2", 1, 31, 3, W / 2}, {"m4", 1, 63, 7, W / 4}};
    for (int i = 0; i < 4; ++i) {
      const ModelConfig& c = v[i].config;
      EXPECT_EQ(v[i].name, want[i].name);
      EXPECT_EQ(c.n_shared_experts, want[i].shared) << v[i].name;
      EXPECT_EQ(c.n_routed_experts, want[i].routed) << v[i].name;
      EXPECT_EQ(c.num_experts_per_tok, want[i].k) << v[i].name;
      EXPECT_EQ(c.moe_intermediate_size, want[i].width) << v[i].name;
      EXPECT_EQ(c.first_k_dense_replace, 0) << "every FFN is MoE, as in the paper's 2B models";
      EXPECT_EQ(c.n_moe_layers(), L);
      // Expert parameters are exactly 16 W-wide experts in total and 2 activated; only the routers differ.
      const ParamBreakdown p = param_breakdown(c), g = param_breakdown(v[0].config);
      EXPECT_EQ(p.ffn, g.ffn) << v[i].name;
      EXPECT_EQ(p.ffn_activated, g.ffn_activated) << v[i].name;
      EXPECT_EQ(p.total() - p.router, g.total() - g.router) << v[i].name;
      EXPECT_EQ(p.router, L * d * c.n_routed_experts);
      EXPECT_EQ(p.ffn, L * 16 * 3 * d * W);
      EXPECT_EQ(p.ffn_activated, L * 2 * 3 * d * W);
    }
    // dense: one FFN of width 2W has the ladder's activated FFN parameters; GShard x1.5 has 1.5x the experts.
    EXPECT_EQ(v[4].name, "dense");
    EXPECT_EQ(v[4].config.n_routed_experts, 0);
    EXPECT_EQ(param_breakdown(v[4].config).ffn_activated, param_breakdown(v[0].config).ffn_activated);
    EXPECT_EQ(v[5].name, "gshard-x1.5");
    EXPECT_EQ(v[5].config.moe_intermediate_size, (3 * W + 1) / 2);
    EXPECT_EQ(v[0].config.seq_aux, s.seq_aux);
    EXPECT_EQ(v[0].config.max_position_embeddings, s.seq_len);
  }
  EXPECT_EQ(ablation_variants(AblationScale::quick(), 512, -1, -1, false).size(), 5u);
}

TEST(Ablation, StatisticsOverSeeds) {
  const Summary one = summarize({2.5});
  EXPECT_DOUBLE_EQ(one.mean, 2.5);
  EXPECT_DOUBLE_EQ(one.sd, 0.0);
  EXPECT_DOUBLE_EQ(one.spread, 0.0);
  const Summary s = summarize({1.0, 2.0, 4.0});
  EXPECT_DOUBLE_EQ(s.mean, 7.0 / 3.0);
  EXPECT_NEAR(
      s.sd,
      std::sqrt(((1 - 7.0 / 3) * (1 - 7.0 / 3) + (2 - 7.0 / 3) * (2 - 7.0 / 3) + (4 - 7.0 / 3) * (4 - 7.0 / 3)) / 2.0),
      1e-12);
  EXPECT_DOUBLE_EQ(s.spread, 3.0);
  EXPECT_EQ(with_commas(16375728128), "16,375,728,128");
  EXPECT_EQ(with_commas(999), "999");
  EXPECT_EQ(with_commas(-1000), "-1,000");
  EXPECT_EQ(with_commas(0), "0");
}

class AblationErrors : public dsmoe::testing::TempDirTest {};

TEST_F(AblationErrors, BadOptionsAreOneLineErrors) {
  AblationOptions o;
  o.scale = AblationScale::quick();
  o.out_dir = file("out");
  o.data = {file("missing.txt")};
  expect_error([&] { run_ablation(o); }, {"missing.txt", "does not exist"});
  o.seeds = 0;
  expect_error([&] { run_ablation(o); }, {"--seeds"});
  o.seeds = 2;
  o.scale.hidden = 30;  // not a multiple of 4 heads
  o.scale.heads = 4;
  expect_error([&] { run_ablation(o); }, {"multiple of heads"});
  o.scale = AblationScale::quick();
  o.out_dir.clear();
  expect_error([&] { run_ablation(o); }, {"--out"});
}
