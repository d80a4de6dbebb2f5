// GGUF support: ggml block quantization (bit-exact with llama.cpp's reference rounding), dot products, the GGUF v3
// reader/writer and its validation, and Model <-> GGUF in llama.cpp's deepseek layout.
#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/quant.h"
#include "expect_error.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/gguf_model.h"
#include "test_util.h"

#include "temp_dir.h"
using namespace dsmoe;
namespace fs = std::filesystem;

namespace {

uint16_t u16_at(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
float f16(uint16_t h) { return io::f16_to_f32(h); }

class GgufTest : public dsmoe::testing::TempDirTest {};
using dsmoe::testing::slurp;
using dsmoe::testing::spit;

io::GgufTensorToWrite f32_tensor(const std::string& name, std::vector<int64_t> ne, QuantType type,
                                 std::vector<float> values) {
  io::GgufTensorToWrite t;
  t.name = name;
  t.ne = std::move(ne);
  t.type = type;
  t.produce = [values, type, n0 = t.ne.empty() ? int64_t{1} : t.ne[0]](std::vector<uint8_t>& out) {
    const int64_t rows = static_cast<int64_t>(values.size()) / n0;
    const size_t rb = quant_row_bytes(type, n0);
    out.resize(rb * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) quantize_row(type, values.data() + r * n0, out.data() + r * rb, n0);
  };
  return t;
}

double rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(a[i]) * a[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Quantization

TEST(Quant, TypeTable) {
  EXPECT_EQ(static_cast<uint32_t>(QuantType::F32), 0u);
  EXPECT_EQ(static_cast<uint32_t>(QuantType::F16), 1u);
  EXPECT_EQ(static_cast<uint32_t>(QuantType::Q4_0), 2u);
  EXPECT_EQ(static_cast<uint32_t>(QuantType::Q8_0), 8u);
  EXPECT_EQ(static_cast<uint32_t>(QuantType::BF16), 30u);
  EXPECT_EQ(quant_block_bytes(QuantType::Q8_0), 34u);
  EXPECT_EQ(quant_block_bytes(QuantType::Q4_0), 18u);
  EXPECT_EQ(quant_block_size(QuantType::Q4_0), 32);
  EXPECT_EQ(quant_block_size(QuantType::BF16), 1);
  EXPECT_EQ(quant_row_bytes(QuantType::Q8_0, 64), 68u);
  EXPECT_EQ(quant_row_bytes(QuantType::F16, 7), 14u);
  EXPECT_EQ(quant_type_from_name("q8_0"), QuantType::Q8_0);
  EXPECT_EQ(quant_type_from_name("q5_k"), QuantType::Q5_K);
  expect_error([] { quant_type_from_name("iq2_xxs"); }, {"iq2_xxs"});
  expect_error([] { quant_row_bytes(QuantType::Q4_0, 33); }, {"Q4_0", "33"});
}

TEST(Quant, HalfConversionsRoundToNearestEven) {
  struct Case {
    float f;
    uint16_t h;
  };
  const Case cases[] = {{1.0f, 0x3C00},
                        {-2.0f, 0xC000},
                        {65504.0f, 0x7BFF},
                        {65520.0f, 0x7C00},
                        {65519.0f, 0x7BFF},
                        {std::ldexp(1.0f, -24), 0x0001},
                        {std::ldexp(1.0f, -25), 0x0000},
                        {std::ldexp(3.0f, -26), 0x0001},
                        {1.0f + std::ldexp(1.0f, -11), 0x3C00},
                        {1.0f + 3 * std::ldexp(1.0f, -11), 0x3C02},
                        {0.0f, 0x0000},
                        {-0.0f, 0x8000}};
  for (const Case& c : cases) {
    uint8_t out[2];
    quantize_row(QuantType::F16, &c.f, out, 1);
    EXPECT_EQ(u16_at(out), c.h) << c.f;
  }
  // Agreement with the safetensors converters (independent implementation) over many values, both directions.
  Rng rng(5);
  for (int i = 0; i < 20000; ++i) {
    const float x = static_cast<float>(rng.normal() * std::exp(rng.uniform() * 30 - 20));
    uint8_t h[2], b[2];
    quantize_row(QuantType::F16, &x, h, 1);
    quantize_row(QuantType::BF16, &x, b, 1);
    ASSERT_EQ(u16_at(h), io::f32_to_f16(x)) << x;
    ASSERT_EQ(u16_at(b), io::f32_to_bf16(x)) << x;
    float back;
    dequantize_row(QuantType::F16, h, &back, 1);
    ASSERT_EQ(back, io::f16_to_f32(u16_at(h)));
    dequantize_row(QuantType::BF16, b, &back, 1);
    ASSERT_EQ(back, io::bf16_to_f32(u16_at(b)));
  }
}

// Q8_0 with amax = 127 gives d = 1 exactly, so q = roundf(x) (ties away from zero).
TEST(Quant, Q8_0HandComputedBlock) {
  float x[32] = {127.0f, 1.4f, -1.6f, 2.5f, -2.5f, 0.0f, -127.0f, 0.49f};
  for (int j = 8; j < 32; ++j) x[j] = static_cast<float>(j) * 3.25f - 60.1f;  // fractions .15/.4/.65/.9: no ties
  uint8_t q[34];
  quantize_row_q8_0(x, q, 32);
  EXPECT_EQ(u16_at(q), 0x3C00);  // d = 1.0 in fp16
  const int expect_head[8] = {127, 1, -2, 3, -3, 0, -127, 0};
  for (int j = 0; j < 8; ++j) EXPECT_EQ(static_cast<int8_t>(q[2 + j]), expect_head[j]) << j;
  for (int j = 8; j < 32; ++j)
    EXPECT_EQ(static_cast<int8_t>(q[2 + j]), static_cast<int>(std::lround(static_cast<double>(x[j])))) << j;
  // Scale 16/127: value -16 -> -127, 8 -> round(63.5 +- ulp) is ggml's float arithmetic; check d bits only.
  float y[32];
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(j - 16);
  quantize_row_q8_0(y, q, 32);
  EXPECT_EQ(u16_at(q), io::f32_to_f16(16.0f / 127.0f));
  EXPECT_EQ(static_cast<int8_t>(q[2]), -127);
  EXPECT_EQ(static_cast<int8_t>(q[2 + 17]), 8);  // 1 * 127/16 = 7.94 -> 8
  // All-zero block: d = 0, all q = 0.
  float z[32] = {};
  quantize_row_q8_0(z, q, 32);
  for (uint8_t b : q) EXPECT_EQ(b, 0);
}

// Q4_0: d = max/-8 with max the signed value of largest magnitude; q = min(15, (int8)(x/d + 8.5)).
TEST(Quant, Q4_0HandComputedBlocks) {
  // max = -8 -> d = 1, x/d + 8.5 truncated.
  float x[32] = {-8.0f, 7.0f,  7.4f, 0.0f,  0.5f,  -0.5f,  3.2f, -3.7f,
                 1.0f,  -1.0f, 6.6f, -7.9f, 2.49f, -2.51f, 4.0f, -4.0f};
  for (int j = 16; j < 32; ++j) x[j] = static_cast<float>(j - 24);  // -8 .. 7
  const int expect[32] = {0, 15, 15, 8, 9, 8, 11, 4, 9, 7, 15, 0,  10, 5,  12, 4,
                          0, 1,  2,  3, 4, 5, 6,  7, 8, 9, 10, 11, 12, 13, 14, 15};
  uint8_t q[18];
  quantize_row_q4_0(x, q, 32);
  EXPECT_EQ(u16_at(q), 0x3C00);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(q[2 + j] & 0x0f, expect[j]) << "low nibble " << j;
    EXPECT_EQ(q[2 + j] >> 4, expect[16 + j]) << "high nibble " << j;
  }
  float back[32];
  dequantize_row_q4_0(q, back, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(back[j], static_cast<float>(expect[j] - 8)) << j;

  // max = +8 -> d = -1: +8 -> q 0 (deq 8 exactly); -8 -> 16.5 -> clamped to 15 (deq -7: the one-step Q4_0 clamp).
  float y[32] = {8.0f, -8.0f, 1.0f};
  quantize_row_q4_0(y, q, 32);
  EXPECT_EQ(u16_at(q), 0xBC00);  // -1.0
  EXPECT_EQ(q[2] & 0x0f, 0);
  EXPECT_EQ(q[3] & 0x0f, 15);
  EXPECT_EQ(q[4] & 0x0f, 7);  // 1 * -1 + 8.5 = 7.5 -> 7
  dequantize_row_q4_0(q, back, 32);
  EXPECT_EQ(back[0], 8.0f);
  EXPECT_EQ(back[1], -7.0f);
  EXPECT_EQ(back[2], 1.0f);
}

// ggml/src/ggml-quants.c quantize_row_q8_0_ref / quantize_row_q4_0_ref, transcribed statement by statement
// (GGML_FP32_TO_FP16 = round-to-nearest-even, here io::f32_to_f16), compared byte for byte on random data.
namespace {
void ggml_q8_0_ref(const float* x, uint8_t* y, int64_t k) {
  for (int64_t i = 0; i < k / 32; i++) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = std::max(amax, std::fabs(x[i * 32 + j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    const uint16_t dh = io::f32_to_f16(d);
    std::memcpy(y + 34 * i, &dh, 2);
    for (int j = 0; j < 32; ++j) {
      const float x0 = x[i * 32 + j] * id;
      y[34 * i + 2 + j] = static_cast<uint8_t>(static_cast<int8_t>(roundf(x0)));
    }
  }
}
void ggml_q4_0_ref(const float* x, uint8_t* y, int64_t k) {
  const int qk = 32;
  for (int64_t i = 0; i < k / qk; i++) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < qk; j++) {
      const float v = x[i * qk + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    const uint16_t dh = io::f32_to_f16(d);
    std::memcpy(y + 18 * i, &dh, 2);
    for (int j = 0; j < qk / 2; ++j) {
      // volatile: the products are rounded to float before + 8.5f, as in ggml's C (no fma contraction)
      const volatile float x0 = x[i * qk + 0 + j] * id;
      const volatile float x1 = x[i * qk + qk / 2 + j] * id;
      const uint8_t xi0 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 8.5f))));
      const uint8_t xi1 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 8.5f))));
      y[18 * i + 2 + j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
}
}  // namespace

TEST(Quant, MatchesGgmlReferenceOnRandomData) {
  Rng rng(17);
  const int nb = 2000;
  std::vector<float> x(32 * nb);
  for (int b = 0; b < nb; ++b) {
    const double scale = std::exp(rng.uniform() * 20 - 12);
    for (int j = 0; j < 32; ++j)  // some exact ties: multiples of a power of two
      x[b * 32 + j] = b % 5 == 0 ? static_cast<float>(std::ldexp(std::round(rng.normal() * 16), -3))
                                 : static_cast<float>(rng.normal() * scale);
  }
  std::vector<uint8_t> a8(34 * nb), b8(34 * nb), a4(18 * nb), b4(18 * nb);
  quantize_row_q8_0(x.data(), a8.data(), 32 * nb);
  ggml_q8_0_ref(x.data(), b8.data(), 32 * nb);
  quantize_row_q4_0(x.data(), a4.data(), 32 * nb);
  ggml_q4_0_ref(x.data(), b4.data(), 32 * nb);
  EXPECT_EQ(a8, b8);
  EXPECT_EQ(a4, b4);
  // The data must tell a contracted (fma) x*id + 8.5f from ggml's rounded product, or the check above is weak.
  int discriminating = 0;
  for (int b = 0; b < nb; ++b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j)
      if (amax < std::fabs(x[b * 32 + j])) {
        amax = std::fabs(x[b * 32 + j]);
        max = x[b * 32 + j];
      }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; ++j) {
      const volatile float p = x[b * 32 + j] * id;
      if (static_cast<int8_t>(p + 8.5f) != static_cast<int8_t>(std::fmaf(x[b * 32 + j], id, 8.5f))) ++discriminating;
    }
  }
  EXPECT_GT(discriminating, 0);
}

// Per element, with d32 = the f32 scale used while quantizing and d16 the stored fp16 scale:
//   Q8_0: |x - deq| <= |d32|/2 + 127*|d32 - d16| (+1e-6 relative slack for the f32 products)
//   Q4_0: |x - deq| <= |d32|/2 + 8*|d32 - d16| except at the clamp (x/d32 > 7.5, the far side of the signed max),
//         where it is <= |d32| + 8*|d32 - d16|.
TEST(Quant, RoundTripErrorBounds) {
  Rng rng(11);
  const int nb = 400;
  std::vector<float> x(32 * nb);
  for (int b = 0; b < nb; ++b) {
    const double scale = std::exp(rng.uniform() * 12 - 8);
    for (int j = 0; j < 32; ++j) x[b * 32 + j] = static_cast<float>(rng.normal() * scale);
  }
  std::vector<uint8_t> q8(34 * nb), q4(18 * nb);
  std::vector<float> y8(x.size()), y4(x.size());
  quantize_row(QuantType::Q8_0, x.data(), q8.data(), 32 * nb);
  quantize_row(QuantType::Q4_0, x.data(), q4.data(), 32 * nb);
  dequantize_row(QuantType::Q8_0, q8.data(), y8.data(), 32 * nb);
  dequantize_row(QuantType::Q4_0, q4.data(), y4.data(), 32 * nb);
  for (int b = 0; b < nb; ++b) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j)
      if (std::fabs(x[b * 32 + j]) > amax) {
        amax = std::fabs(x[b * 32 + j]);
        max = x[b * 32 + j];
      }
    const double d8 = amax / 127.0f, d8h = f16(u16_at(&q8[34 * b]));
    const double d4 = max / -8.0f, d4h = f16(u16_at(&q4[18 * b]));
    for (int j = 0; j < 32; ++j) {
      const double v = x[b * 32 + j], slack = 1e-6 * amax;
      ASSERT_LE(std::fabs(v - y8[b * 32 + j]), std::fabs(d8) / 2 + 127 * std::fabs(d8 - d8h) + slack) << b << "," << j;
      const double bound4 = (v / d4 > 7.5 ? std::fabs(d4) : std::fabs(d4) / 2) + 8 * std::fabs(d4 - d4h) + slack;
      ASSERT_LE(std::fabs(v - y4[b * 32 + j]), bound4) << b << "," << j;
    }
  }
}

TEST(Quant, DotScalarEqualsAvx2) {
  Rng rng(3);
  for (QuantType t : {QuantType::F32, QuantType::F16, QuantType::BF16, QuantType::Q8_0, QuantType::Q4_0}) {
    for (int64_t n : {32, 96, 1024, 101, 7}) {
      if (quant_is_block(t) && n % 32 != 0) continue;
      std::vector<float> w(n), x(n), deq(n);
      for (auto& v : w) v = static_cast<float>(rng.normal());
      for (auto& v : x) v = static_cast<float>(rng.normal());
      std::vector<uint8_t> row(quant_row_bytes(t, n));
      quantize_row(t, w.data(), row.data(), n);
      dequantize_row(t, row.data(), deq.data(), n);
      double ref = 0;
      for (int64_t i = 0; i < n; ++i) ref += double(deq[i]) * x[i];
      const float s = quant_dot_scalar(t, row.data(), x.data(), n);
      EXPECT_NEAR(s, ref, 1e-4 * (1 + std::sqrt(double(n)))) << quant_type_name(t) << " n=" << n;
      const float a = quant_dot_avx2(t, row.data(), x.data(), n);
      uint32_t sb, ab;
      std::memcpy(&sb, &s, 4);
      std::memcpy(&ab, &a, 4);
      EXPECT_EQ(sb, ab) << quant_type_name(t) << " n=" << n << " scalar " << s << " avx2 " << a;
      EXPECT_EQ(quant_dot(t, row.data(), x.data(), n), s);
    }
  }
  if (!quant_have_avx2()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C: only the scalar path was exercised";
}

// ---------------------------------------------------------------------------------------------------------------
// GGUF container

TEST_F(GgufTest, WriteReadRoundTrip) {
  for (size_t alignment : {size_t{32}, size_t{64}}) {
    std::vector<io::GgufKV> kvs = {
        {"general.architecture", io::GgufValue::str("test")},
        {"a.u32", io::GgufValue::u32(4000000000u)},
        {"a.i32", io::GgufValue::i32(-5)},
        {"a.u64", io::GgufValue::u64(1ull << 40)},
        {"a.f32", io::GgufValue::f32(0.25f)},
        {"a.bool", io::GgufValue::boolean(true)},
        {"a.strs", io::GgufValue::str_array({"x", "", "héllo", std::string("a\0b", 3)})},
        {"a.ints", io::GgufValue::int_array(io::GgufType::INT32, {1, -2, 3})},
        {"a.floats", io::GgufValue::f32_array({1.5f, -2.0f})},
    };
    Rng rng(1);
    std::vector<float> v64(64 * 3), v5(5);
    for (auto& v : v64) v = static_cast<float>(rng.normal());
    for (auto& v : v5) v = static_cast<float>(rng.normal());
    std::vector<io::GgufTensorToWrite> ts = {
        f32_tensor("t.f32", {5}, QuantType::F32, v5),         f32_tensor("t.f16", {64, 3}, QuantType::F16, v64),
        f32_tensor("t.bf16", {64, 3}, QuantType::BF16, v64),  f32_tensor("t.q8", {64, 3}, QuantType::Q8_0, v64),
        f32_tensor("t.q4", {32, 2, 3}, QuantType::Q4_0, v64),
    };
    const std::string path = file(fmt::format("rt{}.gguf", alignment));
    io::write_gguf(path, kvs, ts, alignment);
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    io::GgufFile g = io::GgufFile::open(path);
    EXPECT_EQ(g.version(), 3u);
    EXPECT_EQ(g.alignment(), alignment);
    EXPECT_EQ(g.get_string("general.architecture"), "test");
    EXPECT_EQ(g.get_int("a.u32"), 4000000000ll);
    EXPECT_EQ(g.get("a.u32").type, io::GgufType::UINT32);
    EXPECT_EQ(g.get_int("a.i32"), -5);
    EXPECT_EQ(g.get_int("a.u64"), 1ll << 40);
    EXPECT_EQ(g.get_float("a.f32"), 0.25);
    EXPECT_TRUE(g.get("a.bool").b);
    EXPECT_EQ(g.get_strings("a.strs"), (std::vector<std::string>{"x", "", "héllo", std::string("a\0b", 3)}));
    EXPECT_EQ(g.get("a.ints").ints, (std::vector<int64_t>{1, -2, 3}));
    EXPECT_EQ(g.get("a.floats").floats, (std::vector<double>{1.5, -2.0}));
    EXPECT_EQ(g.kvs().front().key, "general.architecture");
    expect_error([&] { g.get_int("general.architecture"); }, {"general.architecture", "integer"});
    expect_error([&] { g.get("nope"); }, {"missing key nope", path});
    ASSERT_EQ(g.tensors().size(), 5u);
    for (size_t k = 0; k < ts.size(); ++k) {
      const io::GgufTensorInfo& t = g.tensors()[k];
      EXPECT_EQ(t.name, ts[k].name);
      EXPECT_EQ(t.ne, ts[k].ne);
      EXPECT_EQ(t.type, ts[k].type);
      EXPECT_EQ(t.offset % alignment, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % alignment, 0u);  // the mapping is page aligned
      std::vector<uint8_t> expect;
      ts[k].produce(expect);
      ASSERT_EQ(t.nbytes, expect.size());
      EXPECT_EQ(std::memcmp(t.data, expect.data(), expect.size()), 0) << t.name;
    }
    EXPECT_EQ(g.read_f32("t.f32"), v5);
    EXPECT_EQ(g.tensor("t.q4").shape(), (std::vector<int64_t>{3, 2, 32}));
    const std::vector<float> q8 = g.read_f32("t.q8");
    for (size_t i = 0; i < q8.size(); ++i) EXPECT_NEAR(q8[i], v64[i], 0.03);
    expect_error([&] { g.tensor("nope"); }, {"missing tensor nope"});
  }
}

TEST_F(GgufTest, WriterRejectsBadInput) {
  const std::string path = file("bad.gguf");
  expect_error([&] { io::write_gguf(path, {}, {f32_tensor("a", {33}, QuantType::Q8_0, std::vector<float>(33))}); },
               {"tensor a", "33", "Q8_0"});
  expect_error(
      [&] {
        io::write_gguf(path, {},
                       {f32_tensor("a", {1}, QuantType::F32, {1}), f32_tensor("a", {1}, QuantType::F32, {1})});
      },
      {"duplicate tensor a"});
  expect_error(
      [&] {
        io::write_gguf(path, {{"k", io::GgufValue::u32(1)}, {"k", io::GgufValue::u32(2)}}, {});
      },
      {"duplicate key k"});
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(GgufTest, CorruptFilesAreErrors) {
  // Layout of this file: 24-byte header, no KVs, tensor "a" info at 24: name (8 + 1, "a" at 32), n_dims (4), ne (8),
  // type at 45, offset at 49; tensor "b" info at 57: name at 65 (8 + 1), ...
  const std::string good = file("good.gguf");
  io::write_gguf(good, {},
                 {f32_tensor("a", {8}, QuantType::F32, std::vector<float>(8, 1.0f)),
                  f32_tensor("b", {8}, QuantType::F32, std::vector<float>(8, 2.0f))});
  const std::vector<uint8_t> bytes = slurp(good);
  ASSERT_EQ(bytes[32], 'a');
  ASSERT_EQ(bytes[65], 'b');
  io::GgufFile::open(good);  // sanity: the unmodified file opens
  const std::string bad = file("bad.gguf");
  auto with = [&](auto edit) {
    std::vector<uint8_t> b = bytes;
    edit(b);
    spit(bad, b);
  };
  auto set_u64 = [](std::vector<uint8_t>& b, size_t at, uint64_t v) { std::memcpy(&b[at], &v, 8); };
  auto set_u32 = [](std::vector<uint8_t>& b, size_t at, uint32_t v) { std::memcpy(&b[at], &v, 4); };

  with([](std::vector<uint8_t>& b) { b[0] = 'X'; });
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "bad magic"});
  with([&](std::vector<uint8_t>& b) { set_u32(b, 4, 2); });
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "unsupported GGUF version 2"});
  with([](std::vector<uint8_t>& b) { b.resize(40); });
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "truncated"});
  with([](std::vector<uint8_t>& b) { b.resize(b.size() - 4); });
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "tensor b", "beyond the end"});
  with([&](std::vector<uint8_t>& b) { set_u64(b, 8, 3); });  // one more tensor than there are infos
  expect_error([&] { io::GgufFile::open(bad); }, {bad});
  with([&](std::vector<uint8_t>& b) { set_u64(b, 8, 1ull << 40); });
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "tensor count", "implausible"});
  with([&](std::vector<uint8_t>& b) { set_u64(b, 16, 1ull << 50); });
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "KV count", "implausible"});
  with([&](std::vector<uint8_t>& b) { set_u32(b, 45, 99); });
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "tensor a", "unknown ggml type 99"});
  with([&](std::vector<uint8_t>& b) { set_u32(b, 45, 16); });  // IQ2_XXS: valid ggml, not read here
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "tensor a", "IQ2_XXS"});
  with([&](std::vector<uint8_t>& b) { set_u32(b, 45, 12); });  // Q4_K: 8 weights are not a 256-weight super-block
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "tensor a", "Q4_K", "block size 256"});
  with([&](std::vector<uint8_t>& b) { set_u64(b, 49, 4); });
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "tensor a", "alignment"});
  with([](std::vector<uint8_t>& b) { b[65] = 'a'; });
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "duplicate tensor a"});
  with([](std::vector<uint8_t>& b) { b.resize(3); });
  expect_error([&] { io::GgufFile::open(bad); }, {bad, "truncated"});
  expect_error([&] { io::GgufFile::open(file("missing.gguf")); }, {"missing.gguf", "cannot open"});
}

// Random byte flips and truncations of a valid model file: opening and loading either succeed or throw
// dsmoe::Error; never a crash (run under ASan/UBSan to make "never" meaningful).
TEST_F(GgufTest, MutatedFilesNeverCrash) {
  auto m = dsmoe::testing::random_model(dsmoe::testing::tiny_config(), 2);
  const std::string good = file("good.gguf");
  model_save_gguf(*m, good, QuantType::F32);
  const std::vector<uint8_t> bytes = slurp(good);
  Rng rng(99);
  const std::string bad = file("mut.gguf");
  int errors = 0;
  for (int it = 0; it < 300; ++it) {
    std::vector<uint8_t> b = bytes;
    if (it % 3 == 0) {
      b.resize(rng.next_u64() % b.size());
    } else {
      // Flip bytes in the metadata part (the first 4 KiB), where structure lives.
      const size_t span = std::min<size_t>(b.size(), 4096);
      for (int k = 0; k < 1 + it % 4; ++k) b[rng.next_u64() % span] = static_cast<uint8_t>(rng.next_u64());
    }
    spit(bad, b);
    try {
      model_load_gguf(bad);
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 100);
}

// ---------------------------------------------------------------------------------------------------------------
// Model <-> GGUF (llama.cpp deepseek layout)

namespace {
std::vector<float> logits_of(const Model& m, const std::vector<int32_t>& tokens, int64_t B, int64_t S) {
  Activations acts;
  model_forward(m, tokens.data(), B, S, acts, false);
  return std::vector<float>(acts.logits.data(), acts.logits.data() + acts.logits.size());
}
}  // namespace

TEST(GgufModel, QkPermutationMatchesConverter) {
  // Converter: reshape (n_head, 2, hd/2, cols), swap axes 1 and 2 -> per head rows 0, hd/2, 1, hd/2+1, ...
  const int64_t H = 2, hd = 6, cols = 1;
  std::vector<float> src(H * hd), dst(H * hd), back(H * hd);
  for (int64_t i = 0; i < H * hd; ++i) src[i] = static_cast<float>(i);
  gguf_permute_qk(src.data(), dst.data(), H, hd, cols);
  EXPECT_EQ(dst, (std::vector<float>{0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11}));
  gguf_unpermute_qk(dst.data(), back.data(), H, hd, cols);
  EXPECT_EQ(back, src);
}

TEST_F(GgufTest, ModelF32RoundTripIsBitExact) {
  for (bool tied : {false, true}) {
    ModelConfig c = dsmoe::testing::tiny_config();
    c.tie_word_embeddings = tied;
    c.validate();
    auto m = dsmoe::testing::random_model(c, 42);
    const std::string path = file(tied ? "tied.gguf" : "m.gguf");
    model_save_gguf(*m, path, QuantType::F32);
    auto r = model_load_gguf(path);
    EXPECT_TRUE(r->config == m->config) << config_to_json(r->config).dump();
    ASSERT_EQ(r->params.registry.size(), m->params.registry.size());
    for (const TensorSpec& spec : m->params.registry)
      EXPECT_EQ(std::memcmp(m->params.ptr(spec), r->params.ptr(spec), spec.numel() * sizeof(float)), 0) << spec.name;
    const auto tokens = dsmoe::testing::random_tokens(2 * 7, c.vocab_size, 9);
    EXPECT_EQ(logits_of(*m, tokens, 2, 7), logits_of(*r, tokens, 2, 7));

    // The file itself is in llama.cpp's layout.
    io::GgufFile g = io::GgufFile::open(path);
    EXPECT_EQ(g.get_string("general.architecture"), "deepseek");
    EXPECT_EQ(g.get_int("deepseek.block_count"), c.num_hidden_layers);
    EXPECT_EQ(g.get_int("deepseek.leading_dense_block_count"), c.first_k_dense_replace);
    EXPECT_EQ(g.get_int("deepseek.expert_feed_forward_length"), c.moe_intermediate_size);
    EXPECT_EQ(g.get_int("deepseek.expert_count"), c.n_routed_experts);
    EXPECT_EQ(g.get_int("deepseek.expert_used_count"), c.num_experts_per_tok);
    EXPECT_EQ(g.get_int("deepseek.expert_shared_count"), c.n_shared_experts);
    EXPECT_EQ(g.get_int("deepseek.attention.head_count_kv"), c.num_key_value_heads);
    EXPECT_EQ(g.get_int("deepseek.rope.dimension_count"), c.head_dim());
    EXPECT_EQ(g.get_float("deepseek.expert_weights_scale"), 1.0);
    EXPECT_EQ(g.get_string("deepseek.rope.scaling.type"), "none");
    EXPECT_TRUE(g.find_tensor("output.weight") != nullptr);
    EXPECT_EQ(g.tensor("blk.1.ffn_gate_exps.weight").ne,
              (std::vector<int64_t>{c.hidden_size, c.moe_intermediate_size, c.n_routed_experts}));
    EXPECT_EQ(g.tensor("blk.1.ffn_down_exps.weight").ne,
              (std::vector<int64_t>{c.moe_intermediate_size, c.hidden_size, c.n_routed_experts}));
    EXPECT_EQ(g.tensor("blk.1.ffn_gate_shexp.weight").ne, (std::vector<int64_t>{c.hidden_size, c.shared_width()}));
    EXPECT_EQ(g.tensor("blk.0.ffn_down.weight").ne, (std::vector<int64_t>{c.intermediate_size, c.hidden_size}));
    EXPECT_EQ(g.tensor("blk.1.ffn_gate_inp.weight").ne, (std::vector<int64_t>{c.hidden_size, c.n_routed_experts}));
    EXPECT_TRUE(g.find_tensor("blk.0.ffn_gate_exps.weight") == nullptr);
    // attn_k rows permuted: file row 1 of head 0 = HF row hd/2.
    const std::vector<float> k = g.read_f32("blk.0.attn_k.weight");
    const float* hf = m->weights.layers[0].wk;
    const int64_t d = c.hidden_size, hd = c.head_dim();
    for (int64_t j = 0; j < d; ++j) {
      EXPECT_EQ(k[1 * d + j], hf[(hd / 2) * d + j]);
      EXPECT_EQ(k[2 * d + j], hf[1 * d + j]);
    }
  }
}

// Q8_0 / Q4_0 matrices (norms and router F32): logits stay close. Asserted: relative L2 error of the logits below
// 3% for Q8_0 (measured 1.6%; F16 0.07%, Q4_0 26%) and below 40% for Q4_0 (std 0.1 weights, 64-wide tiny model).
TEST_F(GgufTest, ModelQuantizedLogitsClose) {
  const ModelConfig c = dsmoe::testing::block_quant_config();
  auto m = dsmoe::testing::random_model(c, 7);
  const auto tokens = dsmoe::testing::random_tokens(2 * 9, c.vocab_size, 3);
  const std::vector<float> ref = logits_of(*m, tokens, 2, 9);
  for (auto [type, bound] : {std::pair{QuantType::Q8_0, 0.03}, std::pair{QuantType::Q4_0, 0.4},
                             std::pair{QuantType::F16, 2e-3}, std::pair{QuantType::BF16, 2e-2}}) {
    const std::string path = file(fmt::format("m_{}.gguf", quant_type_name(type)));
    model_save_gguf(*m, path, type);
    io::GgufFile g = io::GgufFile::open(path);
    EXPECT_EQ(g.tensor("blk.1.ffn_up_exps.weight").type, type);
    EXPECT_EQ(g.tensor("blk.1.ffn_gate_inp.weight").type, QuantType::F32);
    EXPECT_EQ(g.tensor("blk.0.attn_norm.weight").type, QuantType::F32);
    EXPECT_EQ(g.tensor("output_norm.weight").type, QuantType::F32);
    auto r = model_load_gguf(path);
    // Norms and router are exact.
    for (const TensorSpec& spec : m->params.registry) {
      if (spec.shape.size() == 1 || spec.role == TensorRole::router) {
        EXPECT_EQ(std::memcmp(m->params.ptr(spec), r->params.ptr(spec), spec.numel() * sizeof(float)), 0);
      }
    }
    const std::vector<float> got = logits_of(*r, tokens, 2, 9);
    const double err = rel_err(ref.data(), got.data(), ref.size());
    EXPECT_LT(err, bound) << quant_type_name(type);
    std::printf("%s: logits relative L2 error %.4g\n", quant_type_name(type), err);
    EXPECT_GT(err, 0.0) << quant_type_name(type);
  }
}

TEST_F(GgufTest, BlockTypeFallsBackToF16ForOddRows) {
  auto m = dsmoe::testing::random_model(dsmoe::testing::tiny_config(), 1);  // d = 16: rows not a multiple of 32
  const std::string path = file("odd.gguf");
  model_save_gguf(*m, path, QuantType::Q8_0);
  io::GgufFile g = io::GgufFile::open(path);
  EXPECT_EQ(g.tensor("blk.0.attn_q.weight").type, QuantType::F16);
  auto r = model_load_gguf(path);
  EXPECT_TRUE(r->config == m->config);
}

TEST_F(GgufTest, ModelErrors) {
  ModelConfig c = dsmoe::testing::tiny_config();
  c.norm_topk_prob = true;
  auto m = dsmoe::testing::random_model(c, 1);
  expect_error([&] { model_save_gguf(*m, file("x.gguf"), QuantType::F32); }, {"norm_topk_prob"});

  // A tensor that is not part of the model, and a missing tensor / key.
  auto ok = dsmoe::testing::random_model(dsmoe::testing::tiny_config(), 1);
  const std::string path = file("ok.gguf");
  model_save_gguf(*ok, path, QuantType::F32);
  io::GgufFile g = io::GgufFile::open(path);
  std::vector<io::GgufKV> kvs = g.kvs();
  std::vector<io::GgufTensorToWrite> ts;
  for (const io::GgufTensorInfo& t : g.tensors()) {
    if (t.name == "blk.0.attn_v.weight") continue;
    ts.push_back({t.name, t.ne, t.type, [&t](std::vector<uint8_t>& out) { out.assign(t.data, t.data + t.nbytes); }});
  }
  io::write_gguf(file("missing.gguf"), kvs, ts);
  expect_error([&] { model_load_gguf(file("missing.gguf")); }, {"missing.gguf", "missing tensor blk.0.attn_v.weight"});
  ts.push_back(f32_tensor("rope_freqs.weight", {4}, QuantType::F32, {1, 2, 3, 4}));
  ts.push_back(f32_tensor("blk.0.attn_v.weight", {16, 8}, QuantType::F32, std::vector<float>(16 * 8)));
  io::write_gguf(file("extra.gguf"), kvs, ts);
  expect_error([&] { model_load_gguf(file("extra.gguf")); }, {"extra.gguf", "unexpected tensor rope_freqs.weight"});
  ts.pop_back();
  ts.pop_back();
  ts.push_back(f32_tensor("blk.0.attn_v.weight", {8, 16}, QuantType::F32, std::vector<float>(16 * 8)));
  io::write_gguf(file("shape.gguf"), kvs, ts);
  expect_error([&] { model_load_gguf(file("shape.gguf")); }, {"shape.gguf", "blk.0.attn_v.weight", "shape"});
  std::vector<io::GgufKV> fewer;
  for (const auto& kv : kvs)
    if (kv.key != "deepseek.expert_shared_count") fewer.push_back(kv);
  io::write_gguf(file("nokey.gguf"), fewer, {});
  expect_error([&] { model_load_gguf(file("nokey.gguf")); },
               {"nokey.gguf", "missing key deepseek.expert_shared_count"});
}
