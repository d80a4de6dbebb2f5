// Packed Q8_0/Q4_0 rows (core/qpack.h): pack/unpack are inverse permutations of the stored bytes, and every kernel
// path (scalar reference, AVX2, AVX512-VNNI where the CPU has it) gives exactly the bits quant_dot_q8act_scalar
// gives on the stored row, for 1..16 activation rows at once and rows with a partial group of blocks.
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/qpack.h"
#include "core/quant.h"

using namespace dsmoe;

namespace {
struct Case {
  std::vector<uint8_t> stored, packed;  // one weight row
  std::vector<int8_t> xq, xt;           // nx activation rows (natural, transposed)
  std::vector<float> xd;
  std::vector<int32_t> xsum;
};

Case make_case(QuantType t, int64_t n, int64_t nx, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> w(n), x(n * nx);
  for (float& v : w) v = g(rng);
  for (float& v : x) v = g(rng) * 3.0f;
  if (seed % 3 == 0) w[seed % n] = 40.0f;  // an outlier: one block with a large scale
  Case c;
  c.stored.resize(quant_row_bytes(t, n));
  quantize_row(t, w.data(), c.stored.data(), n);
  if (t == QuantType::Q8_0 && seed % 2 == 0) c.stored[2] = 0x80;  // -128: a value ggml never writes, files may hold
  c.packed.resize(c.stored.size());
  qpack_row(t, c.stored.data(), c.packed.data(), n);
  c.xq.resize(n * nx);
  c.xd.resize(n * nx / 32);
  c.xsum.resize(n * nx / 32);
  c.xt.resize(n * nx);
  for (int64_t i = 0; i < nx; ++i) {
    quantize_act_q8(x.data() + i * n, c.xq.data() + i * n, c.xd.data() + i * n / 32, c.xsum.data() + i * n / 32, n);
    qpack_act(c.xq.data() + i * n, c.xt.data() + i * n, n);
  }
  return c;
}
}  // namespace

TEST(QPack, UnpackInvertsPack) {
  for (QuantType t : {QuantType::Q8_0, QuantType::Q4_0})
    for (int64_t n : {32, 256, 288, 1408, 2048}) {
      const Case c = make_case(t, n, 1, static_cast<uint32_t>(n));
      std::vector<uint8_t> back(c.stored.size());
      qunpack_row(t, c.packed.data(), back.data(), n);
      EXPECT_EQ(back, c.stored) << quant_type_name(t) << " n=" << n;
      if (n >= 256) {
        EXPECT_NE(c.packed, c.stored) << "a whole group must be permuted";
      }
    }
}

TEST(QPack, EveryPathEqualsTheStoredReferenceBitForBit) {
  int checked = 0;
  for (QuantType t : {QuantType::Q8_0, QuantType::Q4_0})
    for (int64_t n : {32, 256, 288, 1408, 2048, 5632})
      for (int64_t nx : {1, 2, 3, 4, 5, 7, 12, 16})
        for (uint32_t seed = 0; seed < 3; ++seed) {
          const Case c = make_case(t, n, nx, seed * 131 + static_cast<uint32_t>(n + nx));
          std::vector<float> want(nx), scalar(nx), avx2(nx), best(nx);
          for (int64_t i = 0; i < nx; ++i)
            want[i] = quant_dot_q8act_scalar(t, c.stored.data(), c.xq.data() + i * n, c.xd.data() + i * n / 32,
                                             c.xsum.data() + i * n / 32, n);
          qpack_dot_rows_scalar(t, c.packed.data(), c.xt.data(), c.xd.data(), c.xsum.data(), n, nx, scalar.data());
          qpack_dot_rows_avx2(t, c.packed.data(), c.xt.data(), c.xd.data(), c.xsum.data(), n, nx, avx2.data());
          qpack_dot_rows(t, c.packed.data(), c.xt.data(), c.xd.data(), c.xsum.data(), n, nx, best.data());
          ASSERT_EQ(std::memcmp(want.data(), scalar.data(), nx * 4), 0) << quant_type_name(t) << " n=" << n;
          ASSERT_EQ(std::memcmp(want.data(), avx2.data(), nx * 4), 0)
              << quant_type_name(t) << " n=" << n << " nx=" << nx;
          ASSERT_EQ(std::memcmp(want.data(), best.data(), nx * 4), 0)
              << quant_type_name(t) << " n=" << n << " nx=" << nx;
          if (nx == 1) {  // the decode path: one row of x, rows [r0, r1) of a packed matrix
            float y = 0.0f;
            qpack_matvec(t, c.packed.data(), c.packed.size(), 0, 1, c.xt.data(), c.xd.data(), c.xsum.data(), n, &y);
            ASSERT_EQ(std::memcmp(want.data(), &y, 4), 0) << quant_type_name(t) << " matvec n=" << n;
          }
          ++checked;
        }
  EXPECT_EQ(checked, 2 * 6 * 8 * 3);
  std::printf("integer dot kernel here: %s\n", quant_dot_q8act_kernel());
}

TEST(QPack, RejectsOtherTypesAndWidths) {
  std::vector<uint8_t> a(64), b(64);
  EXPECT_THROW(qpack_row(QuantType::F16, a.data(), b.data(), 32), std::exception);
  EXPECT_THROW(qpack_row(QuantType::Q8_0, a.data(), b.data(), 48), std::exception);
}
