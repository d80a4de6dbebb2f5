// Deterministic test rows for the block quantizers, shared by tests/test_kquant.cpp and tools/ggml_ref (which
// writes ggml's results for the very same rows into tests/data/kquant_ggml_ref.txt).
//
// Both sides must see bit-identical floats although they are compiled with different flags (the tool with plain -O2,
// the test with -O3 -march=native, where GCC fuses a*b+c into an FMA). So every value is built from integers: an
// exact int64 computation, one int64 -> float conversion (round to nearest even) and a multiplication by a power of
// two (exact while the result stays normal); or directly from float bits. No libm, no float add that a compiler
// could fuse with a product.
//
// Self-contained apart from core/rng.h (itself header-only, no dependencies): the tool compiles it against ggml
// alone (-Isrc for the generator).
// Dimension legend: kRowLength = weights per row (one K-quant super-block, eight 32-weight blocks).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/rng.h"

namespace kquant_rows {

inline constexpr int kRowLength = 256;
inline constexpr int kRowCount = 12000;  // rows per type in the ggml comparison
inline constexpr int kChunkRows = 1000;  // rows per hash chunk
inline constexpr int kExampleRows = 16;  // the first rows are written out in full hex (one of each kind, then one)
inline constexpr int kRandomBlockRows = 1000;  // rows of random block bytes for the dequantizer comparison

// The kinds of rows, taken in turn (row r has kind r % kKindCount), so every chunk holds every kind.
enum class RowKind : int {
  Gaussian,       // N(0, s^2), s random in 2^-12 .. 2^7
  Uniform,        // uniform in [-s, s)
  Zero,           // all 0
  Constant,       // one random value repeated
  HugeRange,      // magnitudes log-uniform from ~1e-6 to ~1.6e4 within the row, random signs
  Outlier,        // gaussian with one value of magnitude 1e3..1.6e4 at a random position
  Denormal,       // subnormal floats, |x| < ~1.8e-40
  Tiny,           // gaussian at ~1e-20 (below ggml's 1e-15 "all zero" threshold)
  SmallScale,     // gaussian at 2^-45 .. 2^-16: above that threshold, but fp16 scales underflow or go subnormal
  NegativeOnly,   // -|gaussian|
  PositiveOnly,   // |gaussian|
  Offset,         // gaussian around a large offset (all one sign; the min of Q4_1/K-quants matters)
  SmallIntegers,  // integers in [-40, 40] times 2^-3 .. 2^3: exact ties for the rounding
  BlockScaled,    // gaussian whose 16-weight groups each have their own scale (2^0 .. 2^-10)
  Sparse,         // mostly zeros, some gaussian values
  kCount
};
inline constexpr int kKindCount = static_cast<int>(RowKind::kCount);

inline const char* row_kind_name(RowKind k) {
  static const char* const kNames[] = {"gaussian",      "uniform",  "zero",           "constant",     "huge-range",
                                       "outlier",       "denormal", "tiny",           "small-scale",  "negative-only",
                                       "positive-only", "offset",   "small-integers", "block-scaled", "sparse"};
  return kNames[static_cast<int>(k)];
}
inline RowKind row_kind(int row) { return static_cast<RowKind>(row % kKindCount); }

// splitmix64: a small, well-mixed generator; one stream per row so any row can be rebuilt alone.
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() { return dsmoe::splitmix64_next(state); }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }  // [0, n)
  int64_t between(int64_t lo, int64_t hi) { return lo + below(hi - lo + 1); }                   // [lo, hi]
  int64_t bits24() { return static_cast<int64_t>(next() >> 40); }                               // [0, 2^24)
  // An approximately standard normal integer in units of 2^-24 (Irwin-Hall: 12 uniforms, mean 0, variance 1).
  int64_t gaussian24() {
    int64_t s = 0;
    for (int i = 0; i < 12; ++i) s += bits24();
    return s - 6 * (int64_t{1} << 24);
  }
};

inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// 2^e for a normal exponent e in [-126, 127], from its bits (exact, no libm).
inline float pow2(int e) { return from_bits(static_cast<uint32_t>(e + 127) << 23); }
// n * 2^e: one rounding (int64 -> float), then an exact scaling (callers keep the result normal or zero).
inline float scaled(int64_t n, int e) {
  const float v = static_cast<float>(n);
  return e >= -126 ? v * pow2(e) : v * pow2(-126) * pow2(e + 126);
}
// A float with a random 23-bit mantissa, the given exponent and sign.
inline float random_float(Rng& r, int exponent, bool negative) {
  const uint32_t mant = static_cast<uint32_t>(r.next() >> 41);  // 23 bits
  return from_bits((negative ? 0x80000000u : 0u) | (static_cast<uint32_t>(exponent + 127) << 23) | mant);
}

// Row `row` (kRowLength floats) into x.
inline void make_row(int row, float* x) {
  Rng r(0x6b71756e74ull * 1000003ull + static_cast<uint64_t>(row) * 0x2545f4914f6cdd1dull);
  const int n = kRowLength;
  // A gaussian integer times an 8-bit scale mantissa; value = that * 2^(e - 31), i.e. ~N(0, (m/128 * 2^e)^2).
  auto gauss_with_scale = [&r](int64_t mant8, int e) { return scaled(r.gaussian24() * mant8, e - 31); };
  switch (row_kind(row)) {
    case RowKind::Gaussian: {
      const int64_t m = r.between(128, 255);
      const int e = static_cast<int>(r.between(-12, 7));
      for (int i = 0; i < n; ++i) x[i] = gauss_with_scale(m, e);
      break;
    }
    case RowKind::Uniform: {
      const int e = static_cast<int>(r.between(-8, 6));
      for (int i = 0; i < n; ++i) x[i] = scaled(r.bits24() - (int64_t{1} << 23), e - 23);
      break;
    }
    case RowKind::Zero:
      for (int i = 0; i < n; ++i) x[i] = 0.0f;
      break;
    case RowKind::Constant: {
      const float c = gauss_with_scale(r.between(128, 255), static_cast<int>(r.between(-10, 6)));
      for (int i = 0; i < n; ++i) x[i] = c;
      break;
    }
    case RowKind::HugeRange:
      for (int i = 0; i < n; ++i) x[i] = random_float(r, static_cast<int>(r.between(-20, 13)), r.next() & 1);
      break;
    case RowKind::Outlier: {
      const int64_t m = r.between(128, 255);
      const int e = static_cast<int>(r.between(-4, 0));
      for (int i = 0; i < n; ++i) x[i] = gauss_with_scale(m, e);
      x[r.below(n)] = random_float(r, static_cast<int>(r.between(10, 13)), r.next() & 1);
      break;
    }
    case RowKind::Denormal:
      for (int i = 0; i < n; ++i) {
        const uint32_t mant = static_cast<uint32_t>(r.next() >> 47);  // < 2^17: |x| < 2^-132 ~ 1.8e-40
        x[i] = from_bits(((r.next() & 1) ? 0x80000000u : 0u) | mant);
      }
      break;
    case RowKind::Tiny:
      for (int i = 0; i < n; ++i) x[i] = gauss_with_scale(r.between(128, 255), -66);
      break;
    case RowKind::SmallScale: {
      const int64_t m = r.between(128, 255);
      const int e = static_cast<int>(r.between(-45, -16));
      for (int i = 0; i < n; ++i) x[i] = gauss_with_scale(m, e);
      break;
    }
    case RowKind::NegativeOnly:
    case RowKind::PositiveOnly: {
      const int64_t m = r.between(128, 255);
      const int e = static_cast<int>(r.between(-10, 5));
      const bool negative = row_kind(row) == RowKind::NegativeOnly;
      for (int i = 0; i < n; ++i) {
        int64_t g = r.gaussian24();
        if ((g < 0) != negative) g = -g;
        x[i] = scaled(g * m, e - 31);
      }
      break;
    }
    case RowKind::Offset: {
      // offset of 2..20 standard deviations, either sign; summed as integers (no float add)
      const int64_t m = r.between(128, 255);
      const int e = static_cast<int>(r.between(-10, 5));
      int64_t offset = r.between(2, 20) * (int64_t{1} << 24) * m;
      if (r.next() & 1) offset = -offset;
      for (int i = 0; i < n; ++i) x[i] = scaled(r.gaussian24() * m + offset, e - 31);
      break;
    }
    case RowKind::SmallIntegers: {
      const int e = static_cast<int>(r.between(-3, 3));
      const int64_t range = r.between(1, 40);
      for (int i = 0; i < n; ++i) x[i] = scaled(r.between(-range, range), e);
      break;
    }
    case RowKind::BlockScaled: {
      const int64_t m = r.between(128, 255);
      const int e = static_cast<int>(r.between(-6, 4));
      for (int g = 0; g < n / 16; ++g) {
        const int ge = e - static_cast<int>(r.between(0, 10));
        for (int i = 16 * g; i < 16 * g + 16; ++i) x[i] = gauss_with_scale(m, ge);
      }
      break;
    }
    case RowKind::Sparse: {
      const int64_t m = r.between(128, 255);
      const int e = static_cast<int>(r.between(-8, 4));
      for (int i = 0; i < n; ++i) x[i] = r.below(8) == 0 ? gauss_with_scale(m, e) : 0.0f;
      break;
    }
    case RowKind::kCount: break;
  }
}

// ---- random block bytes, for comparing dequantizers on arbitrary codes ----

// Where the fp16 scale fields of each block type sit (ggml-common.h), so random bytes can be made finite there:
// {ggml type id, block weights, block bytes, fp16 field offsets (up to 2; -1 = none)}. The tool static_asserts this
// table against ggml's own structs.
struct BlockLayout {
  uint32_t ggml_type;
  int block_weights;
  int block_bytes;
  int half_offsets[2];
};
inline constexpr BlockLayout kLayouts[] = {
    {2, 32, 18, {0, -1}},       // Q4_0:   d, qs[16]
    {3, 32, 20, {0, 2}},        // Q4_1:   d, m, qs[16]
    {6, 32, 22, {0, -1}},       // Q5_0:   d, qh[4], qs[16]
    {7, 32, 24, {0, 2}},        // Q5_1:   d, m, qh[4], qs[16]
    {8, 32, 34, {0, -1}},       // Q8_0:   d, qs[32]
    {10, 256, 84, {80, 82}},    // Q2_K: scales[16], qs[64], d, dmin
    {11, 256, 110, {108, -1}},  // Q3_K: hmask[32], qs[64], scales[12], d
    {12, 256, 144, {0, 2}},     // Q4_K: d, dmin, scales[12], qs[128]
    {13, 256, 176, {0, 2}},     // Q5_K: d, dmin, scales[12], qh[32], qs[128]
    {14, 256, 210, {208, -1}},  // Q6_K: ql[128], qh[64], scales[16], d
    {20, 32, 18, {0, -1}},      // IQ4_NL: d, qs[16]
};
inline const BlockLayout* layout_of(uint32_t ggml_type) {
  for (const BlockLayout& l : kLayouts)
    if (l.ggml_type == ggml_type) return &l;
  return nullptr;
}

// Row `row` of random block bytes for a row of kRowLength weights of the given layout: every byte random, except
// that an fp16 scale whose exponent is all ones (inf/NaN) gets its top exponent bit cleared (finite).
inline void make_random_blocks(const BlockLayout& layout, int row, uint8_t* out) {
  Rng r(0x626c6f636bull + static_cast<uint64_t>(row) * 0x9e3779b97f4a7c15ull + layout.ggml_type);
  const int blocks = kRowLength / layout.block_weights;
  for (int i = 0; i < blocks * layout.block_bytes; ++i) out[i] = static_cast<uint8_t>(r.next() >> 56);
  for (int b = 0; b < blocks; ++b)
    for (int off : layout.half_offsets) {
      if (off < 0) continue;
      uint8_t* hi = out + b * layout.block_bytes + off + 1;  // little-endian: the exponent is in the high byte
      if ((*hi & 0x7c) == 0x7c) *hi = static_cast<uint8_t>(*hi & ~0x40);
    }
}

// FNV-1a, 64 bit, over a byte stream (chunk hashes of the reference file).
struct Fnv1a {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  }
};

}  // namespace kquant_rows
