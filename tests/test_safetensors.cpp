// Tests for src/io/safetensors: conversions, round trips, sharding, and every malformed-input error.
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "expect_error.h"

namespace {

using namespace dsmoe::io;
namespace fs = std::filesystem;

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }
float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

// Runs f, expecting a one-line dsmoe::Error whose message contains every string in `parts`.

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file built by hand: 8-byte length (default: the header's), header text, data bytes.
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               std::optional<uint64_t> length = std::nullopt) {
  const uint64_t n = length.value_or(header.size());
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &n, 8);
  write_bytes(path, bytes + header + data);
}

template <typename T>
std::string as_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "dsmoe_st_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// ---------------------------------------------------------------------------------------------------------------
// DType and conversions

TEST(DTypeTest, NamesSizesRoundTrip) {
  const std::vector<std::pair<DType, size_t>> all = {
      {DType::F32, 4}, {DType::F16, 2}, {DType::BF16, 2}, {DType::F64, 8}, {DType::I32, 4},
      {DType::I64, 8}, {DType::U8, 1},  {DType::I8, 1},   {DType::I16, 2}, {DType::U16, 2},
      {DType::U32, 4}, {DType::U64, 8}, {DType::BOOL, 1},
  };
  for (auto [t, size] : all) {
    EXPECT_EQ(dtype_size(t), size) << dtype_name(t);
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  }
  EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
  expect_error([] { dtype_from_name("F8_E4M3"); }, {"F8_E4M3"});
  expect_error([] { dtype_from_name("f32"); }, {"f32"});  // safetensors spelling is case-sensitive
}

TEST(ConversionTest, Bf16CraftedPatterns) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F808000)), 0x3F80);              // tie, even below: down
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F818000)), 0x3F82);              // tie, odd below: up to even
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F808001)), 0x3F81);              // just above the tie: up
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F807FFF)), 0x3F80);              // just below the tie: down
  EXPECT_EQ(f32_to_bf16(from_bits(0xBF818000)), 0xBF82);              // sign does not change rounding
  EXPECT_EQ(f32_to_bf16(from_bits(0x3FFF8000)), 0x4000);              // mantissa carry into the exponent
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to inf
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7F80);
  EXPECT_EQ(f32_to_bf16(-INFINITY), 0xFF80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x00000001)), 0x0000);  // tiny subnormal flushes by rounding
  EXPECT_EQ(f32_to_bf16(from_bits(0x00018000)), 0x0002);  // subnormal tie, odd: up
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  // NaN with a payload only in the low bits: naive rounding would carry it into inf.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7F800001)))));
  EXPECT_EQ(f32_to_bf16(from_bits(0xFFC00000)) & 0x8000, 0x8000);  // NaN sign kept
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bits(bf16_to_f32(0x0001)), 0x00010000u);  // bf16 subnormal widens exactly
}

TEST(ConversionTest, F16CraftedPatterns) {
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);         // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03FF), 1023 * 0x1p-24f);  // largest subnormal
  EXPECT_EQ(f16_to_f32(0x8001), -0x1p-24f);        // negative subnormal
  EXPECT_EQ(f16_to_f32(0x0400), 0x1p-14f);         // smallest normal
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);         // max
  EXPECT_EQ(f16_to_f32(0x7C00), INFINITY);
  EXPECT_EQ(f16_to_f32(0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7C01)));       // signalling NaN stays NaN
  EXPECT_EQ(bits(f16_to_f32(0x8000)), 0x80000000u);  // -0

  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65519.996f), 0x7BFF);  // just below the midpoint to inf
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);    // tie with an odd max: rounds to inf
  EXPECT_EQ(f32_to_f16(1e10f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xFC00);
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3C00);      // tie, even: down
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);  // tie, odd: up
  EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);               // tie with 0: even
  EXPECT_EQ(f32_to_f16(0x1p-25f * 1.0000001f), 0x0001);  // just above the tie
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002);           // 1.5 units: tie, odd: up
  EXPECT_EQ(f32_to_f16(1023.5f * 0x1p-24f), 0x0400);     // subnormal rounding up into the smallest normal
  EXPECT_EQ(f32_to_f16(-0x1p-30f), 0x8000);              // underflow keeps the sign
  EXPECT_EQ(f32_to_f16(from_bits(0x00000001)), 0x0000);  // f32 subnormal
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7C00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xFC00);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(from_bits(0x7F800001)))));  // payload below f16's mantissa
  EXPECT_EQ(f32_to_f16(-NAN) & 0x8000, 0x8000);
}

// Every f16 / bf16 value survives f32 and back; NaNs stay NaN.
TEST(ConversionTest, AllHalfPatternsRoundTrip) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f16 = f16_to_f32(static_cast<uint16_t>(h)), bf16 = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f16))
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f16)))) << h;
    else
      ASSERT_EQ(f32_to_f16(f16), h) << h;
    if (std::isnan(bf16))
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(bf16)))) << h;
    else
      ASSERT_EQ(f32_to_bf16(bf16), h) << h;
  }
}

// Round to nearest even checked at every rounding boundary: for each pair of adjacent finite values (lo, lo+1),
// the midpoint goes to the even one and the floats just either side of it go to the nearer one.
template <typename ToHalf, typename FromHalf>
void check_all_midpoints(ToHalf to_half, FromHalf from_half, uint16_t max_finite) {
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t lo = 0; lo < max_finite; ++lo) {
      const uint16_t a = static_cast<uint16_t>(sign | lo), b = static_cast<uint16_t>(sign | (lo + 1));
      const double mid_d = (static_cast<double>(from_half(a)) + from_half(b)) / 2;
      const float mid = static_cast<float>(mid_d);
      ASSERT_EQ(static_cast<double>(mid), mid_d) << "midpoint not exact for " << lo;  // both formats fit in f32
      const float toward_a = std::nextafter(mid, from_half(a)), toward_b = std::nextafter(mid, from_half(b));
      ASSERT_EQ(to_half(mid), (lo & 1) ? b : a) << "tie at " << lo << " sign " << sign;
      ASSERT_EQ(to_half(toward_a), a) << lo;
      ASSERT_EQ(to_half(toward_b), b) << lo;
    }
    // Past the largest finite value: the midpoint to the next power of two rounds to inf (max is odd).
    const uint16_t inf = static_cast<uint16_t>(sign | (max_finite + 1));
    const double max = from_half(static_cast<uint16_t>(sign | max_finite));
    const double prev = from_half(static_cast<uint16_t>(sign | (max_finite - 1)));
    const float over = static_cast<float>(max + (max - prev) / 2);
    EXPECT_EQ(to_half(std::nextafter(over, 0.0f)), sign | max_finite);
    EXPECT_EQ(to_half(over), inf);
  }
}

TEST(ConversionTest, F16RoundsToNearestEvenEverywhere) { check_all_midpoints(f32_to_f16, f16_to_f32, 0x7BFF); }
TEST(ConversionTest, Bf16RoundsToNearestEvenEverywhere) { check_all_midpoints(f32_to_bf16, bf16_to_f32, 0x7F7F); }

// ---------------------------------------------------------------------------------------------------------------
// Round trips

std::vector<float> ramp(size_t n, float scale, float offset) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = offset + scale * static_cast<float>(i) * (i % 2 ? -1.0f : 1.0f);
  return v;
}

TEST_F(SafetensorsTest, RoundTripF32) {
  const auto a = ramp(6, 0.37f, 0.1f), b = ramp(24, -1.3e-3f, 7.0f), s = std::vector<float>{3.25f};
  const std::vector<TensorToWrite> ts = {{"layers.0.w", {2, 3}, a.data()},
                                         {"b", {2, 3, 4}, b.data()},
                                         {"scalar", {}, s.data()},
                                         {"empty", {0, 5}, nullptr}};
  write_safetensors(path("m.safetensors"), ts, DType::F32, {{"note", "hello"}});
  EXPECT_FALSE(fs::exists(path("m.safetensors.tmp")));

  const auto ar = SafetensorsArchive::open(path("m.safetensors"));
  ASSERT_EQ(ar.tensors().size(), 4u);
  for (size_t i = 0; i < ts.size(); ++i) EXPECT_EQ(ar.tensors()[i].name, ts[i].name);  // file order = write order
  const TensorInfo& w = ar.get("layers.0.w");
  EXPECT_EQ(w.dtype, DType::F32);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w.numel(), 6);
  EXPECT_EQ(w.nbytes, 24u);
  EXPECT_EQ(w.file, path("m.safetensors"));
  EXPECT_EQ(ar.read_f32("layers.0.w"), a);
  EXPECT_EQ(ar.read_f32("b"), b);
  EXPECT_EQ(ar.read_f32("scalar"), s);
  EXPECT_EQ(ar.get("scalar").numel(), 1);
  EXPECT_TRUE(ar.read_f32("empty").empty());
  EXPECT_EQ(ar.find("nope"), nullptr);
  EXPECT_EQ(ar.metadata().at("format"), "pt");
  EXPECT_EQ(ar.metadata().at("note"), "hello");
}

TEST_F(SafetensorsTest, HeaderIsPaddedWithSpacesToMultipleOf8) {
  for (size_t len = 1; len <= 8; ++len) {  // name lengths cover every padding amount
    const float v = 1.0f;
    write_safetensors(path("p.safetensors"), {{std::string(len, 'x'), {1}, &v}}, DType::F32);
    const std::string raw = read_bytes(path("p.safetensors"));
    uint64_t n;
    std::memcpy(&n, raw.data(), 8);
    EXPECT_EQ(n % 8, 0u);
    EXPECT_EQ(raw.size(), 8 + n + 4);
    const std::string header = raw.substr(8, n);
    const size_t last = header.find_last_not_of(' ');
    EXPECT_EQ(header[last], '}');
    EXPECT_GT(8u, n - last - 1);  // fewer than 8 spaces
    EXPECT_NE(header.find("\"format\":\"pt\""), std::string::npos);
  }
}

void round_trip_half(const std::string& file, DType dtype, float (*from)(uint16_t), uint16_t (*to)(float)) {
  // Exactly representable values first, then values that must round.
  const std::vector<float> exact = {0.0f, -0.0f, 1.0f, -2.0f, 0.5f, 1024.0f, -0.375f, 0x1p-14f};
  const std::vector<float> inexact = {0.1f, 3.14159265f, -1e-3f, 1e-6f, 12345.678f, -7e-8f, 70000.0f, 1e-30f};
  write_safetensors(file, {{"exact", {8}, exact.data()}, {"inexact", {2, 4}, inexact.data()}}, dtype);
  const auto ar = SafetensorsArchive::open(file);
  EXPECT_EQ(ar.get("exact").dtype, dtype);
  EXPECT_EQ(ar.get("exact").nbytes, 16u);
  const auto e = ar.read_f32("exact"), ie = ar.read_f32("inexact");
  for (size_t i = 0; i < exact.size(); ++i) EXPECT_EQ(bits(e[i]), bits(exact[i])) << i;
  for (size_t i = 0; i < inexact.size(); ++i) EXPECT_EQ(bits(ie[i]), bits(from(to(inexact[i])))) << i;
}

TEST_F(SafetensorsTest, RoundTripF16) { round_trip_half(path("h.safetensors"), DType::F16, f16_to_f32, f32_to_f16); }
TEST_F(SafetensorsTest, RoundTripBF16) {
  round_trip_half(path("b.safetensors"), DType::BF16, bf16_to_f32, f32_to_bf16);
}

TEST_F(SafetensorsTest, HalfWritesExactBitPatterns) {
  const std::vector<float> v = {1.0f, -2.0f, 0.1f};
  write_safetensors(path("b.safetensors"), {{"t", {3}, v.data()}}, DType::BF16);
  const std::string raw = read_bytes(path("b.safetensors"));
  std::vector<uint16_t> stored(3);
  std::memcpy(stored.data(), raw.data() + raw.size() - 6, 6);
  EXPECT_EQ(stored, (std::vector<uint16_t>{0x3F80, 0xC000, 0x3DCD}));  // 0.1f = 0x3DCCCCCD rounds up
}

TEST_F(SafetensorsTest, MixedIntAndUnalignedData) {
  // An odd-length F16 tensor leaves the next tensor's data on a 2-byte boundary: reads must not assume alignment.
  const std::vector<float> f = {1.5f, -0.25f, 8.0f};
  const std::vector<int32_t> ids = {0, -7, 2147483647, -2147483647 - 1};
  write_safetensors_mixed(path("x.safetensors"), {{"f", {3}, f.data()}}, DType::F16, {{"ids", {2, 2}, ids.data()}});
  const auto ar = SafetensorsArchive::open(path("x.safetensors"));
  EXPECT_EQ(ar.get("ids").dtype, DType::I32);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ar.get("ids").data) % 4, 2u);
  EXPECT_EQ(ar.read_i32("ids"), ids);
  EXPECT_EQ(ar.read_f32("f"), f);
  expect_error([&] { ar.read_f32("ids"); }, {"ids", "I32", path("x.safetensors")});
  expect_error([&] { ar.read_i32("f"); }, {"f", "F16", path("x.safetensors")});
}

TEST_F(SafetensorsTest, ReadsF64AndI64) {
  const std::vector<double> d = {1.0, -0.1, 1e300};
  const std::vector<int64_t> ok = {5, -5, 2147483647}, big = {1, 2147483648LL};
  write_raw(path("w.safetensors"),
            R"({"d":{"dtype":"F64","shape":[3],"data_offsets":[0,24]},)"
            R"("ok":{"dtype":"I64","shape":[3],"data_offsets":[24,48]},)"
            R"("big":{"dtype":"I64","shape":[2],"data_offsets":[48,64]}})",
            as_bytes(d) + as_bytes(ok) + as_bytes(big));
  const auto ar = SafetensorsArchive::open(path("w.safetensors"));
  const auto f = ar.read_f32("d");
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -0.1f);
  EXPECT_EQ(f[2], INFINITY);  // out of f32 range
  EXPECT_EQ(ar.read_i32("ok"), (std::vector<int32_t>{5, -5, 2147483647}));
  expect_error([&] { ar.read_i32("big"); }, {"big", "2147483648", "int32"});
  EXPECT_TRUE(ar.metadata().empty());
}

TEST_F(SafetensorsTest, TensorsInDataOffsetOrderAndEmptyHeader) {
  const std::vector<float> a = {1, 2}, b = {3};
  // Header lists b first, but a comes first in the data section; trailing spaces are legal padding.
  write_raw(
      path("o.safetensors"),
      R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   )",
      as_bytes(a) + as_bytes(b));
  const auto ar = SafetensorsArchive::open(path("o.safetensors"));
  ASSERT_EQ(ar.tensors().size(), 2u);
  EXPECT_EQ(ar.tensors()[0].name, "a");
  EXPECT_EQ(ar.read_f32("b"), b);

  write_raw(path("e.safetensors"), "{}", "");
  EXPECT_TRUE(SafetensorsArchive::open(path("e.safetensors")).tensors().empty());
}

TEST_F(SafetensorsTest, ArchiveIsMovable) {
  const auto v = ramp(10, 1.0f, 0.0f);
  write_safetensors(path("m.safetensors"), {{"v", {10}, v.data()}}, DType::F32);
  auto a = SafetensorsArchive::open(path("m.safetensors"));
  const uint8_t* data = a.get("v").data;
  SafetensorsArchive b = std::move(a);
  EXPECT_EQ(b.get("v").data, data);  // the mapping moved with it, not re-made
  EXPECT_EQ(b.read_f32("v"), v);
  auto c = SafetensorsArchive::open(path("m.safetensors"));
  c = std::move(b);
  EXPECT_EQ(c.read_f32("v"), v);
}

// ---------------------------------------------------------------------------------------------------------------
// Directories and shards

TEST_F(SafetensorsTest, DirSingleFileWhenItFits) {
  const auto v = ramp(16, 0.5f, 1.0f);
  write_safetensors_dir(path("out"), {{"a", {4, 4}, v.data()}, {"b", {16}, v.data()}}, DType::F32, 1000);
  EXPECT_TRUE(fs::exists(path("out/model.safetensors")));
  EXPECT_FALSE(fs::exists(path("out/model.safetensors.index.json")));
  const auto ar = SafetensorsArchive::open(path("out"));
  EXPECT_EQ(ar.read_f32("a"), v);
  EXPECT_EQ(ar.read_f32("b"), v);
  EXPECT_EQ(ar.metadata().at("format"), "pt");
}

TEST_F(SafetensorsTest, DirShardsWithIndex) {
  std::vector<std::vector<float>> data;
  std::vector<TensorToWrite> ts;
  for (int i = 0; i < 5; ++i) data.push_back(ramp(16, 0.1f * static_cast<float>(i + 1), static_cast<float>(i)));
  data.push_back(ramp(100, 2.0f, -1.0f));  // 400 bytes: bigger than a shard, so alone in one
  for (int i = 0; i < 5; ++i) ts.push_back({fmt::format("layer.{}.w", i), {4, 4}, data[i].data()});
  ts.push_back({"big", {10, 10}, data[5].data()});
  write_safetensors_dir(path("out"), ts, DType::F32, 150);  // 64-byte tensors: [0,1] [2,3] [4] [big]

  EXPECT_FALSE(fs::exists(path("out/model.safetensors")));
  for (int i = 1; i <= 4; ++i)
    EXPECT_TRUE(fs::exists(path(fmt::format("out/model-{:05d}-of-00004.safetensors", i)))) << i;
  const auto index = nlohmann::json::parse(read_bytes(path("out/model.safetensors.index.json")));
  EXPECT_EQ(index["metadata"]["total_size"], 5 * 64 + 400);
  EXPECT_EQ(index["weight_map"].size(), 6u);
  EXPECT_EQ(index["weight_map"]["layer.0.w"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.1.w"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.2.w"], "model-00002-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.4.w"], "model-00003-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["big"], "model-00004-of-00004.safetensors");
  for (int i = 1; i <= 3; ++i) {  // each shard within the limit
    const auto shard = SafetensorsArchive::open(path(fmt::format("out/model-{:05d}-of-00004.safetensors", i)));
    size_t bytes = 0;
    for (const auto& t : shard.tensors()) bytes += t.nbytes;
    EXPECT_LE(bytes, 150u);
    EXPECT_EQ(shard.metadata().at("format"), "pt");
  }

  const auto ar = SafetensorsArchive::open(path("out"));
  ASSERT_EQ(ar.tensors().size(), 6u);
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(ar.tensors()[i].name, ts[i].name);  // shard order, then data order = write order here
    EXPECT_EQ(ar.read_f32(ts[i].name), data[i]);
  }
  EXPECT_EQ(ar.get("big").file, path("out/model-00004-of-00004.safetensors"));
  EXPECT_EQ(ar.metadata().at("format"), "pt");
}

TEST_F(SafetensorsTest, DirRewriteRemovesStaleLayout) {
  const auto v = ramp(16, 1.0f, 0.0f), w = ramp(16, 2.0f, 0.0f);
  const std::vector<TensorToWrite> ts = {{"a", {16}, v.data()}, {"b", {16}, v.data()}};
  write_safetensors_dir(path("out"), ts, DType::F32, 64);  // two shards
  EXPECT_TRUE(fs::exists(path("out/model.safetensors.index.json")));
  write_bytes(path("out/config.json"), "{}");                                   // not ours: must survive every rewrite
  write_safetensors_dir(path("out"), {{"a", {16}, w.data()}}, DType::F32, 64);  // now a single file
  EXPECT_FALSE(fs::exists(path("out/model.safetensors.index.json")));
  EXPECT_FALSE(fs::exists(path("out/model-00001-of-00002.safetensors")));
  EXPECT_EQ(SafetensorsArchive::open(path("out")).read_f32("a"), w);

  write_safetensors_dir(path("out"), ts, DType::BF16, 40);  // back to shards: model.safetensors must go
  EXPECT_FALSE(fs::exists(path("out/model.safetensors")));
  EXPECT_EQ(SafetensorsArchive::open(path("out")).read_f32("b"), v);  // small integers: exact in bf16
  EXPECT_TRUE(fs::exists(path("out/config.json")));
}

TEST_F(SafetensorsTest, DirPrefersSingleFileOverIndex) {
  const float x = 1.0f, y = 2.0f;
  write_safetensors(path("model.safetensors"), {{"x", {1}, &x}}, DType::F32);
  write_bytes(path("model.safetensors.index.json"), R"({"weight_map":{"y":"other.safetensors"}})");
  write_safetensors(path("other.safetensors"), {{"y", {1}, &y}}, DType::F32);
  const auto ar = SafetensorsArchive::open(dir_.string());
  EXPECT_NE(ar.find("x"), nullptr);
  EXPECT_EQ(ar.find("y"), nullptr);
}

// ---------------------------------------------------------------------------------------------------------------
// Writer errors

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  const std::vector<float> v = {1, 2, 3, 4};
  const std::string f = path("w.safetensors");
  expect_error(
      [&] {
        write_safetensors(f, {{"a", {4}, v.data()}, {"a", {4}, v.data()}}, DType::F32);
      },
      {f, "duplicate", "a"});
  expect_error([&] { write_safetensors(f, {{"a", {4}, v.data()}}, DType::I32); }, {f, "I32"});
  expect_error([&] { write_safetensors(f, {{"a", {-1, 4}, v.data()}}, DType::F32); }, {f, "a", "[-1, 4]"});
  expect_error([&] { write_safetensors(f, {{"a", {4}, nullptr}}, DType::F32); }, {f, "a", "null"});
  expect_error([&] { write_safetensors(f, {{"__metadata__", {4}, v.data()}}, DType::F32); }, {f, "__metadata__"});
  const std::string missing_dir = path("no/such/dir/w.safetensors");
  expect_error([&] { write_safetensors(missing_dir, {{"a", {4}, v.data()}}, DType::F32); }, {missing_dir});
  EXPECT_FALSE(fs::exists(f));
}

// A write that runs out of space (simulated with RLIMIT_FSIZE, which makes write() fail with EFBIG) gives a clear
// error, leaves no temporary, and does not touch the existing file.
TEST_F(SafetensorsTest, WriteFailureLeavesOldFileIntact) {
  const std::string f = path("w.safetensors");
  const float one = 1.0f;
  write_safetensors(f, {{"old", {1}, &one}}, DType::F32);
  const std::string before = read_bytes(f);

  const std::vector<float> big(1 << 16, 0.5f);
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string msg;
  try {
    write_safetensors(f, {{"big", {1 << 16}, big.data()}}, DType::F32);
  } catch (const dsmoe::Error& e) {
    msg = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, old_handler);

  EXPECT_NE(msg.find(f), std::string::npos) << msg;
  EXPECT_NE(msg.find("write failed"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(f + ".tmp"));
  EXPECT_EQ(read_bytes(f), before);
}

// ---------------------------------------------------------------------------------------------------------------
// Reader errors: each malformed file gives one line naming the file and the tensor/field.

struct BadFile {
  const char* label;
  std::string header;
  std::string data;
  std::optional<uint64_t> length;  // the 8-byte header length, when it must lie
  std::vector<std::string> expect;
};

TEST_F(SafetensorsTest, MalformedFilesAreRejected) {
  const std::string d24(24, '\0'), d16(16, '\0');
  const std::string ok_w = R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})";
  const std::vector<BadFile> cases = {
      {"header length 0", "", "", 0, {"header length is 0"}},
      {"header too long", "{}", "", 200'000'000, {"200000000", "exceeds"}},
      {"header beyond file", "{}", "", 1000, {"1000", "beyond the end"}},
      {"bad json", R"({"w": {"dtype": )", "", {}, {"not valid JSON"}},
      {"not an object", "[1, 2]", "", {}, {"JSON object", "array"}},
      {"entry not object", R"({"w": 5})", "", {}, {"tensor w", "object"}},
      {"missing dtype", R"({"w":{"shape":[2,3],"data_offsets":[0,24]}})", d24, {}, {"tensor w", "dtype"}},
      {"missing shape", R"({"w":{"dtype":"F32","data_offsets":[0,24]}})", d24, {}, {"tensor w", "shape"}},
      {"missing offsets", R"({"w":{"dtype":"F32","shape":[2,3]}})", d24, {}, {"tensor w", "data_offsets"}},
      {"dtype not string", R"({"w":{"dtype":5,"shape":[2,3],"data_offsets":[0,24]}})", d24, {}, {"tensor w", "dtype"}},
      {"shape not array",
       R"({"w":{"dtype":"F32","shape":"2x3","data_offsets":[0,24]}})",
       d24,
       {},
       {"tensor w", "shape"}},
      {"shape of floats",
       R"({"w":{"dtype":"F32","shape":[2.0,3],"data_offsets":[0,24]}})",
       d24,
       {},
       {"tensor w", "shape"}},
      {"offsets not array",
       R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":"0-24"}})",
       d24,
       {},
       {"tensor w", "data_offsets"}},
      {"offsets wrong length",
       R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0]}})",
       d24,
       {},
       {"tensor w", "data_offsets"}},
      {"offsets of strings",
       R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,"24"]}})",
       d24,
       {},
       {"tensor w", "data_offsets"}},
      {"negative offset",
       R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[-1,23]}})",
       d24,
       {},
       {"tensor w", "data_offsets"}},
      {"begin after end",
       R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[24,0]}})",
       d24,
       {},
       {"tensor w", "data_offsets", "[24,0]"}},
      {"unknown dtype",
       R"({"w":{"dtype":"F8_E4M3","shape":[2,3],"data_offsets":[0,6]}})",
       d24,
       {},
       {"tensor w", "unknown dtype", "F8_E4M3"}},
      {"negative dim",
       R"({"w":{"dtype":"F32","shape":[-2,3],"data_offsets":[0,24]}})",
       d24,
       {},
       {"tensor w", "negative dimension"}},
      {"shape overflow",
       R"({"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,24]}})",
       d24,
       {},
       {"tensor w", "too large"}},
      {"wrong byte count",
       R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
       d24,
       {},
       {"tensor w: shape [2, 3] F32 needs 24 bytes but data_offsets span 20"}},
      {"truncated data",
       "{" + ok_w + "}",
       d16,
       {},
       {"truncated file: tensor w ends at byte 24 but the data section has 16 bytes"}},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
       d24,
       {},
       {"overlap", "a", "b"}},
      {"metadata not object", R"({"__metadata__":"pt",)" + ok_w + "}", d24, {}, {"__metadata__", "object"}},
      {"metadata non-string",
       R"({"__metadata__":{"format":1},)" + ok_w + "}",
       d24,
       {},
       {"__metadata__", "format", "string"}},
  };
  for (const BadFile& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string f = path("bad.safetensors");
    write_raw(f, c.header, c.data, c.length);
    std::vector<std::string> expect = c.expect;
    expect.push_back(f);
    expect_error([&] { SafetensorsArchive::open(f); }, expect);
  }
}

TEST_F(SafetensorsTest, ShortFilesAreRejected) {
  for (size_t n : {0u, 5u}) {
    write_bytes(path("s.safetensors"), std::string(n, '\x01'));
    expect_error([&] { SafetensorsArchive::open(path("s.safetensors")); },
                 {path("s.safetensors"), "shorter than the 8-byte"});
  }
}

TEST_F(SafetensorsTest, MissingPathsAndTensors) {
  expect_error([&] { SafetensorsArchive::open(path("nope.safetensors")); }, {path("nope.safetensors"), "no such"});
  fs::create_directory(path("empty"));
  expect_error([&] { SafetensorsArchive::open(path("empty")); },
               {path("empty"), "model.safetensors", "model.safetensors.index.json"});
  const float v = 1.0f;
  write_safetensors(path("m.safetensors"), {{"a", {1}, &v}}, DType::F32);
  const auto ar = SafetensorsArchive::open(path("m.safetensors"));
  expect_error([&] { ar.get("nope"); }, {"missing tensor nope in " + path("m.safetensors")});
  expect_error([&] { ar.read_f32("nope"); }, {"missing tensor nope"});
}

// A sharded directory: shard1 holds a, b; shard2 holds c. Each test then breaks one thing.
class ShardedErrorsTest : public SafetensorsTest {
 protected:
  void SetUp() override {
    SafetensorsTest::SetUp();
    write_safetensors(path("s1.safetensors"), {{"a", {2}, v}, {"b", {2}, v}}, DType::F32);
    write_safetensors(path("s2.safetensors"), {{"c", {2}, v}}, DType::F32);
  }
  void write_index(const std::string& weight_map) {
    write_bytes(path("model.safetensors.index.json"),
                R"({"metadata":{"total_size":24},"weight_map":)" + weight_map + "}");
  }
  std::string index() const { return path("model.safetensors.index.json"); }
  const float v[2] = {1, 2};
};

TEST_F(ShardedErrorsTest, ValidIndexLoads) {
  write_index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"})");
  const auto ar = SafetensorsArchive::open(dir_.string());
  EXPECT_EQ(ar.tensors().size(), 3u);
  EXPECT_EQ(ar.get("c").file, path("s2.safetensors"));
}

TEST_F(ShardedErrorsTest, MissingShard) {
  write_index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s3.safetensors"})");
  expect_error([&] { SafetensorsArchive::open(dir_.string()); }, {index(), "s3.safetensors", "does not exist"});
}

TEST_F(ShardedErrorsTest, TensorNotInWeightMap) {
  write_index(R"({"a":"s1.safetensors","c":"s2.safetensors"})");
  expect_error([&] { SafetensorsArchive::open(dir_.string()); },
               {index(), "tensor b", "s1.safetensors", "not in the weight_map"});
}

TEST_F(ShardedErrorsTest, WeightMapTensorAbsentFromShard) {
  write_index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s1.safetensors"})");
  expect_error([&] { SafetensorsArchive::open(dir_.string()); }, {index(), "tensor c", "s1.safetensors"});
}

TEST_F(ShardedErrorsTest, DuplicateAcrossShards) {
  write_safetensors(path("s2.safetensors"), {{"c", {2}, v}, {"a", {2}, v}}, DType::F32);
  write_index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"})");
  expect_error([&] { SafetensorsArchive::open(dir_.string()); },
               {"tensor a", path("s1.safetensors"), path("s2.safetensors"), "duplicate"});
}

TEST_F(ShardedErrorsTest, BrokenShardNamesItsFile) {
  write_index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"})");
  write_raw(path("s2.safetensors"), R"({"c":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234");
  expect_error([&] { SafetensorsArchive::open(dir_.string()); }, {path("s2.safetensors"), "truncated", "tensor c"});
}

TEST_F(ShardedErrorsTest, MalformedIndex) {
  write_bytes(index(), R"({"weight_map": {"a": )");
  expect_error([&] { SafetensorsArchive::open(dir_.string()); }, {index(), "not valid JSON"});
  write_bytes(index(), R"({"metadata": {}})");
  expect_error([&] { SafetensorsArchive::open(dir_.string()); }, {index(), "weight_map"});
  write_index(R"({"a": 1})");
  expect_error([&] { SafetensorsArchive::open(dir_.string()); }, {index(), "tensor a"});
  write_index("{}");
  expect_error([&] { SafetensorsArchive::open(dir_.string()); }, {index(), "empty"});
}

}  // namespace
