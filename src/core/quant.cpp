// GGML weight types: block quantization (ggml's reference rounding), conversions and dot products.
#include "core/quant.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DSMOE_QUANT_X86 1
#endif

#include "core/error.h"
#include "core/kquant.h"
#include "core/qdot.h"
#include "core/vecmath.h"

namespace dsmoe {

namespace {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest, ties to even; overflow -> inf; NaN stays NaN (quiet). Integer-only, so no compiler contraction
// or rounding mode can change it. Same results as F16C's vcvtps2ph with rounding mode 0 (what ggml uses on x86).
uint16_t f32_to_f16(float f) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (ax >= 0x38800000u) {                                              // normal half (>= 2^-14)
    const uint32_t mant = ax & 0x7fffffu;
    const uint32_t e = (ax >> 23) - 127 + 15;
    uint32_t h = (e << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is right
    return static_cast<uint16_t>(sign | h);
  }
  if (ax < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25 (ties at 2^-25 go to even = 0 below too)
  const uint32_t e = ax >> 23;                               // 102..112
  const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - e;  // 14..24
  uint32_t h = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24, exact
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_bf16(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
inline float bf16_to_f32(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

void check_blocks(QuantType t, int64_t n) {
  const int64_t bs = quant_block_size(t);
  check(n >= 0 && n % bs == 0, "{}: {} weights is not a multiple of the block size {}", quant_type_name(t), n, bs);
}

// The two block types whose kernels live in this file; the others are in kquant.cpp / qdot.cpp.
inline bool is_q8_0_or_q4_0(QuantType t) { return t == QuantType::Q8_0 || t == QuantType::Q4_0; }

// Other block types in the float-activation dot product (tests and references only): dequantized, then the F32 row.
thread_local std::vector<float> t_dequant_row;
const float* dequantized(QuantType t, const uint8_t* row, int64_t n) {
  t_dequant_row.resize(static_cast<size_t>(n));
  dequantize_row(t, row, t_dequant_row.data(), n);
  return t_dequant_row.data();
}

}  // namespace

namespace {
struct TypeInfo {
  QuantType type;
  const char* name;
  int64_t block;  // weights per block
  size_t bytes;   // bytes per block (ggml-common.h)
};
// ggml-common.h: Q4_1 = d, m, qs[16]; Q5_0 = d, qh[4], qs[16]; Q5_1 = d, m, qh[4], qs[16]; IQ4_NL = d, qs[16];
// Q2_K = scales[16], qs[64], d, dmin; Q3_K = hmask[32], qs[64], scales[12], d; Q4_K = d, dmin, scales[12], qs[128];
// Q5_K = d, dmin, scales[12], qh[32], qs[128]; Q6_K = ql[128], qh[64], scales[16], d.
constexpr TypeInfo kTypeInfo[] = {
    {QuantType::F32, "F32", 1, 4},         {QuantType::F16, "F16", 1, 2},       {QuantType::Q4_0, "Q4_0", 32, 18},
    {QuantType::Q4_1, "Q4_1", 32, 20},     {QuantType::Q5_0, "Q5_0", 32, 22},   {QuantType::Q5_1, "Q5_1", 32, 24},
    {QuantType::Q8_0, "Q8_0", 32, 34},     {QuantType::Q2_K, "Q2_K", 256, 84},  {QuantType::Q3_K, "Q3_K", 256, 110},
    {QuantType::Q4_K, "Q4_K", 256, 144},   {QuantType::Q5_K, "Q5_K", 256, 176}, {QuantType::Q6_K, "Q6_K", 256, 210},
    {QuantType::IQ4_NL, "IQ4_NL", 32, 18}, {QuantType::BF16, "BF16", 1, 2},
};
const TypeInfo* type_info(uint32_t id) {
  for (const TypeInfo& i : kTypeInfo)
    if (static_cast<uint32_t>(i.type) == id) return &i;
  return nullptr;
}
const TypeInfo& info_of(QuantType t) {
  const TypeInfo* i = type_info(static_cast<uint32_t>(t));
  if (i == nullptr) fail("unknown weight type id {}", static_cast<uint32_t>(t));
  return *i;
}
}  // namespace

uint16_t fp32_to_fp16(float f) { return f32_to_f16(f); }
float fp16_to_fp32(uint16_t h) { return f16_to_f32(h); }

const char* quant_type_name(QuantType t) {
  const TypeInfo* i = type_info(static_cast<uint32_t>(t));
  return i ? i->name : "?";
}

std::string ggml_type_name(uint32_t id) {
  // ggml.h enum ggml_type, for naming types dsmoe does not read.
  static const char* const kNames[] = {
      "F32",     "F16",   "Q4_0",   "Q4_1",  "Q4_2",     "Q4_3",     "Q5_0",     "Q5_1",    "Q8_0",
      "Q8_1",    "Q2_K",  "Q3_K",   "Q4_K",  "Q5_K",     "Q6_K",     "Q8_K",     "IQ2_XXS", "IQ2_XS",
      "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",    "IQ4_XS",   "I8",       "I16",     "I32",
      "I64",     "F64",   "IQ1_M",  "BF16",  "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",   "TQ2_0"};
  if (id < sizeof(kNames) / sizeof(kNames[0])) return kNames[id];
  return fmt::format("type {}", id);
}

QuantType quant_type_from_name(const std::string& name) {
  std::string u = name;
  for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const TypeInfo& i : kTypeInfo)
    if (u == i.name) return i.type;
  fail(
      "unknown weight type '{}' (expected f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k, q3_k, q4_k, "
      "q5_k or q6_k)",
      name);
}

bool quant_type_known(uint32_t id) { return type_info(id) != nullptr; }

int64_t quant_block_size(QuantType t) { return info_of(t).block; }

size_t quant_block_bytes(QuantType t) { return info_of(t).bytes; }

bool quant_is_block(QuantType t) { return info_of(t).block > 1; }

size_t quant_row_bytes(QuantType t, int64_t n) {
  check_blocks(t, n);
  return static_cast<size_t>(n / quant_block_size(t)) * quant_block_bytes(t);
}

// ggml-quants.c is C compiled in ISO mode, where GCC does not contract x*id + 8.5f into an fma; -march=native
// C++ (gnu++20) would, and that changes the truncated value for some inputs. Keep the product rounded.
#if defined(__GNUC__) && !defined(__clang__)
#define DSMOE_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define DSMOE_NO_FP_CONTRACT
#endif

DSMOE_NO_FP_CONTRACT void quantize_row_q8_0(const float* x, uint8_t* dst, int64_t n) {
  check_blocks(QuantType::Q8_0, n);
  for (int64_t b = 0; b < n / 32; ++b, x += 32, dst += 34) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(dst, f32_to_f16(d));
    for (int j = 0; j < 32; ++j) dst[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[j] * id)));
  }
}

DSMOE_NO_FP_CONTRACT void quantize_row_q4_0(const float* x, uint8_t* dst, int64_t n) {
  check_blocks(QuantType::Q4_0, n);
  for (int64_t b = 0; b < n / 32; ++b, x += 32, dst += 18) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(dst, f32_to_f16(d));
    for (int j = 0; j < 16; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[16 + j] * id;
      const uint8_t xi0 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 8.5f))));
      const uint8_t xi1 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 8.5f))));
      dst[2 + j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
}

void dequantize_row_q8_0(const uint8_t* src, float* y, int64_t n) {
  check_blocks(QuantType::Q8_0, n);
  for (int64_t b = 0; b < n / 32; ++b, src += 34, y += 32) {
    const float d = f16_to_f32(load_u16(src));
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(src[2 + j])) * d;
  }
}

void dequantize_row_q4_0(const uint8_t* src, float* y, int64_t n) {
  check_blocks(QuantType::Q4_0, n);
  for (int64_t b = 0; b < n / 32; ++b, src += 18, y += 32) {
    const float d = f16_to_f32(load_u16(src));
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((src[2 + j] & 0x0f) - 8) * d;
      y[j + 16] = static_cast<float>((src[2 + j] >> 4) - 8) * d;
    }
  }
}

#if defined(DSMOE_QUANT_X86)
// F32 -> F16 eight at a time (F16C, round to nearest even): the same bits as f32_to_f16 for every input, NaNs
// included (test_qdot checks). Appending K and V rows to an F16 cache goes through it.
__attribute__((target("avx2,f16c"))) static void f32_row_to_f16_f16c(const float* x, uint8_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) store_u16(dst + 2 * i, f32_to_f16(x[i]));
}
#endif

void quantize_row(QuantType t, const float* x, uint8_t* dst, int64_t n) {
  switch (t) {
    case QuantType::F32: std::memcpy(dst, x, static_cast<size_t>(n) * 4); return;
    case QuantType::F16:
#if defined(DSMOE_QUANT_X86)
      if (quant_have_avx2()) return f32_row_to_f16_f16c(x, dst, n);
#endif
      for (int64_t i = 0; i < n; ++i) store_u16(dst + 2 * i, f32_to_f16(x[i]));
      return;
    case QuantType::BF16:
      for (int64_t i = 0; i < n; ++i) store_u16(dst + 2 * i, f32_to_bf16(x[i]));
      return;
    case QuantType::Q8_0: quantize_row_q8_0(x, dst, n); return;
    case QuantType::Q4_0: quantize_row_q4_0(x, dst, n); return;
    default: kquant_quantize_row(t, x, dst, n); return;
  }
  fail("quantize: unknown weight type id {}", static_cast<uint32_t>(t));
}

#if defined(DSMOE_QUANT_X86)
// F16 -> F32 eight at a time (F16C): the conversion is exact, so the bits equal the scalar loop's. The decode
// attention of an F16 KV cache widens a V row per position and head with it.
__attribute__((target("avx2,f16c"))) static void f16_row_to_f32_f16c(const uint8_t* src, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
  for (; i < n; ++i) y[i] = f16_to_f32(load_u16(src + 2 * i));
}
#endif

void dequantize_row(QuantType t, const uint8_t* src, float* y, int64_t n) {
  switch (t) {
    case QuantType::F32: std::memcpy(y, src, static_cast<size_t>(n) * 4); return;
    case QuantType::F16:
#if defined(DSMOE_QUANT_X86)
      if (quant_have_avx2()) return f16_row_to_f32_f16c(src, y, n);
#endif
      for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(load_u16(src + 2 * i));
      return;
    case QuantType::BF16:
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(load_u16(src + 2 * i));
      return;
    case QuantType::Q8_0: dequantize_row_q8_0(src, y, n); return;
    case QuantType::Q4_0: dequantize_row_q4_0(src, y, n); return;
    default: kquant_dequantize_row(t, src, y, n); return;
  }
  fail("dequantize: unknown weight type id {}", static_cast<uint32_t>(t));
}

// ---- dot products ----
// Order (both paths): float rows: four accumulators of 8 lanes; accumulator k, lane l takes i = 32j + 8k + l with
// fmaf over the first n - n%32 elements, then accumulator 0 takes the remaining whole groups of 8; lanes are
// combined as (a0 + a1) + (a2 + a3) and reduced with hsum8; the last n%8 elements are fmaf-ed on in order. Block rows:
// per block, lane l accumulates weights l, l+8, l+16, l+24 (as integer value q, times x) with fmaf; the block sum
// hsum8(lanes) is scaled and added: total = fmaf(d, block_sum, total).

float quant_dot_scalar(QuantType t, const uint8_t* row, const float* x, int64_t n) {
  check_blocks(t, n);
  if (quant_is_block(t) && !is_q8_0_or_q4_0(t))
    return quant_dot_scalar(QuantType::F32, reinterpret_cast<const uint8_t*>(dequantized(t, row, n)), x, n);
  if (!quant_is_block(t)) {
    auto w = [&](int64_t i) -> float {
      if (t == QuantType::F32) {
        float v;
        std::memcpy(&v, row + 4 * i, 4);
        return v;
      }
      return t == QuantType::F16 ? f16_to_f32(load_u16(row + 2 * i)) : bf16_to_f32(load_u16(row + 2 * i));
    };
    float acc[4][8] = {};
    const int64_t n32 = n - n % 32, n8 = n - n % 8;
    for (int64_t i = 0; i < n32; i += 32)
      for (int k = 0; k < 4; ++k)
        for (int l = 0; l < 8; ++l) acc[k][l] = std::fmaf(w(i + 8 * k + l), x[i + 8 * k + l], acc[k][l]);
    for (int64_t i = n32; i < n8; i += 8)
      for (int l = 0; l < 8; ++l) acc[0][l] = std::fmaf(w(i + l), x[i + l], acc[0][l]);
    float lanes[8];
    for (int l = 0; l < 8; ++l) lanes[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    float total = hsum8(lanes);
    for (int64_t i = n8; i < n; ++i) total = std::fmaf(w(i), x[i], total);
    return total;
  }
  const size_t bb = quant_block_bytes(t);
  float total = 0.0f;
  for (int64_t b = 0; b < n / 32; ++b, row += bb, x += 32) {
    const float d = f16_to_f32(load_u16(row));
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 8; ++l) {
        const int j = g * 8 + l;
        int q;
        if (t == QuantType::Q8_0)
          q = static_cast<int8_t>(row[2 + j]);
        else
          q = (j < 16 ? (row[2 + j] & 0x0f) : (row[2 + j - 16] >> 4)) - 8;
        acc[l] = std::fmaf(static_cast<float>(q), x[j], acc[l]);
      }
    total = std::fmaf(d, hsum8(acc), total);
  }
  return total;
}

bool quant_have_avx2() {
#if defined(DSMOE_QUANT_X86)
  static const bool have =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return have;
#else
  return false;
#endif
}

#if defined(DSMOE_QUANT_X86)
namespace {
__attribute__((target("avx2,fma,f16c"))) inline float hsum_avx(__m256 v) {
  alignas(32) float a[8];
  _mm256_store_ps(a, v);
  return hsum8(a);
}

// Weights i..i+7 of an F32/F16/BF16 row as floats.
__attribute__((target("avx2,fma,f16c"))) inline __m256 load_float8(QuantType t, const uint8_t* row, int64_t i) {
  if (t == QuantType::F32) return _mm256_loadu_ps(reinterpret_cast<const float*>(row + 4 * i));
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
  if (t == QuantType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2,fma,f16c"))) float dot_avx2(QuantType t, const uint8_t* row, const float* x, int64_t n) {
  if (!quant_is_block(t)) {
    // Four independent accumulators: one chain of dependent FMAs would cap a core at 32 bytes per FMA latency,
    // below what memory delivers.
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    const int64_t n32 = n - n % 32, n8 = n - n % 8;
    for (int64_t i = 0; i < n32; i += 32) {
      acc0 = _mm256_fmadd_ps(load_float8(t, row, i), _mm256_loadu_ps(x + i), acc0);
      acc1 = _mm256_fmadd_ps(load_float8(t, row, i + 8), _mm256_loadu_ps(x + i + 8), acc1);
      acc2 = _mm256_fmadd_ps(load_float8(t, row, i + 16), _mm256_loadu_ps(x + i + 16), acc2);
      acc3 = _mm256_fmadd_ps(load_float8(t, row, i + 24), _mm256_loadu_ps(x + i + 24), acc3);
    }
    for (int64_t i = n32; i < n8; i += 8) acc0 = _mm256_fmadd_ps(load_float8(t, row, i), _mm256_loadu_ps(x + i), acc0);
    float total = hsum_avx(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (int64_t i = n8; i < n; ++i) {
      float w;
      if (t == QuantType::F32)
        std::memcpy(&w, row + 4 * i, 4);
      else if (t == QuantType::F16)
        w = f16_to_f32(load_u16(row + 2 * i));
      else
        w = bf16_to_f32(load_u16(row + 2 * i));
      total = std::fmaf(w, x[i], total);
    }
    return total;
  }
  const size_t bb = quant_block_bytes(t);
  float total = 0.0f;
  for (int64_t b = 0; b < n / 32; ++b, row += bb, x += 32) {
    const float d = f16_to_f32(load_u16(row));
    __m128i lo, hi;  // weights 0-15 and 16-31 as int8
    if (t == QuantType::Q8_0) {
      lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2));
      hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 18));
    } else {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2));
      const __m128i mask = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
      lo = _mm_sub_epi8(_mm_and_si128(bytes, mask), eight);
      hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), eight);
    }
    __m256 acc = _mm256_setzero_ps();
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(x), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(x + 8), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(x + 16), acc);
    acc =
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(x + 24), acc);
    total = std::fmaf(d, hsum_avx(acc), total);
  }
  return total;
}
}  // namespace
#endif

float quant_dot_avx2(QuantType t, const uint8_t* row, const float* x, int64_t n) {
#if defined(DSMOE_QUANT_X86)
  if (quant_have_avx2()) {
    check_blocks(t, n);
    if (quant_is_block(t) && !is_q8_0_or_q4_0(t))
      return dot_avx2(QuantType::F32, reinterpret_cast<const uint8_t*>(dequantized(t, row, n)), x, n);
    return dot_avx2(t, row, x, n);
  }
#endif
  return quant_dot_scalar(t, row, x, n);
}

float quant_dot(QuantType t, const uint8_t* row, const float* x, int64_t n) {
  return quant_have_avx2() ? quant_dot_avx2(t, row, x, n) : quant_dot_scalar(t, row, x, n);
}

// ---- integer dot products against 8-bit activations ----

ActFormat act_format(QuantType weights) {
  return quant_block_size(weights) == kQK_K ? ActFormat::Q8_K : ActFormat::Q8_0;
}

// ggml's quantize_row_q8_0 (and q8_1) on x86: the multiplier is 127/amax (not 1/d), rounding is to nearest even,
// the scale is stored in fp16.
DSMOE_NO_FP_CONTRACT void quantize_act_q8(const float* x, int8_t* xq, float* xd, int32_t* xsum, int64_t n) {
  check_blocks(QuantType::Q8_0, n);
  for (int64_t b = 0; b < n / 32; ++b, x += 32, xq += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    // Below 127/FLT_MAX the multiplier overflows; the fp16 scale is then 0 and every product 0 (ggml's ints there
    // are saturated -128s, ours zeros).
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    if (!std::isfinite(id)) id = 0.0f;
    xd[b] = fp16_to_fp32(fp32_to_fp16(amax / 127.0f));
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) {
      xq[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
      sum += xq[j];
    }
    xsum[b] = sum;
  }
}

// ggml's quantize_row_q8_K_ref: the signed value of largest magnitude (first one) sets iscale = -127/max, so the
// largest weight maps to -127 and the rest within [-127, 127]; d = 1/iscale is kept in f32.
DSMOE_NO_FP_CONTRACT void quantize_act_q8_k(const float* x, int8_t* xq, float* xd, int32_t* xsum, int64_t n) {
  check(n % kQK_K == 0, "Q8_K activations: {} is not a multiple of {}", n, kQK_K);
  for (int64_t sb = 0; sb < n / kQK_K; ++sb, x += kQK_K, xq += kQK_K, xd += 8, xsum += 8) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK_K; ++j)
      if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
    const float iscale = amax != 0.0f ? -127.0f / max : 0.0f;
    const float d = amax != 0.0f ? 1.0f / iscale : 0.0f;
    // Below 127/FLT_MAX, iscale is infinite and d = -+0: ggml's rounding trick then yields 0 for every value.
    const bool overflow = !std::isfinite(iscale);
    for (int b = 0; b < 8; ++b) {
      int32_t sum = 0;
      for (int j = 32 * b; j < 32 * b + 32; ++j) {
        xq[j] = overflow ? 0 : static_cast<int8_t>(std::min(127.0f, std::nearbyint(iscale * x[j])));
        sum += xq[j];
      }
      xd[b] = d;
      xsum[b] = sum;
    }
  }
}

void quantize_act(ActFormat f, const float* x, int8_t* xq, float* xd, int32_t* xsum, int64_t n) {
  if (f == ActFormat::Q8_K)
    quantize_act_q8_k(x, xq, xd, xsum, n);
  else
    quantize_act_q8(x, xq, xd, xsum, n);
}

namespace {
// Weight j (0..31) of a Q8_0 / Q4_0 block as a signed integer.
inline int block_weight(QuantType t, const uint8_t* block, int j) {
  if (t == QuantType::Q8_0) return static_cast<int8_t>(block[2 + j]);
  return (j < 16 ? (block[2 + j] & 0x0f) : (block[2 + j - 16] >> 4)) - 8;
}

// Not auto-vectorised: GCC 12 with -march=native on AVX512-VNNI CPUs turns this signed x signed int8 reduction into
// vpdpbusd, which reads one operand as unsigned (a wrong sum whenever a weight is negative; found by
// IntegerDot.ScalarEqualsSimdBitForBit). The SIMD kernels below do the unsigned forms explicitly.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-vectorize")))
#endif
int32_t
block_dot(QuantType t, const uint8_t* block, const int8_t* xq) {
  int32_t sum = 0;
  for (int j = 0; j < 32; ++j) sum += block_weight(t, block, j) * xq[j];
  return sum;
}
}  // namespace

float quant_dot_q8act_scalar(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                             int64_t n) {
  check(quant_is_block(t), "integer dot products need a block-quantized row, not {}", quant_type_name(t));
  check_blocks(t, n);
  if (!is_q8_0_or_q4_0(t)) return qdot_q8act_scalar(t, row, xq, xd, xsum, n);
  (void)xsum;  // the SIMD paths use it for their unsigned-weight forms; the sums here are already signed
  const size_t bb = quant_block_bytes(t);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* block = row + b * bb;
    const float dd = f16_to_f32(load_u16(block)) * xd[b];
    acc[b % 8] = std::fmaf(dd, static_cast<float>(block_dot(t, block, xq + 32 * b)), acc[b % 8]);
  }
  return hsum8(acc);
}

#if defined(DSMOE_QUANT_X86)
namespace {
// Eight blocks at a time: each block's exact integer dot product as 8 int32 partial sums (one 256-bit product),
// the eight blocks' partial sums reduced to one int32 each by a horizontal-add tree, then one vector multiply-add
// with the eight scales. Variants differ only in the 8-bit product: AVX2 (maddubs + madd, weights made unsigned
// by the sign trick or, for Q4_0, already unsigned) or VNNI's dpbusd (u8 x s8 -> s32 in one instruction).
//
// Unsigned weight forms subtract a multiple of the activation block sum afterwards: Q4_0 stores q + 8 (0..15),
// Q8_0 under VNNI is read as w ^ 0x80 = w + 128.

#define DSMOE_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define DSMOE_TARGET_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))

// Sum of the 8 lanes of each of v[0..7] -> lane k of the result (exact int32).
#define DSMOE_HADD_TREE(v)                                                                         \
  ({                                                                                               \
    const __m256i s01 = _mm256_hadd_epi32(v[0], v[1]), s23 = _mm256_hadd_epi32(v[2], v[3]);        \
    const __m256i s45 = _mm256_hadd_epi32(v[4], v[5]), s67 = _mm256_hadd_epi32(v[6], v[7]);        \
    const __m256i t0 = _mm256_hadd_epi32(s01, s23), t1 = _mm256_hadd_epi32(s45, s67);              \
    const __m128i u0 = _mm_add_epi32(_mm256_castsi256_si128(t0), _mm256_extracti128_si256(t0, 1)); \
    const __m128i u1 = _mm_add_epi32(_mm256_castsi256_si128(t1), _mm256_extracti128_si256(t1, 1)); \
    _mm256_set_m128i(u1, u0);                                                                      \
  })

// The 8 fp16 weight scales of blocks b0..b0+7 times the activation scales.
#define DSMOE_SCALES(row, bb, b0, xd)                                                                           \
  _mm256_mul_ps(                                                                                                \
      _mm256_cvtph_ps(_mm_set_epi16(                                                                            \
          static_cast<short>(load_u16(row + (b0 + 7) * bb)), static_cast<short>(load_u16(row + (b0 + 6) * bb)), \
          static_cast<short>(load_u16(row + (b0 + 5) * bb)), static_cast<short>(load_u16(row + (b0 + 4) * bb)), \
          static_cast<short>(load_u16(row + (b0 + 3) * bb)), static_cast<short>(load_u16(row + (b0 + 2) * bb)), \
          static_cast<short>(load_u16(row + (b0 + 1) * bb)), static_cast<short>(load_u16(row + (b0)*bb)))),     \
      _mm256_loadu_ps(xd + b0))

// Q4_0 block -> 32 unsigned nibbles in weight order (low nibbles = weights 0-15, high = 16-31).
#define DSMOE_Q4_NIBBLES(block)                                                            \
  ({                                                                                       \
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>((block) + 2));  \
    const __m128i m = _mm_set1_epi8(0x0f);                                                 \
    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), m), _mm_and_si128(bytes, m)); \
  })

template <QuantType kType, bool kVnni>
DSMOE_TARGET_VNNI inline __m256i block_lanes_vnni(const uint8_t* block, const int8_t* xq) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
  __m256i w;
  if constexpr (kType == QuantType::Q8_0)
    w = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2)), _mm256_set1_epi8(-128));
  else
    w = DSMOE_Q4_NIBBLES(block);
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
}

template <QuantType kType>
DSMOE_TARGET_AVX2 inline __m256i block_lanes_avx2(const uint8_t* block, const int8_t* xq) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (kType == QuantType::Q8_0) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones);
  } else {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(DSMOE_Q4_NIBBLES(block), x), ones);
  }
}

// The shift that turns the unsigned-weight sum back into the signed one: sum -= xsum << shift.
template <QuantType kType, bool kVnni>
constexpr int unsigned_shift() {
  if constexpr (kType == QuantType::Q4_0)
    return 3;  // q + 8
  else
    return kVnni ? 7 : -1;  // w + 128 under VNNI; the sign trick needs none
}

#define DSMOE_DOT_BODY(LANES)                                                                               \
  constexpr size_t bb = kType == QuantType::Q8_0 ? 34 : 18;                                                 \
  constexpr int shift = unsigned_shift<kType, kVnni>();                                                     \
  const int64_t nb = n / 32, nb8 = nb - nb % 8;                                                             \
  __m256 acc = _mm256_setzero_ps();                                                                         \
  for (int64_t b0 = 0; b0 < nb8; b0 += 8) {                                                                 \
    __m256i v[8];                                                                                           \
    for (int k = 0; k < 8; ++k) v[k] = LANES(row + (b0 + k) * bb, xq + (b0 + k) * 32);                      \
    __m256i sums = DSMOE_HADD_TREE(v);                                                                      \
    if constexpr (shift >= 0)                                                                               \
      sums = _mm256_sub_epi32(                                                                              \
          sums, _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xsum + b0)), shift)); \
    acc = _mm256_fmadd_ps(DSMOE_SCALES(row, bb, b0, xd), _mm256_cvtepi32_ps(sums), acc);                    \
  }                                                                                                         \
  alignas(32) float lanes[8];                                                                               \
  _mm256_store_ps(lanes, acc);                                                                              \
  for (int64_t b = nb8; b < nb; ++b) { /* the last nb % 8 blocks one by one, same sums */                   \
    const uint8_t* block = row + b * bb;                                                                    \
    alignas(32) int32_t part[8];                                                                            \
    _mm256_store_si256(reinterpret_cast<__m256i*>(part), LANES(block, xq + 32 * b));                        \
    int32_t sum = part[0] + part[1] + part[2] + part[3] + part[4] + part[5] + part[6] + part[7];            \
    if constexpr (shift >= 0) sum -= xsum[b] << shift;                                                      \
    lanes[b % 8] = std::fmaf(f16_to_f32(load_u16(block)) * xd[b], static_cast<float>(sum), lanes[b % 8]);   \
  }                                                                                                         \
  return hsum8(lanes);

template <QuantType kType, bool kVnni = true>
DSMOE_TARGET_VNNI float dot_q8act_vnni(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                                       int64_t n) {
  DSMOE_DOT_BODY((block_lanes_vnni<kType, true>))
}

template <QuantType kType, bool kVnni = false>
DSMOE_TARGET_AVX2 float dot_q8act_avx2(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                                       int64_t n) {
  DSMOE_DOT_BODY(block_lanes_avx2<kType>)
}

bool have_vnni() {
  static const bool have = quant_have_avx2() && __builtin_cpu_supports("avx512f") &&
                           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return have;
}
}  // namespace
#endif

float quant_dot_q8act(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                      int64_t n) {
  if (quant_is_block(t) && !is_q8_0_or_q4_0(t)) return qdot_q8act(t, row, xq, xd, xsum, n);
#if defined(DSMOE_QUANT_X86)
  if (quant_is_block(t) && n % 32 == 0) {
    if (have_vnni())
      return t == QuantType::Q8_0 ? dot_q8act_vnni<QuantType::Q8_0>(row, xq, xd, xsum, n)
                                  : dot_q8act_vnni<QuantType::Q4_0>(row, xq, xd, xsum, n);
    if (quant_have_avx2())
      return t == QuantType::Q8_0 ? dot_q8act_avx2<QuantType::Q8_0>(row, xq, xd, xsum, n)
                                  : dot_q8act_avx2<QuantType::Q4_0>(row, xq, xd, xsum, n);
  }
#endif
  return quant_dot_q8act_scalar(t, row, xq, xd, xsum, n);
}

float quant_dot_q8act_avx2(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                           int64_t n) {
  if (quant_is_block(t) && !is_q8_0_or_q4_0(t)) return qdot_q8act_avx2(t, row, xq, xd, xsum, n);
#if defined(DSMOE_QUANT_X86)
  if (quant_have_avx2() && quant_is_block(t) && n % 32 == 0)
    return t == QuantType::Q8_0 ? dot_q8act_avx2<QuantType::Q8_0>(row, xq, xd, xsum, n)
                                : dot_q8act_avx2<QuantType::Q4_0>(row, xq, xd, xsum, n);
#endif
  return quant_dot_q8act_scalar(t, row, xq, xd, xsum, n);
}

const char* quant_dot_q8act_kernel() {
#if defined(DSMOE_QUANT_X86)
  if (have_vnni()) return "AVX512-VNNI";
  if (quant_have_avx2()) return "AVX2";
#endif
  return "scalar";
}

}  // namespace dsmoe
