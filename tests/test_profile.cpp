// core/profile: the phase names nest as the scopes do, so the training benchmark's breakdown adds up. A training
// step's top-level phases are disjoint pieces of the step (their sum cannot exceed its wall time) and each nested
// phase lies inside its parent; a scope left open past its phase (as `fwd.attention` once ran to the end of the
// layer, FFN included) breaks both. These are orderings of intervals on one clock, not speed assertions.
#include "core/profile.h"

#include <chrono>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

namespace dsmoe {
namespace {

TEST(Profile, ParentIsTheLongestDottedPrefixInTheTable) {
  const std::map<std::string, double> t = {
      {"fwd.ffn", 3}, {"fwd.ffn.experts", 2}, {"fwd.ffn.experts.gemm", 1}, {"fwd.ffnx", 1}, {"loss", 1}};
  EXPECT_EQ(profile_parent(t, "fwd.ffn"), "");
  EXPECT_EQ(profile_parent(t, "fwd.ffn.experts"), "fwd.ffn");
  EXPECT_EQ(profile_parent(t, "fwd.ffn.experts.gemm"), "fwd.ffn.experts");
  EXPECT_EQ(profile_parent(t, "fwd.ffnx"), "") << "a prefix counts only at a dot";
  EXPECT_EQ(profile_parent(t, "loss"), "");
  const std::string text = profile_breakdown(t, /*step_seconds=*/6, /*steps=*/1);
  EXPECT_NE(text.find("    fwd.ffn.experts"), std::string::npos) << text;
  EXPECT_NE(text.find("(part of fwd.ffn)"), std::string::npos) << text;
  // other = 6 s - (fwd.ffn 3 + fwd.ffnx 1 + loss 1): nested phases are not counted twice.
  const size_t other = text.find("other");
  ASSERT_NE(other, std::string::npos) << text;
  EXPECT_EQ(text.substr(other).find("1000.0 ms/step"), text.substr(other).find_first_of("0123456789")) << text;
}

TEST(Profile, TrainingStepPhasesAreDisjointAndNested) {
  const ModelConfig c = testing::tiny_config();
  auto model = testing::random_model(c, 3);
  const int64_t B = 2, S = 16;
  const std::vector<int32_t> in = testing::random_tokens(B * S, c.vocab_size, 1),
                             tg = testing::random_tokens(B * S, c.vocab_size, 2);
  Activations acts;
  Gradients grads(*model);
  model_step(*model, in.data(), tg.data(), B, S, acts, &grads);  // warm-up: allocations
  profile_table().seconds.clear();
  profile_enable(true);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) model_step(*model, in.data(), tg.data(), B, S, acts, &grads);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  profile_enable(false);
  const std::map<std::string, double> t = profile_table().seconds;
  profile_table().seconds.clear();

  for (const char* phase : {"fwd.attention", "fwd.ffn", "fwd.ffn.experts", "fwd.head", "loss", "bwd.head", "bwd.ffn",
                            "bwd.ffn.experts", "bwd.attention", "bwd.embedding"})
    EXPECT_TRUE(t.count(phase)) << "no phase " << phase;
  double top_level = 0;
  for (const auto& [name, sec] : t) {
    const std::string parent = profile_parent(t, name);
    if (parent.empty()) {
      top_level += sec;
    } else {
      EXPECT_LE(sec, t.at(parent)) << name << " lies inside " << parent;
    }
  }
  EXPECT_LE(top_level, wall) << "the top-level phases overlap: a scope runs past its phase\n"
                             << profile_breakdown(t, wall / 3, 3);
}

}  // namespace
}  // namespace dsmoe
