// Integer dot kernels of the block types beyond Q8_0/Q4_0 (core/qdot.h): every path (scalar reference, AVX2,
// AVX512-VNNI, the dispatching entry points) returns the same bits, and the result is the dot product of the
// dequantized row (dequantize_row) with the dequantized activations (xq * xd) up to f32 rounding.
//
// Rows are random bytes with finite random fp16 scales (every bit pattern of the integer fields is a valid block),
// activations random with block scales spread over 2^-6..2^6 and some all-zero blocks.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/qdot.h"
#include "core/quant.h"

using namespace dsmoe;

namespace {

constexpr QuantType kTypes[] = {QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::IQ4_NL, QuantType::Q2_K,
                                QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K};
constexpr int64_t kRows = 300;

bool have_vnni() {
  return quant_have_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
}

// Byte offsets of the fp16 fields (d, and dmin / m) in a block (ggml-common.h).
std::vector<size_t> half_offsets(QuantType t) {
  switch (t) {
    case QuantType::Q4_1:
    case QuantType::Q5_1:
    case QuantType::Q4_K:
    case QuantType::Q5_K: return {0, 2};
    case QuantType::Q5_0:
    case QuantType::IQ4_NL: return {0};
    case QuantType::Q2_K: return {80, 82};
    case QuantType::Q3_K: return {108};
    case QuantType::Q6_K: return {208};
    default: return {};
  }
}

// A finite fp16 of random sign and mantissa, magnitude 2^-5 .. 2^6.
uint16_t random_half(std::mt19937_64& rng) {
  const uint64_t r = rng();
  const uint16_t exponent = static_cast<uint16_t>(10 + r % 11);
  return static_cast<uint16_t>(((r >> 8) & 0x8000u) | (exponent << 10) | ((r >> 20) & 0x3ffu));
}

// rows x n weights of type t: random bytes, fp16 fields finite.
std::vector<uint8_t> random_rows(QuantType t, int64_t rows, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> data(quant_row_bytes(t, n) * rows);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
  const size_t bb = quant_block_bytes(t);
  for (size_t block = 0; block < data.size(); block += bb)
    for (size_t off : half_offsets(t)) {
      const uint16_t h = random_half(rng);
      std::memcpy(&data[block + off], &h, 2);
    }
  return data;
}

struct Activations {
  std::vector<int8_t> xq;
  std::vector<float> xd;
  std::vector<int32_t> xsum;
  std::vector<double> x;  // xq * xd: what the kernels multiply with
};

Activations quantized_activations(const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  Activations a{std::vector<int8_t>(n), std::vector<float>(n / 32), std::vector<int32_t>(n / 32),
                std::vector<double>(n)};
  quantize_act_q8(x.data(), a.xq.data(), a.xd.data(), a.xsum.data(), n);
  for (int64_t i = 0; i < n; ++i) a.x[i] = static_cast<double>(a.xq[i]) * a.xd[i / 32];
  return a;
}

Activations random_activations(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> x(n);
  for (int64_t b = 0; b < n / 32; ++b) {
    const float scale = rng() % 16 == 0 ? 0.0f : std::ldexp(1.0f, static_cast<int>(rng() % 13) - 6);
    for (int j = 0; j < 32; ++j) x[b * 32 + j] = scale * normal(rng);
  }
  return quantized_activations(x);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

// Every path on one row: all must return the bits of the scalar reference (VNNI/AVX2 only where the CPU has them).
// Returns the scalar result.
float check_paths(QuantType t, const uint8_t* row, const Activations& a, int64_t n, const std::string& where) {
  const int8_t* xq = a.xq.data();
  const float* xd = a.xd.data();
  const int32_t* xs = a.xsum.data();
  const float want = qdot_q8act_scalar(t, row, xq, xd, xs, n);
  const float avx2 = qdot_q8act_avx2(t, row, xq, xd, xs, n);
  const float vnni = qdot_q8act_vnni(t, row, xq, xd, xs, n);
  const float best = qdot_q8act(t, row, xq, xd, xs, n);
  const float via_kernel = qdot_q8act_kernel(t)(row, xq, xd, xs, n);
  const float via_quant = quant_dot_q8act(t, row, xq, xd, xs, n);
  const float via_quant_scalar = quant_dot_q8act_scalar(t, row, xq, xd, xs, n);
  EXPECT_TRUE(same_bits(want, avx2)) << where << " AVX2: " << want << " vs " << avx2;
  EXPECT_TRUE(same_bits(want, vnni)) << where << " VNNI: " << want << " vs " << vnni;
  EXPECT_TRUE(same_bits(want, best)) << where << " qdot_q8act: " << want << " vs " << best;
  EXPECT_TRUE(same_bits(want, via_kernel)) << where << " qdot_q8act_kernel: " << want << " vs " << via_kernel;
  EXPECT_TRUE(same_bits(want, via_quant)) << where << " quant_dot_q8act: " << want << " vs " << via_quant;
  EXPECT_TRUE(same_bits(want, via_quant_scalar))
      << where << " quant_dot_q8act_scalar: " << want << " vs " << via_quant_scalar;
  return want;
}

// dequantize_row for the K-quant family is written by another module; until it exists the reference comparison is
// skipped loudly (the bit-identity checks still run).
bool dequantize_available(QuantType t) {
  std::vector<float> y(quant_block_size(t));
  const std::vector<uint8_t> block = random_rows(t, 1, quant_block_size(t), 1);
  try {
    dequantize_row(t, block.data(), y.data(), quant_block_size(t));
  } catch (const Error& e) {
    std::printf("*** SKIPPING the dequantized reference for %s: %s\n", quant_type_name(t), e.what());
    return false;
  }
  return true;
}

std::vector<int64_t> sizes_for(QuantType t) {
  if (quant_block_size(t) == 32) return {256, 512, 1408, 2048, 5632};
  return {256, 512, 2048, 5632};
}
// Plus every count of trailing blocks after the groups of 8 the SIMD kernels take at a time.
std::vector<int64_t> bit_identity_sizes(QuantType t) {
  std::vector<int64_t> sizes = sizes_for(t);
  if (quant_block_size(t) == 32)
    for (int64_t blocks : {1, 2, 3, 4, 5, 6, 7, 9, 15, 23}) sizes.push_back(32 * blocks);
  return sizes;
}

void announce_paths() {
  static bool once = [] {
    std::printf("qdot path here: %s\n", qdot_q8act_path());
    if (!quant_have_avx2())
      std::printf("*** CPU lacks AVX2/FMA/F16C: the AVX2 and VNNI kernels are NOT tested\n");
    else if (!have_vnni())
      std::printf("*** CPU lacks AVX512-VNNI/BW: the VNNI kernels are NOT tested\n");
    return true;
  }();
  (void)once;
}

}  // namespace

TEST(QDot, AllPathsBitIdentical) {
  announce_paths();
  for (QuantType t : kTypes)
    for (int64_t n : bit_identity_sizes(t)) {
      const std::vector<uint8_t> rows = random_rows(t, kRows, n, 100 + n + static_cast<uint64_t>(t));
      const Activations a = random_activations(n, 200 + n);
      const size_t rb = quant_row_bytes(t, n);
      for (int64_t r = 0; r < kRows; ++r)
        check_paths(t, rows.data() + r * rb, a, n, fmt::format("{} n={} row {}", quant_type_name(t), n, r));
      if (::testing::Test::HasFailure()) return;  // one type's flood of messages is enough
    }
}

// |result - dot(dequantized row, xq*xd)| <= 1e-6 * sum |w_i x_i|: the integer sums are exact, so what remains is
// f32 rounding (scale products, the n/256 (or n/32 / 8) FMA steps per lane, the final sum, the dequantizer's own
// rounding), a few dozen ulps at most.
TEST(QDot, MatchesDequantizedReference) {
  for (QuantType t : kTypes) {
    if (!dequantize_available(t)) continue;
    for (int64_t n : sizes_for(t)) {
      const std::vector<uint8_t> rows = random_rows(t, kRows, n, 300 + n + static_cast<uint64_t>(t));
      const Activations a = random_activations(n, 400 + n);
      const size_t rb = quant_row_bytes(t, n);
      std::vector<float> w(n);
      double worst = 0;
      for (int64_t r = 0; r < kRows; ++r) {
        const float got = qdot_q8act_scalar(t, rows.data() + r * rb, a.xq.data(), a.xd.data(), a.xsum.data(), n);
        dequantize_row(t, rows.data() + r * rb, w.data(), n);
        double want = 0, magnitude = 0;
        for (int64_t i = 0; i < n; ++i) {
          want += w[i] * a.x[i];
          magnitude += std::fabs(w[i] * a.x[i]);
        }
        const double err = std::fabs(got - want) / (magnitude + 1e-30);
        worst = std::max(worst, err);
        ASSERT_LE(err, 1e-6) << quant_type_name(t) << " n=" << n << " row " << r << ": " << got << " vs " << want;
      }
      std::printf("%-6s n=%-5lld worst relative error %.2e\n", quant_type_name(t), static_cast<long long>(n), worst);
    }
  }
}

// Saturation corners of the 8-bit products: all-ones and alternating bytes (largest unsigned forms, largest scales)
// against activations at +-127.
TEST(QDot, ExtremeBlocksAndActivations) {
  announce_paths();
  const int64_t n = 512;
  std::vector<std::vector<float>> xs;
  xs.push_back(std::vector<float>(n, 1.0f));  // every xq = 127
  xs.push_back(std::vector<float>(n, -1.0f));
  std::vector<float> alternating(n);
  for (int64_t i = 0; i < n; ++i) alternating[i] = i % 2 ? 1.0f : -1.0f;
  xs.push_back(alternating);
  for (QuantType t : kTypes)
    for (uint8_t pattern : {uint8_t{0xff}, uint8_t{0x00}, uint8_t{0xaa}, uint8_t{0x55}, uint8_t{0x80}, uint8_t{0x7f}}) {
      std::vector<uint8_t> row(quant_row_bytes(t, n), pattern);
      const size_t bb = quant_block_bytes(t);
      for (size_t block = 0; block < row.size(); block += bb)
        for (size_t off : half_offsets(t)) {
          const uint16_t one = 0x3c00;  // 1.0
          std::memcpy(&row[block + off], &one, 2);
        }
      for (size_t k = 0; k < xs.size(); ++k) {
        const Activations a = quantized_activations(xs[k]);
        const float got = check_paths(t, row.data(), a, n,
                                      fmt::format("{} bytes {:#x} activations {}", quant_type_name(t), pattern, k));
        if (!dequantize_available(t)) continue;
        std::vector<float> w(n);
        dequantize_row(t, row.data(), w.data(), n);
        double want = 0, magnitude = 0;
        for (int64_t i = 0; i < n; ++i) want += w[i] * a.x[i], magnitude += std::fabs(w[i] * a.x[i]);
        EXPECT_LE(std::fabs(got - want), 1e-6 * magnitude) << quant_type_name(t) << " bytes " << int(pattern);
      }
    }
}

TEST(QDot, RejectsBadArguments) {
  std::vector<uint8_t> row(4096);
  std::vector<int8_t> xq(512);
  std::vector<float> xd(16);
  std::vector<int32_t> xs(16);
  EXPECT_THROW(qdot_q8act(QuantType::Q4_K, row.data(), xq.data(), xd.data(), xs.data(), 288), Error);
  EXPECT_THROW(qdot_q8act_scalar(QuantType::Q5_0, row.data(), xq.data(), xd.data(), xs.data(), 40), Error);
  EXPECT_THROW(qdot_q8act(QuantType::Q8_0, row.data(), xq.data(), xd.data(), xs.data(), 32), Error);
  EXPECT_THROW(qdot_q8act_kernel(QuantType::F32), Error);
  for (QuantType t : kTypes) EXPECT_TRUE(qdot_supported(t)) << quant_type_name(t);
  EXPECT_FALSE(qdot_supported(QuantType::Q8_0));
  EXPECT_FALSE(qdot_supported(QuantType::F16));
}

// F16 rows widened to F32 (the F16 KV cache's V rows): every one of the 65,536 half-precision values, through the
// vector path and the scalar tail, equals the exact IEEE conversion (NaNs stay NaNs).
// Narrowing to F16 (quantize_row: F16C when the CPU has it) gives fp32_to_fp16's bits for every float whose low 8
// bits are a fixed pattern (2^24 values: every exponent, sign, NaN payload class, and the rounding boundaries, whose
// deciding bits are above the low 8), and for the neighbours of every half-way point.
TEST(QDot, F16RowsNarrowLikeTheScalarConversion) {
  constexpr int64_t kN = int64_t{1} << 24;
  std::vector<float> x(kN + 2 * 65536);
  for (int64_t i = 0; i < kN; ++i) {
    const uint32_t bits = (static_cast<uint32_t>(i) << 8) | 0x5Au;
    std::memcpy(&x[i], &bits, 4);
  }
  for (uint32_t h = 0; h < 65536; ++h) {  // f32 values just around the midpoint between half h and h + 1
    const uint32_t mid = (((h & 0x7FFFu) << 13) + 0x38000000u + 0x1000u) | ((h & 0x8000u) << 16);
    const uint32_t lo = mid, hi = mid + 1;
    std::memcpy(&x[kN + 2 * h], &lo, 4);
    std::memcpy(&x[kN + 2 * h + 1], &hi, 4);
  }
  std::vector<uint8_t> row(2 * x.size());
  quantize_row(QuantType::F16, x.data(), row.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    uint16_t got;
    std::memcpy(&got, row.data() + 2 * i, 2);
    ASSERT_EQ(got, fp32_to_fp16(x[i])) << "float bits 0x" << std::hex << std::bit_cast<uint32_t>(x[i]);
  }
}

TEST(QDot, F16RowsWidenExactly) {
  std::vector<uint8_t> row(2 * 65539);
  for (uint32_t h = 0; h < 65539; ++h) {
    const uint16_t v = static_cast<uint16_t>(h & 0xFFFF);
    std::memcpy(row.data() + 2 * h, &v, 2);
  }
  std::vector<float> y(65539);
  dequantize_row(QuantType::F16, row.data(), y.data(), 65539);
  for (uint32_t h = 0; h < 65539; ++h) {
    const uint32_t v = h & 0xFFFF, sign = v >> 15, exp = (v >> 10) & 0x1F, man = v & 0x3FF;
    const double mag = exp == 0    ? std::ldexp(static_cast<double>(man), -24)
                       : exp == 31 ? (man ? NAN : INFINITY)
                                   : std::ldexp(1024.0 + man, static_cast<int>(exp) - 25);
    const double want = sign ? -mag : mag;
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(y[h])) << h;
    else
      ASSERT_EQ(static_cast<double>(y[h]), want) << "half 0x" << std::hex << v;
  }
}
