// exp_fast against std::exp: the vectorised exponential behind softmax, SiLU and cross-entropy.
#include <cmath>

#include <gtest/gtest.h>

#include "core/vecmath.h"

TEST(VecMath, ExpFastWithinTwoUlpOfStdExp) {
  double worst = 0;
  for (float x = -87.0f; x < 88.3f; x += 0.00137f) {
    const double want = std::exp(static_cast<double>(x));
    const double rel = std::fabs(dsmoe::exp_fast(x) - want) / want;
    worst = std::max(worst, rel);
  }
  EXPECT_LT(worst, 2.5e-7) << "worst relative error";
  EXPECT_EQ(dsmoe::exp_fast(-100.0f), 0.0f);
  EXPECT_EQ(dsmoe::exp_fast(0.0f), 1.0f);
  EXPECT_TRUE(std::isfinite(dsmoe::exp_fast(100.0f)) && dsmoe::exp_fast(100.0f) > 1e38f);
}

TEST(VecMath, ExpShiftSumMatchesScalarLoop) {
  float x[37], y[37];
  double want = 0;
  for (int i = 0; i < 37; ++i) {
    x[i] = y[i] = 0.37f * i - 5.0f;
    want += std::exp(static_cast<double>(x[i]) - 3.0);
  }
  const float sum = dsmoe::exp_shift_sum(y, 37, 3.0f);
  EXPECT_NEAR(sum, want, 1e-6 * want);
  for (int i = 0; i < 37; ++i) EXPECT_NEAR(y[i], std::exp(x[i] - 3.0), 1e-6 * std::exp(x[i] - 3.0));
}
