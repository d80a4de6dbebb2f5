// Decode attention (core/attend.h): the AVX2 path equals the scalar reference bit for bit for every cache type,
// head dimension (also ones that are not a multiple of 8) and length; both equal softmax(scale K q) V computed in
// double precision up to f32 rounding; bad arguments are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/attend.h"
#include "core/error.h"
#include "core/quant.h"

using namespace dsmoe;

namespace {

struct Case {
  QuantType type;
  int64_t hd, total;
};

struct Head {
  std::vector<uint8_t> k, v;
  std::vector<float> kf, vf, q;  // the cache's values widened, and the query
};

Head make_head(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Head h;
  h.kf.resize(c.total * c.hd);
  h.vf.resize(c.total * c.hd);
  h.q.resize(c.hd);
  for (float& x : h.kf) x = 2.0f * nd(rng);
  for (float& x : h.vf) x = nd(rng);
  for (float& x : h.q) x = nd(rng);
  const size_t bytes = quant_row_bytes(c.type, c.total * c.hd);
  h.k.resize(bytes);
  h.v.resize(bytes);
  quantize_row(c.type, h.kf.data(), h.k.data(), c.total * c.hd);
  quantize_row(c.type, h.vf.data(), h.v.data(), c.total * c.hd);
  dequantize_row(c.type, h.k.data(), h.kf.data(), c.total * c.hd);  // what the kernels see
  dequantize_row(c.type, h.v.data(), h.vf.data(), c.total * c.hd);
  return h;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (QuantType t : {QuantType::F32, QuantType::F16, QuantType::BF16})
    for (int64_t hd : {8, 64, 128, 72, 13, 3})
      for (int64_t total : {1, 3, 4, 5, 17, 300}) out.push_back({t, hd, total});
  return out;
}

}  // namespace

TEST(AttendDecode, AvxEqualsScalarBitForBit) {
  if (!quant_have_avx2()) GTEST_SKIP() << "no AVX2 on this CPU: only the scalar reference runs";
  uint32_t seed = 1;
  for (const Case& c : cases()) {
    const Head h = make_head(c, seed++);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    std::vector<float> s1(c.total), s2(c.total), o1(c.hd, -1.0f), o2(c.hd, -2.0f);
    attend_decode_scalar(c.type, h.k.data(), h.v.data(), c.total, h.q.data(), c.hd, scale, s1.data(), o1.data());
    attend_decode_avx2(c.type, h.k.data(), h.v.data(), c.total, h.q.data(), c.hd, scale, s2.data(), o2.data());
    ASSERT_EQ(0, std::memcmp(o1.data(), o2.data(), c.hd * sizeof(float)))
        << quant_type_name(c.type) << " hd " << c.hd << " total " << c.total;
    std::vector<float> o3(c.hd);
    attend_decode(c.type, h.k.data(), h.v.data(), c.total, h.q.data(), c.hd, scale, s2.data(), o3.data());
    ASSERT_EQ(0, std::memcmp(o1.data(), o3.data(), c.hd * sizeof(float)));
  }
}

TEST(AttendDecode, MatchesDoublePrecisionSoftmax) {
  uint32_t seed = 100;
  for (const Case& c : cases()) {
    const Head h = make_head(c, seed++);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    std::vector<double> s(c.total);
    double mx = -1e300;
    for (int64_t p = 0; p < c.total; ++p) {
      double d = 0.0;
      for (int64_t j = 0; j < c.hd; ++j) d += static_cast<double>(h.kf[p * c.hd + j]) * h.q[j];
      s[p] = d * scale;
      mx = std::max(mx, s[p]);
    }
    double sum = 0.0;
    for (double& x : s) sum += (x = std::exp(x - mx));
    std::vector<float> scores(c.total), out(c.hd);
    attend_decode(c.type, h.k.data(), h.v.data(), c.total, h.q.data(), c.hd, scale, scores.data(), out.data());
    for (int64_t j = 0; j < c.hd; ++j) {
      double want = 0.0;
      for (int64_t p = 0; p < c.total; ++p) want += s[p] / sum * h.vf[p * c.hd + j];
      ASSERT_NEAR(out[j], want, 2e-5 * (1.0 + std::fabs(want)))
          << quant_type_name(c.type) << " hd " << c.hd << " total " << c.total << " j " << j;
    }
  }
}

TEST(AttendDecode, RefusesOtherCacheTypesAndEmptyHeads) {
  std::vector<uint8_t> k(64), v(64);
  std::vector<float> q(32), s(1), o(32);
  EXPECT_THROW(attend_decode(QuantType::Q8_0, k.data(), v.data(), 1, q.data(), 32, 1.0f, s.data(), o.data()), Error);
  EXPECT_THROW(attend_decode(QuantType::F32, k.data(), v.data(), 1, q.data(), 0, 1.0f, s.data(), o.data()), Error);
}
