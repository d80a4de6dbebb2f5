// Why one file of ~1,100 lines: the scalar reference and the AVX2 and AVX512-VNNI paths must produce identical bits,
// and the float-order contract below binds all three; keeping them in one file lets a reader check each SIMD path
// against the reference line by line.
//
// Integer dot products of the block types beyond Q8_0/Q4_0 against 8-bit activations (quantize_act_q8: per 32-block
// b of x, int8 xq, f32 scale xd_b, int32 X_b = sum of the block's xq; x_i ~ xq_i * xd_b).
//
// Dimension legend: n = weights in the row (a multiple of 32, or of 256 for K-quants); b = 32-block of x
// (0..n/32-1); i = 256-weight super-block (K-quants), j = 32-block inside it (b = 8i + j); k = 16-weight sub-block
// of a super-block (0..15; 32-block j holds k = 2j, 2j+1); lo/hi = the first/second 16 weights of a 32-block.
//
// THE MATH AND FLOAT ORDER (every path: scalar reference, AVX2, AVX512-VNNI; so all return identical bits)
// Integer sums are exact int32 (no term overflows: the largest, Q6_K's |S_b|, is < 128*32*127*32 < 2^24, so even
// its conversion to f32 is exact). fmaf is one rounding; "d*xd_b" is one rounded f32 product; acc/mac are 8 f32
// lanes starting at +0; hsum8 is ggml's fixed order ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)).
//
// 32-weight blocks, w_t = weight t of block b, q_t its integer form, d (and m) the block's fp16 scale (and min):
//   Q4_1   w = d*q + m,           q = 4-bit nibble (0..15)
//   Q5_0   w = d*q,               q = (nibble | high bit << 4) - 16     (-16..15)
//   Q5_1   w = d*q + m,           q = nibble | high bit << 4            (0..31)
//   IQ4_NL w = d*q,               q = kIq4nlValues[nibble]              (-127..113)
//   s_b = sum_t q_t * xq_t
//   acc[b % 8] = fmaf(d*xd_b, (float)s_b, acc[b % 8])
//   mac[b % 8] = fmaf(m*xd_b, (float)X_b, mac[b % 8])            (Q4_1, Q5_1: m * sum_t xq_t = m * X_b)
//   result = hsum8(acc)  or, with a min, hsum8(acc[l] + mac[l]).
//
// K-quant super-blocks (256 weights, fp16 d and dmin, integer sub-block scales sc_k and mins m_k):
//   Q2_K   w = d*sc_k*q - dmin*m_k,  q 2-bit (0..3), sc_k, m_k 4-bit, per 16-sub-block
//   Q3_K   w = d*sc_k*q,             q = 2 bits - (high bit ? 0 : 4) (-4..3), sc_k = 6 bits - 32, per 16-sub-block
//   Q4_K   w = d*sc_k*q - dmin*m_k,  q 4-bit, sc_k, m_k 6-bit, per 32-sub-block (sc_2j = sc_2j+1, same for m)
//   Q5_K   w = d*sc_k*q - dmin*m_k,  q 5-bit (0..31), otherwise as Q4_K
//   Q6_K   w = d*sc_k*q,             q = 6 bits - 32 (-32..31), sc_k int8, per 16-sub-block
//   per 32-block b = 8i + j:
//   S_b = sc_2j * sum_lo q*xq + sc_2j+1 * sum_hi q*xq
//   M_b = m_2j * sum_lo xq + m_2j+1 * sum_hi xq                  (Q4_K/Q5_K: m_j * X_b)
//   acc[j] = fmaf(d*xd_b, (float)S_b, acc[j])
//   mac[j] = fmaf(dmin*xd_b, (float)M_b, mac[j])                  (Q2_K, Q4_K, Q5_K)
//   result = hsum8(acc)  or, with mins, hsum8(acc[l] - mac[l]).
// So per super-block the SIMD kernels do one 8-lane FMA of (d * xd[8i..8i+7]) with the 8 sums S, and one for the
// mins (AVX512: both as one 16-lane FMA).
//
// Block layouts: ggml/src/ggml-common.h (offsets in the unpackers below).
#include "core/qdot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DSMOE_QDOT_X86 1
#endif

#include "core/error.h"
#include "core/vecmath.h"

namespace dsmoe {

namespace {

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// fp16 -> f32, exact (as F16C's vcvtph2ps).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24, exact
    return sign ? -v : v;
  }
  if (exp == 31)
    bits = sign | 0x7f800000u | (mant << 13);
  else
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline float half_at(const uint8_t* p) { return half_to_float(load_u16(p)); }

// IQ4_NL's non-linear 4-bit code book (ggml-quants.c kvalues_iq4nl).
constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

constexpr bool is_block32(QuantType t) {
  return t == QuantType::Q4_1 || t == QuantType::Q5_0 || t == QuantType::Q5_1 || t == QuantType::IQ4_NL;
}
constexpr bool is_kquant(QuantType t) {
  return t == QuantType::Q2_K || t == QuantType::Q3_K || t == QuantType::Q4_K || t == QuantType::Q5_K ||
         t == QuantType::Q6_K;
}
constexpr bool has_min(QuantType t) {
  return t == QuantType::Q4_1 || t == QuantType::Q5_1 || t == QuantType::Q2_K || t == QuantType::Q4_K ||
         t == QuantType::Q5_K;
}
constexpr size_t block_bytes(QuantType t) {
  switch (t) {
    case QuantType::Q4_1: return 20;
    case QuantType::Q5_0: return 22;
    case QuantType::Q5_1: return 24;
    case QuantType::IQ4_NL: return 18;
    case QuantType::Q2_K: return 84;
    case QuantType::Q3_K: return 110;
    case QuantType::Q4_K: return 144;
    case QuantType::Q5_K: return 176;
    case QuantType::Q6_K: return 210;
    default: return 0;
  }
}

// Q4_K/Q5_K: the 6-bit scale and min of 32-sub-block j (0..7) from the 12 packed bytes (ggml's get_scale_min_k4):
// j < 4: low 6 bits of bytes j (scale) and j+4 (min); j >= 4: low/high nibble of byte j+4 with the top 2 bits of
// bytes j-4 (scale) and j (min) above them.
inline void scale_min_k4(int j, const uint8_t* q, int& scale, int& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q3_K: 6-bit scale of 16-sub-block k (0..15) from its 12 packed bytes: low 4 bits in byte k (k < 8, low nibble) or
// k-8 (high nibble), top 2 bits in byte 8 + k%4 at bit 2*(k/4).
inline int scale_q3k(int k, const uint8_t* q) {
  const int low = k < 8 ? (q[k] & 0x0f) : (q[k - 8] >> 4);
  const int high = (q[8 + k % 4] >> (2 * (k / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// ---- scalar reference ----

// One 32-weight block in integer form: weight t = d * q[t] (+ m).
struct IntBlock32 {
  float d = 0.0f, m = 0.0f;
  int q[32];
};

IntBlock32 unpack_block32(QuantType t, const uint8_t* block) {
  IntBlock32 out;
  out.d = half_at(block);
  const uint8_t* qs = nullptr;  // 16 bytes: byte t holds weight t (low nibble) and weight t+16 (high nibble)
  uint32_t high_bits = 0;       // Q5_*: bit t = the fifth bit of weight t
  switch (t) {
    case QuantType::Q4_1: out.m = half_at(block + 2), qs = block + 4; break;
    case QuantType::Q5_0: high_bits = load_u32(block + 2), qs = block + 6; break;
    case QuantType::Q5_1: out.m = half_at(block + 2), high_bits = load_u32(block + 4), qs = block + 8; break;
    case QuantType::IQ4_NL: qs = block + 2; break;
    default: fail("integer dot product: {} is not a 32-weight block type", quant_type_name(t));
  }
  for (int w = 0; w < 32; ++w) {
    const int nibble = w < 16 ? (qs[w] & 0x0f) : (qs[w - 16] >> 4);
    const int five_bit = nibble | static_cast<int>(((high_bits >> w) & 1u) << 4);
    if (t == QuantType::Q4_1)
      out.q[w] = nibble;
    else if (t == QuantType::Q5_0)
      out.q[w] = five_bit - 16;
    else if (t == QuantType::Q5_1)
      out.q[w] = five_bit;
    else
      out.q[w] = kIq4nlValues[nibble];
  }
  return out;
}

// One K-quant super-block in integer form: weight w (sub-block k = w / 16) = d * scale[k] * q[w] - dmin * min[k].
struct IntSuperBlock {
  float d = 0.0f, dmin = 0.0f;
  int q[256];
  int scale[16];
  int min[16] = {};
};

IntSuperBlock unpack_superblock(QuantType t, const uint8_t* block) {
  IntSuperBlock out;
  switch (t) {
    case QuantType::Q2_K: {  // scales[16] (low nibble scale, high nibble min), qs[64], d, dmin
      const uint8_t* qs = block + 16;
      out.d = half_at(block + 80), out.dmin = half_at(block + 82);
      for (int k = 0; k < 16; ++k) out.scale[k] = block[k] & 0x0f, out.min[k] = block[k] >> 4;
      // 32-block j: bits 2*(j%4) of qs[32*(j/4) + l], l = 0..31.
      for (int j = 0; j < 8; ++j)
        for (int l = 0; l < 32; ++l) out.q[32 * j + l] = (qs[32 * (j / 4) + l] >> (2 * (j % 4))) & 3;
      break;
    }
    case QuantType::Q3_K: {  // hmask[32], qs[64], scales[12], d
      const uint8_t *hmask = block, *qs = block + 32;
      out.d = half_at(block + 108);
      for (int k = 0; k < 16; ++k) out.scale[k] = scale_q3k(k, block + 96);
      // 32-block j: low 2 bits as Q2_K, high bit = bit j of hmask[l]; a clear high bit means -4.
      for (int j = 0; j < 8; ++j)
        for (int l = 0; l < 32; ++l)
          out.q[32 * j + l] = ((qs[32 * (j / 4) + l] >> (2 * (j % 4))) & 3) - (((hmask[l] >> j) & 1) ? 0 : 4);
      break;
    }
    case QuantType::Q4_K:
    case QuantType::Q5_K: {  // d, dmin, scales[12], (Q5_K: qh[32]), qs[128]
      const bool five = t == QuantType::Q5_K;
      const uint8_t *qh = block + 16, *qs = block + (five ? 48 : 16);
      out.d = half_at(block), out.dmin = half_at(block + 2);
      for (int j = 0; j < 8; ++j) {
        int scale, min;
        scale_min_k4(j, block + 4, scale, min);
        out.scale[2 * j] = out.scale[2 * j + 1] = scale;
        out.min[2 * j] = out.min[2 * j + 1] = min;
        // 32-block j: nibble j%2 of qs[32*(j/2) + l]; Q5_K's fifth bit = bit j of qh[l].
        for (int l = 0; l < 32; ++l) {
          const int nibble = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0f;
          out.q[32 * j + l] = nibble | (five ? ((qh[l] >> j) & 1) << 4 : 0);
        }
      }
      break;
    }
    case QuantType::Q6_K: {  // ql[128], qh[64], scales[16] (int8), d
      const uint8_t *ql = block, *qh = block + 128;
      out.d = half_at(block + 208);
      for (int k = 0; k < 16; ++k) out.scale[k] = static_cast<int8_t>(block[192 + k]);
      // 32-block j = 4h + c: low 4 bits = nibble c/2 of ql[64h + 32*(c%2) + l], top 2 bits = bits 2c of qh[32h + l].
      for (int j = 0; j < 8; ++j) {
        const int h = j / 4, c = j % 4;
        for (int l = 0; l < 32; ++l) {
          const int low = (ql[64 * h + 32 * (c % 2) + l] >> (4 * (c / 2))) & 0x0f;
          const int high = (qh[32 * h + l] >> (2 * c)) & 3;
          out.q[32 * j + l] = (low | (high << 4)) - 32;
        }
      }
      break;
    }
    default: fail("integer dot product: {} is not a K-quant", quant_type_name(t));
  }
  return out;
}

// Not auto-vectorised: GCC 12 with -march=native on AVX512-VNNI CPUs turns a signed x signed int8 reduction into
// vpdpbusd, which reads one operand as unsigned (see quant.cpp block_dot).
#if defined(__GNUC__) && !defined(__clang__)
#define DSMOE_NO_VECTORIZE __attribute__((optimize("no-tree-vectorize")))
#else
#define DSMOE_NO_VECTORIZE
#endif

DSMOE_NO_VECTORIZE int32_t int_dot(const int* q, const int8_t* xq, int len) {
  int32_t sum = 0;
  for (int t = 0; t < len; ++t) sum += q[t] * xq[t];
  return sum;
}
DSMOE_NO_VECTORIZE int32_t int_sum(const int8_t* xq, int len) {
  int32_t sum = 0;
  for (int t = 0; t < len; ++t) sum += xq[t];
  return sum;
}

float dot_block32_scalar(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                         int64_t n) {
  const size_t bb = block_bytes(t);
  float acc[8] = {}, mac[8] = {};
  for (int64_t b = 0; b < n / 32; ++b) {
    const IntBlock32 blk = unpack_block32(t, row + b * bb);
    const int32_t s = int_dot(blk.q, xq + 32 * b, 32);
    acc[b % 8] = std::fmaf(blk.d * xd[b], static_cast<float>(s), acc[b % 8]);
    if (has_min(t)) mac[b % 8] = std::fmaf(blk.m * xd[b], static_cast<float>(xsum[b]), mac[b % 8]);
  }
  if (has_min(t))
    for (int l = 0; l < 8; ++l) acc[l] += mac[l];
  return hsum8(acc);
}

float dot_kquant_scalar(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, int64_t n) {
  const size_t bb = block_bytes(t);
  float acc[8] = {}, mac[8] = {};
  for (int64_t i = 0; i < n / 256; ++i) {
    const IntSuperBlock sb = unpack_superblock(t, row + i * bb);
    for (int j = 0; j < 8; ++j) {
      const int64_t b = 8 * i + j;
      const int8_t* x = xq + 32 * b;
      const int* q = sb.q + 32 * j;
      const int32_t s = sb.scale[2 * j] * int_dot(q, x, 16) + sb.scale[2 * j + 1] * int_dot(q + 16, x + 16, 16);
      acc[j] = std::fmaf(sb.d * xd[b], static_cast<float>(s), acc[j]);
      if (has_min(t)) {
        const int32_t m = sb.min[2 * j] * int_sum(x, 16) + sb.min[2 * j + 1] * int_sum(x + 16, 16);
        mac[j] = std::fmaf(sb.dmin * xd[b], static_cast<float>(m), mac[j]);
      }
    }
  }
  if (has_min(t))
    for (int l = 0; l < 8; ++l) acc[l] -= mac[l];
  return hsum8(acc);
}

void check_row(QuantType t, int64_t n) {
  check(is_block32(t) || is_kquant(t), "integer dot product: no kernel for {}", quant_type_name(t));
  const int64_t bs = is_kquant(t) ? 256 : 32;
  check(n >= 0 && n % bs == 0, "{}: {} weights is not a multiple of the block size {}", quant_type_name(t), n, bs);
}

}  // namespace

#if defined(DSMOE_QDOT_X86) && defined(__GNUC__)
#define DSMOE_QDOT_SIMD 1
#define DSMOE_INLINE inline __attribute__((always_inline))
#define DSMOE_LAMBDA_INLINE __attribute__((always_inline))

// ---- AVX2 kernels: 256-bit vectors, one 32-block each; 8-bit products by maddubs + madd ----
//
// Weights enter the 8-bit products in unsigned form u = q + offset (maddubs takes one unsigned operand); the
// offset comes back out exactly: 32-blocks subtract offset * X_b from the block sum, 16-sub-block K-quants subtract
// the offset's products with x in int16 (pairs_with_offset) before the sub-block scales apply.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace qdot_avx2 {

DSMOE_INLINE __m256i load32(const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
DSMOE_INLINE __m128i load16(const void* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// 8 int32 lanes, lane l = sum of u[4l..4l+3] * x[4l..4l+3]; u unsigned bytes <= 128 (so that maddubs' int16 pair
// sums cannot saturate: 2 * 128 * 127 < 2^15), x signed.
DSMOE_INLINE __m256i dot_u8s8(__m256i u, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}

// 16 int16 lanes, lane p = (u - offset) * x summed over bytes 2p, 2p+1: exact while u, offset <= 64
// (each maddubs pair is at most 2 * 64 * 127 < 2^15).
DSMOE_INLINE __m256i pairs_with_offset(__m256i u, __m256i x, __m256i offset) {
  return _mm256_sub_epi16(_mm256_maddubs_epi16(u, x), _mm256_maddubs_epi16(offset, x));
}

// Lane k of the result = the sum of the 8 lanes of v[k] (exact int32).
DSMOE_INLINE __m256i hadd_tree(const __m256i* v) {
  const __m256i s01 = _mm256_hadd_epi32(v[0], v[1]), s23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i s45 = _mm256_hadd_epi32(v[4], v[5]), s67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i t0 = _mm256_hadd_epi32(s01, s23), t1 = _mm256_hadd_epi32(s45, s67);
  const __m128i u0 = _mm_add_epi32(_mm256_castsi256_si128(t0), _mm256_extracti128_si256(t0, 1));
  const __m128i u1 = _mm_add_epi32(_mm256_castsi256_si128(t1), _mm256_extracti128_si256(t1, 1));
  return _mm256_set_m128i(u1, u0);
}

DSMOE_INLINE int32_t hsum_i32(__m256i v) {
  alignas(32) int32_t lane[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lane), v);
  return lane[0] + lane[1] + lane[2] + lane[3] + lane[4] + lane[5] + lane[6] + lane[7];
}

// Each byte of v shifted so that its bit `from` lands on bit `to` (16-bit shifts: the caller masks bit `to`,
// which always comes from the same byte).
DSMOE_INLINE __m256i move_bit(__m256i v, int from, int to) {
  if (from == to) return v;
  return from < to ? _mm256_slli_epi16(v, to - from) : _mm256_srli_epi16(v, from - to);
}

// The 16 bytes at qs as 32 nibbles in weight order: low nibbles (weights 0-15), then high nibbles (16-31).
DSMOE_INLINE __m256i nibbles(const uint8_t* qs) {
  const __m128i b = load16(qs), m = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

// Byte t = (bit t of bits) ? value : 0.
DSMOE_INLINE __m256i bits_to_bytes(uint32_t bits, char value) {
  // Byte t takes byte t/8 of bits; it equals the one-hot mask of bit t%8 after masking iff that bit is set.
  const __m256i spread =
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                          _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(value));
}

// Eight fp16 values at p, p + stride, ..., p + 7*stride as f32.
DSMOE_INLINE __m256 halves8(const uint8_t* p, size_t stride) {
  return _mm256_cvtph_ps(
      _mm_set_epi16(static_cast<short>(load_u16(p + 7 * stride)), static_cast<short>(load_u16(p + 6 * stride)),
                    static_cast<short>(load_u16(p + 5 * stride)), static_cast<short>(load_u16(p + 4 * stride)),
                    static_cast<short>(load_u16(p + 3 * stride)), static_cast<short>(load_u16(p + 2 * stride)),
                    static_cast<short>(load_u16(p + stride)), static_cast<short>(load_u16(p))));
}

// ---- 32-weight blocks ----

// The offset of the unsigned form as a shift (u = q + (1 << shift)), or -1 when u = q.
template <QuantType T>
constexpr int block32_offset_shift() {
  return T == QuantType::Q5_0 ? 4 : -1;  // Q5_0: q + 16; Q4_1, Q5_1 already unsigned; IQ4_NL by the sign trick
}

// One block against its 32 activations: 8 int32 lanes summing to sum_t u_t * xq_t.
template <QuantType T>
DSMOE_INLINE __m256i block32_lanes(const uint8_t* block, const int8_t* xq) {
  const __m256i x = load32(xq);
  if constexpr (T == QuantType::Q4_1) {
    return dot_u8s8(nibbles(block + 4), x);
  } else if constexpr (T == QuantType::Q5_0) {
    return dot_u8s8(_mm256_or_si256(nibbles(block + 6), bits_to_bytes(load_u32(block + 2), 16)), x);
  } else if constexpr (T == QuantType::Q5_1) {
    return dot_u8s8(_mm256_or_si256(nibbles(block + 8), bits_to_bytes(load_u32(block + 4), 16)), x);
  } else {  // IQ4_NL: the code book by byte shuffle
    const __m256i table = _mm256_broadcastsi128_si256(load16(kIq4nlValues));
    const __m256i w = _mm256_shuffle_epi8(table, nibbles(block + 2));
    // |w| * (x with w's sign): |w| <= 127, so the pairs cannot saturate.
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)),
                             _mm256_set1_epi16(1));
  }
}

template <QuantType T>
float dot_block32(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n) {
  constexpr size_t bb = block_bytes(T);
  constexpr int shift = block32_offset_shift<T>();
  const int64_t nb = n / 32, nb8 = nb - nb % 8;
  __m256 acc = _mm256_setzero_ps(), mac = _mm256_setzero_ps();
  for (int64_t b0 = 0; b0 < nb8; b0 += 8) {
    const uint8_t* blocks = row + b0 * bb;
    __m256i v[8];
    for (int k = 0; k < 8; ++k) v[k] = block32_lanes<T>(blocks + k * bb, xq + 32 * (b0 + k));
    __m256i sums = hadd_tree(v);
    const __m256i xs = load32(xsum + b0);
    if constexpr (shift >= 0) sums = _mm256_sub_epi32(sums, _mm256_slli_epi32(xs, shift));
    const __m256 xd8 = _mm256_loadu_ps(xd + b0);
    acc = _mm256_fmadd_ps(_mm256_mul_ps(halves8(blocks, bb), xd8), _mm256_cvtepi32_ps(sums), acc);
    if constexpr (has_min(T))
      mac = _mm256_fmadd_ps(_mm256_mul_ps(halves8(blocks + 2, bb), xd8), _mm256_cvtepi32_ps(xs), mac);
  }
  alignas(32) float lanes[8], min_lanes[8];
  _mm256_store_ps(lanes, acc);
  _mm256_store_ps(min_lanes, mac);
  for (int64_t b = nb8; b < nb; ++b) {  // the last nb % 8 blocks one by one: same sums, same lanes
    const uint8_t* block = row + b * bb;
    int32_t s = hsum_i32(block32_lanes<T>(block, xq + 32 * b));
    if constexpr (shift >= 0) s -= xsum[b] * (1 << shift);
    lanes[b % 8] = std::fmaf(half_at(block) * xd[b], static_cast<float>(s), lanes[b % 8]);
    if constexpr (has_min(T))
      min_lanes[b % 8] = std::fmaf(half_at(block + 2) * xd[b], static_cast<float>(xsum[b]), min_lanes[b % 8]);
  }
  if constexpr (has_min(T))
    for (int l = 0; l < 8; ++l) lanes[l] += min_lanes[l];
  return hsum8(lanes);
}

// ---- K-quant super-blocks: per super-block, S (8 int32: S_b of its 32-blocks) and M (the min sums M_b) ----

// Shuffle masks for 16-sub-block scales held as int16 [sc_0..sc_7 | the same]: the scale of sub-block 2c in the
// low 128 bits (the lo 16 weights of 32-block c), of sub-block 2c+1 in the high 128 bits.
DSMOE_INLINE __m256i scale_pair_mask(int c) {
  const short lo = static_cast<short>((4 * c) | ((4 * c + 1) << 8));
  const short hi = static_cast<short>((4 * c + 2) | ((4 * c + 3) << 8));
  return _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo));
}
// The 8 int16 scales of half h (sub-blocks 8h..8h+7) of a [sc_0..sc_7 | sc_8..sc_15] vector, in both 128-bit halves.
DSMOE_INLINE __m256i half_scales(__m256i scales16, int h) {
  return h == 0 ? _mm256_permute4x64_epi64(scales16, 0x44) : _mm256_permute4x64_epi64(scales16, 0xee);
}

// Q4_K/Q5_K: the 8 6-bit scales (bytes 0-7) and mins (bytes 8-15) of scale_min_k4's packing, by 32-bit operations.
DSMOE_INLINE __m128i unpack_scales_k4(const uint8_t* p) {
  const uint64_t a = load_u32(p), c = load_u32(p + 4), e = load_u32(p + 8);
  const uint64_t scales = (a & 0x3f3f3f3fu) | (((e & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32);
  const uint64_t mins = (c & 0x3f3f3f3fu) | ((((e >> 4) & 0x0f0f0f0fu) | ((c >> 2) & 0x30303030u)) << 32);
  return _mm_set_epi64x(static_cast<int64_t>(mins), static_cast<int64_t>(scales));
}

template <QuantType T>  // Q4_K or Q5_K
DSMOE_INLINE void superblock_k45(const uint8_t* block, const int8_t* x, const int32_t* xsum, __m256i& sums,
                                 __m256i& mins) {
  constexpr bool kFive = T == QuantType::Q5_K;
  const uint8_t* qs = block + (kFive ? 48 : 16);
  const __m128i scale_bytes = unpack_scales_k4(block + 4);
  const __m256i scales = _mm256_cvtepu8_epi32(scale_bytes);
  const __m256i min8 = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(scale_bytes, scale_bytes));
  const __m256i m4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10);
  __m256i qh = _mm256_setzero_si256();
  if constexpr (kFive) qh = load32(block + 16);
  __m256i v[8];
  for (int c = 0; c < 4; ++c) {
    const __m256i q = load32(qs + 32 * c);
    __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    if constexpr (kFive) {  // 32-block j's fifth bit: bit j of qh
      lo = _mm256_or_si256(lo, _mm256_and_si256(move_bit(qh, 2 * c, 4), bit4));
      hi = _mm256_or_si256(hi, _mm256_and_si256(move_bit(qh, 2 * c + 1, 4), bit4));
    }
    v[2 * c] = dot_u8s8(lo, load32(x + 64 * c));
    v[2 * c + 1] = dot_u8s8(hi, load32(x + 64 * c + 32));
  }
  sums = _mm256_mullo_epi32(hadd_tree(v), scales);
  mins = _mm256_mullo_epi32(min8, load32(xsum));
}

DSMOE_INLINE void superblock_q6k(const uint8_t* block, const int8_t* x, __m256i& sums) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30), offset = _mm256_set1_epi8(32);
  const __m256i scales16 = _mm256_cvtepi8_epi16(load16(block + 192));
  __m256i v[8];
  for (int h = 0; h < 2; ++h) {
    const __m256i scales = half_scales(scales16, h);
    const __m256i ql0 = load32(block + 64 * h), ql1 = load32(block + 64 * h + 32);
    const __m256i qh = load32(block + 128 + 32 * h);
    // 32-block c of the half: nibble c/2 of ql(c%2), top bits 2c, 2c+1 of qh; u = q + 32 (0..63).
    const __m256i u[4] = {_mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)),
                          _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)),
                          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2)),
                          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2))};
    for (int c = 0; c < 4; ++c) {
      const int j = 4 * h + c;
      v[j] = _mm256_madd_epi16(pairs_with_offset(u[c], load32(x + 32 * j), offset),
                               _mm256_shuffle_epi8(scales, scale_pair_mask(c)));
    }
  }
  sums = hadd_tree(v);
}

// Q3_K: the 16 6-bit scales (scale_q3k's packing) as bytes 0..15 of the low 128 bits, unsigned (0..63).
DSMOE_INLINE __m256i unpack_scale_bytes_q3k(const uint8_t* p) {
  const uint32_t a0 = load_u32(p), a1 = load_u32(p + 4), top = load_u32(p + 8);
  const uint32_t s0 = (a0 & 0x0f0f0f0fu) | ((top & 0x03030303u) << 4);
  const uint32_t s1 = (a1 & 0x0f0f0f0fu) | (((top >> 2) & 0x03030303u) << 4);
  const uint32_t s2 = ((a0 >> 4) & 0x0f0f0f0fu) | (((top >> 4) & 0x03030303u) << 4);
  const uint32_t s3 = ((a1 >> 4) & 0x0f0f0f0fu) | (((top >> 6) & 0x03030303u) << 4);
  return _mm256_castsi128_si256(
      _mm_set_epi32(static_cast<int>(s3), static_cast<int>(s2), static_cast<int>(s1), static_cast<int>(s0)));
}
// The same minus 32, as int16 [sc_0..sc_7 | sc_8..sc_15].
DSMOE_INLINE __m256i unpack_scales_q3k(const uint8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm256_castsi256_si128(unpack_scale_bytes_q3k(p)), _mm_set1_epi8(32)));
}

DSMOE_INLINE void superblock_q3k(const uint8_t* block, const int8_t* x, __m256i& sums) {
  const __m256i m3 = _mm256_set1_epi8(3), bit2 = _mm256_set1_epi8(4), offset = _mm256_set1_epi8(4);
  const __m256i scales16 = unpack_scales_q3k(block + 96);
  const __m256i hmask = load32(block);
  __m256i v[8];
  for (int h = 0; h < 2; ++h) {
    const __m256i scales = half_scales(scales16, h);
    const __m256i qs = load32(block + 32 + 32 * h);
    for (int c = 0; c < 4; ++c) {
      const int j = 4 * h + c;  // u = low 2 bits + 4 * high bit = q + 4 (0..7)
      const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qs, 2 * c), m3),
                                        _mm256_and_si256(move_bit(hmask, j, 2), bit2));
      v[j] = _mm256_madd_epi16(pairs_with_offset(u, load32(x + 32 * j), offset),
                               _mm256_shuffle_epi8(scales, scale_pair_mask(c)));
    }
  }
  sums = hadd_tree(v);
}

DSMOE_INLINE void superblock_q2k(const uint8_t* block, const int8_t* x, __m256i& sums, __m256i& mins) {
  const __m128i packed = load16(block), m4 = _mm_set1_epi8(0x0f);
  const __m256i scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, m4));
  const __m256i min_bytes = _mm256_broadcastsi128_si256(_mm_and_si128(_mm_srli_epi16(packed, 4), m4));
  const __m256i m3 = _mm256_set1_epi8(3);
  __m256i v[8], w[8];
  for (int h = 0; h < 2; ++h) {
    const __m256i scales = half_scales(scales16, h);
    const __m256i qs = load32(block + 16 + 32 * h);
    for (int c = 0; c < 4; ++c) {
      const int j = 4 * h + c;
      const __m256i xv = load32(x + 32 * j);
      const __m256i u = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * c), m3);
      v[j] = _mm256_madd_epi16(_mm256_maddubs_epi16(u, xv), _mm256_shuffle_epi8(scales, scale_pair_mask(c)));
      // The mins of sub-blocks 2j (lo 16 bytes) and 2j+1 (hi 16 bytes) as bytes, times x.
      const __m256i min_pick =
          _mm256_set_m128i(_mm_set1_epi8(static_cast<char>(2 * j + 1)), _mm_set1_epi8(static_cast<char>(2 * j)));
      w[j] = dot_u8s8(_mm256_shuffle_epi8(min_bytes, min_pick), xv);
    }
  }
  sums = hadd_tree(v);
  mins = hadd_tree(w);
}

// Byte offsets of d and dmin in a super-block.
template <QuantType T>
constexpr int kquant_d_offset() {
  if constexpr (T == QuantType::Q2_K)
    return 80;
  else if constexpr (T == QuantType::Q3_K)
    return 108;
  else if constexpr (T == QuantType::Q6_K)
    return 208;
  else
    return 0;  // Q4_K, Q5_K
}

template <QuantType T>
float dot_kquant(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n) {
  constexpr size_t bb = block_bytes(T);
  constexpr int d_at = kquant_d_offset<T>();
  __m256 acc = _mm256_setzero_ps(), mac = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / 256; ++i) {
    const uint8_t* block = row + i * bb;
    const int8_t* x = xq + 256 * i;
    __m256i sums, mins = _mm256_setzero_si256();
    if constexpr (T == QuantType::Q4_K || T == QuantType::Q5_K)
      superblock_k45<T>(block, x, xsum + 8 * i, sums, mins);
    else if constexpr (T == QuantType::Q6_K)
      superblock_q6k(block, x, sums);
    else if constexpr (T == QuantType::Q3_K)
      superblock_q3k(block, x, sums);
    else
      superblock_q2k(block, x, sums, mins);
    const __m256 xd8 = _mm256_loadu_ps(xd + 8 * i);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(block + d_at)));
    acc = _mm256_fmadd_ps(_mm256_mul_ps(d, xd8), _mm256_cvtepi32_ps(sums), acc);
    if constexpr (has_min(T)) {
      const __m256 dmin = _mm256_set1_ps(_cvtsh_ss(load_u16(block + d_at + 2)));
      mac = _mm256_fmadd_ps(_mm256_mul_ps(dmin, xd8), _mm256_cvtepi32_ps(mins), mac);
    }
  }
  if constexpr (has_min(T)) acc = _mm256_sub_ps(acc, mac);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  return hsum8(lanes);
}

template <QuantType T>
float kernel(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n) {
  if constexpr (is_kquant(T))
    return dot_kquant<T>(row, xq, xd, xsum, n);
  else
    return dot_block32<T>(row, xq, xd, xsum, n);
}

}  // namespace qdot_avx2
#pragma GCC pop_options

// ---- AVX512-VNNI kernels: 512-bit vectors, two 32-blocks each; 8-bit products by vpdpbusd ----
// Needs AVX512F/VL/BW, VNNI and GFNI (Ice Lake, Zen 4 and later); other CPUs run the AVX2 kernels.
//
// A vector z holds the int32 partial sums of two 32-blocks (8 lanes each: 4 products per lane). quarter_sums()
// reduces four such vectors to one lane per 128-bit quarter (int16 packing + madd); block_sums() adds the quarters
// of each block and puts the 8 block sums in block order. K-quant scales multiply in the last madd level, where
// each lane is one half of a 16-weight sub-block. Offsets of unsigned weight forms come out through -x products
// (dpbusd_offset) or the block sums X_b. Nibbles and bit fields are moved inside bytes by GF(2) affine maps
// (bit_move2), one instruction per vector whatever the shifts and masks.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni,gfni")
// GCC 12's 512-bit intrinsics start from _mm512_undefined_epi32() (self-initialised), which -Wmaybe-uninitialized
// reports at every use (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
namespace qdot_avx512 {

using qdot_avx2::halves8;
using qdot_avx2::load16;
using qdot_avx2::load32;

DSMOE_INLINE __m512i load64(const void* p) { return _mm512_loadu_si512(p); }
DSMOE_INLINE __m512i broadcast32(const void* p) { return _mm512_broadcast_i64x4(load32(p)); }
// 64 bytes: a in the low 256 bits, b in the high 256 bits.
DSMOE_INLINE __m512i join(__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); }

// Bit moves inside every byte as one GF(2) affine map (vgf2p8affineqb): the 8x8 bit matrix that sends input bits
// from..from+count-1 to output bits to..to+count-1 and clears the others (row of output bit i = byte 7 - i).
constexpr uint64_t bit_move(int from, int to, int count) {
  uint64_t m = 0;
  for (int k = 0; k < count; ++k) m |= static_cast<uint64_t>(1u << (from + k)) << (8 * (7 - (to + k)));
  return m;
}
// The matrix a in the low 256 bits of v, b in the high 256 bits.
DSMOE_INLINE __m512i bit_move2(__m512i v, uint64_t a, uint64_t b) {
  return _mm512_gf2p8affine_epi64_epi8(
      v, join(_mm256_set1_epi64x(static_cast<int64_t>(a)), _mm256_set1_epi64x(static_cast<int64_t>(b))), 0);
}
constexpr uint64_t kLowNibble = bit_move(0, 0, 4), kHighNibble = bit_move(4, 0, 4);

// 16 int32 lanes, lane l = sum of u[4l..4l+3] * x[4l..4l+3] (u unsigned, x signed).
DSMOE_INLINE __m512i dpbusd(__m512i u, __m512i x) { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, x); }
// The same for u - offset: the offset's products enter as offset * (-x) (|x| <= 127, so -x fits int8).
DSMOE_INLINE __m512i dpbusd_offset(__m512i u, __m512i x, __m512i offset) {
  return _mm512_dpbusd_epi32(dpbusd(u, x), offset, _mm512_sub_epi8(_mm512_setzero_si512(), x));
}

// Lane 4r + p of the result = the sum of the 4 lanes in 128-bit quarter r of z[p] (exact int32).
DSMOE_INLINE __m512i quarter_sums_wide(const __m512i* z) {
  const __m512i a01 = _mm512_add_epi32(_mm512_unpacklo_epi32(z[0], z[1]), _mm512_unpackhi_epi32(z[0], z[1]));
  const __m512i a23 = _mm512_add_epi32(_mm512_unpacklo_epi32(z[2], z[3]), _mm512_unpackhi_epi32(z[2], z[3]));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
}
// The same when every lane of z and every sum of two adjacent lanes fits int16 (all kernels but IQ4_NL's: at most
// 8 products of |q| <= 32 with |x| <= 127): int16 packing and pairwise madd, fewer shuffles than the int32 tree.
DSMOE_INLINE __m512i quarter_sums(const __m512i* z) {
  const __m512i ones = _mm512_set1_epi16(1);
  const __m512i a01 = _mm512_madd_epi16(_mm512_packs_epi32(z[0], z[1]), ones);  // quarter r: z0 pairs, z1 pairs
  const __m512i a23 = _mm512_madd_epi16(_mm512_packs_epi32(z[2], z[3]), ones);
  return _mm512_madd_epi16(_mm512_packs_epi32(a01, a23), ones);
}

// z[p] = [32-block 2p | 32-block 2p+1] (quarters 0, 1 and 2, 3): from quarter_sums' c, the 8 block sums in block
// order, S_2p = c[p] + c[4 + p] and S_2p+1 = c[8 + p] + c[12 + p].
DSMOE_INLINE __m256i block_sums(__m512i c) {
  const __m512i d = _mm512_add_epi32(c, _mm512_shuffle_i64x2(c, c, _MM_SHUFFLE(2, 3, 0, 1)));
  const __m512i order = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, d));
}

// quarter_sums with integer weights: each quarter's sum times its weight, the multiply folded into the last int16
// level (madd by the weights instead of ones). Words 8r + 2p and 8r + 2p + 1 of `weights` weigh quarter r of z[p]
// (|weight| <= 128: at most 2 * 8 products * 32 * 127 * 128 < 2^31).
DSMOE_INLINE __m512i quarter_sums_weighted(const __m512i* z, __m512i weights) {
  const __m512i ones = _mm512_set1_epi16(1);
  const __m512i a01 = _mm512_madd_epi16(_mm512_packs_epi32(z[0], z[1]), ones);
  const __m512i a23 = _mm512_madd_epi16(_mm512_packs_epi32(z[2], z[3]), ones);
  return _mm512_madd_epi16(_mm512_packs_epi32(a01, a23), weights);
}
// Weights for quarter_sums_weighted from 16 int16 values v, word 8r + 2p (+1) = v[pick[8r + 2p]]:
// kPerBlock: v = 8 per-32-block scales, quarter r of z[p] is 32-block 2p + r/2;
// kPerSubBlock: v = 16 per-16-sub-block scales, quarter r of z[p] is sub-block 4p + r.
alignas(64) constexpr int16_t kPerBlock[32] = {0, 0, 2, 2, 4, 4, 6, 6, 0, 0, 2, 2, 4, 4, 6, 6,
                                               1, 1, 3, 3, 5, 5, 7, 7, 1, 1, 3, 3, 5, 5, 7, 7};
alignas(64) constexpr int16_t kPerSubBlock[32] = {0, 0, 4, 4, 8,  8,  12, 12, 1, 1, 5, 5, 9,  9,  13, 13,
                                                  2, 2, 6, 6, 10, 10, 14, 14, 3, 3, 7, 7, 11, 11, 15, 15};
DSMOE_INLINE __m512i quarter_weights(__m256i v, const int16_t* pick) {
  return _mm512_permutexvar_epi16(_mm512_load_si512(pick), _mm512_castsi256_si512(v));
}

// ---- 32-weight blocks ----

// IQ4_NL's code book + 128 (unsigned bytes 1..241).
DSMOE_INLINE __m512i iq4nl_table_plus128() {
  return _mm512_broadcast_i32x4(_mm_xor_si128(load16(kIq4nlValues), _mm_set1_epi8(-128)));
}

// Blocks b (at block) and b+1 (at block + bb, only if kTwo) against their 64 activations: 16 int32 lanes, blocks
// b and b+1 in the low and high 256 bits, summing to sum_t u_t * xq_t with the unsigned form u = q + offset.
template <QuantType T, bool kTwo>
DSMOE_INLINE __m512i pair32_lanes(const uint8_t* block, const int8_t* xq) {
  constexpr size_t bb = block_bytes(T);
  constexpr int qs_at = T == QuantType::Q4_1 ? 4 : T == QuantType::Q5_0 ? 6 : T == QuantType::Q5_1 ? 8 : 2;
  constexpr int qh_at = T == QuantType::Q5_0 ? 2 : 4;
  // Quarters: the block's 16 packed bytes twice, low nibbles from the first copy, high nibbles from the second.
  const __m256i first = _mm256_broadcastsi128_si256(load16(block + qs_at));
  __m512i q, x;
  if constexpr (kTwo) {
    q = join(first, _mm256_broadcastsi128_si256(load16(block + bb + qs_at)));
    x = load64(xq);
  } else {
    q = _mm512_zextsi256_si512(first);
    x = _mm512_zextsi256_si512(load32(xq));
  }
  // Quarters 0, 2: low nibbles; 1, 3: high nibbles.
  constexpr int64_t lo = static_cast<int64_t>(kLowNibble), hi = static_cast<int64_t>(kHighNibble);
  const __m512i split = _mm512_set_epi64(hi, hi, lo, lo, hi, hi, lo, lo);
  __m512i u = _mm512_gf2p8affine_epi64_epi8(q, split, 0);
  if constexpr (T == QuantType::Q5_0 || T == QuantType::Q5_1) {  // bit t of qh -> 16 on weight t
    uint64_t high = load_u32(block + qh_at);
    if constexpr (kTwo) high |= static_cast<uint64_t>(load_u32(block + bb + qh_at)) << 32;
    u = _mm512_mask_add_epi8(u, high, u, _mm512_set1_epi8(16));
  }
  if constexpr (T == QuantType::IQ4_NL) u = _mm512_shuffle_epi8(iq4nl_table_plus128(), u);
  return dpbusd(u, x);
}

template <QuantType T>
constexpr int block32_offset_shift() {  // u = q + (1 << shift), or -1: u = q
  return T == QuantType::Q5_0 ? 4 : T == QuantType::IQ4_NL ? 7 : -1;
}

// IQ4_NL's unsigned code (up to 241) makes lanes too wide for the int16 tree.
template <QuantType T>
DSMOE_INLINE __m256i block32_sums(const __m512i* z) {
  if constexpr (T == QuantType::IQ4_NL)
    return block_sums(quarter_sums_wide(z));
  else
    return block_sums(quarter_sums(z));
}

// The first 2 * bb bytes of blocks 2p, 2p+1 for p = 0..3 (only the first `count` blocks; zeros past them) -> their
// fp16 scales (and mins) as f32: [d_0..d_7 | m_0..m_7] (d at byte 0 of a block, m at byte 2).
template <QuantType T>
DSMOE_INLINE __m512 block32_scales(const __m512i* heads) {
  constexpr int16_t w = block_bytes(T) / 2;  // the second block's first word
  alignas(64) static constexpr int16_t kPick[32] = {0, w, 32, 32 + w, 0, 0, 0, 0, 1, w + 1, 33, 33 + w};
  const __m512i pick = _mm512_load_si512(kPick);
  const __m512i d01 = _mm512_permutex2var_epi16(heads[0], pick, heads[1]);  // d0..d3 (word 0-3), m0..m3 (8-11)
  const __m512i d23 = _mm512_permutex2var_epi16(heads[2], pick, heads[3]);
  return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_unpacklo_epi64(d01, d23)));
}

// Blocks 0..count-1 at `blocks` (count <= 8) against their activations: the 8 block sums sum_t u_t * xq_t (0 past
// count) and [d | m] of the blocks. Reads no byte past the last block.
template <QuantType T>
DSMOE_INLINE void block32_step(const uint8_t* blocks, const int8_t* xq, int count, __m256i& sums, __m512& scales) {
  constexpr size_t bb = block_bytes(T);
  __m512i z[4], heads[4];
  for (int p = 0; p < 4; ++p) {
    const int have = count - 2 * p;
    const uint8_t* pair = blocks + 2 * p * bb;
    heads[p] = _mm512_maskz_loadu_epi8(have >= 2 ? (1ull << (2 * bb)) - 1 : have == 1 ? (1ull << bb) - 1 : 0, pair);
    if (have >= 2)
      z[p] = pair32_lanes<T, true>(pair, xq + 64 * p);
    else if (have == 1)
      z[p] = pair32_lanes<T, false>(pair, xq + 64 * p);
    else
      z[p] = _mm512_setzero_si512();
  }
  sums = block32_sums<T>(z);
  scales = block32_scales<T>(heads);
}

template <QuantType T>
float dot_block32(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n) {
  constexpr size_t bb = block_bytes(T);
  constexpr int shift = block32_offset_shift<T>();
  const int64_t nb = n / 32, nb8 = nb - nb % 8;
  // Lanes 0-7: acc; 8-15: mac (types with a min).
  __m512 acc = _mm512_setzero_ps();
  // One group of 8 blocks (count == 8), or the last nb % 8 blocks as one masked step whose lanes past them keep
  // their value.
  auto step = [&](int64_t b0, int count, __mmask8 live) DSMOE_LAMBDA_INLINE {
    __m256i sums;
    __m512 scales;
    block32_step<T>(row + b0 * bb, xq + 32 * b0, count, sums, scales);
    const __m256i xs = count == 8 ? load32(xsum + b0) : _mm256_maskz_loadu_epi32(live, xsum + b0);
    if constexpr (shift >= 0) sums = _mm256_sub_epi32(sums, _mm256_slli_epi32(xs, shift));
    const __m256 xd8 = count == 8 ? _mm256_loadu_ps(xd + b0) : _mm256_maskz_loadu_ps(live, xd + b0);
    if constexpr (has_min(T)) {
      const __m512 xd16 = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(xd8)));
      const __m512 values = _mm512_cvtepi32_ps(_mm512_inserti64x4(_mm512_castsi256_si512(sums), xs, 1));
      acc = _mm512_mask3_fmadd_ps(_mm512_mul_ps(scales, xd16), values, acc, static_cast<__mmask16>(live | (live << 8)));
    } else {
      const __m256 dd = _mm256_mul_ps(_mm512_castps512_ps256(scales), xd8);
      acc = _mm512_castps256_ps512(
          _mm256_mask3_fmadd_ps(dd, _mm256_cvtepi32_ps(sums), _mm512_castps512_ps256(acc), live));
    }
  };
  for (int64_t b0 = 0; b0 < nb8; b0 += 8) step(b0, 8, 0xff);
  if (const int rest = static_cast<int>(nb - nb8); rest > 0) step(nb8, rest, static_cast<__mmask8>((1u << rest) - 1));
  __m256 lanes8 = _mm512_castps512_ps256(acc);
  if constexpr (has_min(T))
    lanes8 = _mm256_add_ps(lanes8, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, lanes8);
  return hsum8(lanes);
}

// ---- K-quant super-blocks: S (the 8 S_b) and M (the 8 M_b) ----

// unpack_scales_k4 with 128-bit operations: 32-bit lanes [a, c, e] of the 12 bytes -> [scales 0-3, scales 4-7,
// mins 0-3, mins 4-7] = [a & 0x3f.., (e & 0x0f..) | ((a >> 2) & 0x30..), c & 0x3f.., ((e >> 4) & 0x0f..) |
// ((c >> 2) & 0x30..)]. Reads 16 bytes (the 12 and 4 of qs).
DSMOE_INLINE __m128i unpack_scales_k4_simd(const uint8_t* p) {
  const __m128i v = load16(p);
  const __m128i low = _mm_srlv_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)), _mm_setr_epi32(0, 0, 0, 4));
  const __m128i top = _mm_and_si128(_mm_srli_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 0, 0)), 2),
                                    _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  const __m128i low_mask = _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f);
  return _mm_ternarylogic_epi32(low, low_mask, top, 0xea);  // (low & low_mask) | top
}

// block_sums of c in the low 256 bits, `high` in the high 256 bits (one two-source permute).
DSMOE_INLINE __m512i block_sums_with(__m512i c, __m256i high) {
  const __m512i d = _mm512_add_epi32(c, _mm512_shuffle_i64x2(c, c, _MM_SHUFFLE(2, 3, 0, 1)));
  const __m512i order = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 16, 17, 18, 19, 20, 21, 22, 23);
  return _mm512_permutex2var_epi32(d, order, _mm512_castsi256_si512(high));
}

// Per super-block: [S_b of its 8 32-blocks | M_b], so that one 16-lane FMA with [d*xd | dmin*xd] does both.
template <QuantType T>  // Q4_K or Q5_K
DSMOE_INLINE __m512i superblock_k45(const uint8_t* block, const int8_t* x, const int32_t* xsum) {
  constexpr bool kFive = T == QuantType::Q5_K;
  const uint8_t* qs = block + (kFive ? 48 : 16);
  __m512i qh = _mm512_setzero_si512();
  if constexpr (kFive) qh = broadcast32(block + 16);
  __m512i z[4];
  for (int c = 0; c < 4; ++c) {  // 32-byte chunk c: low nibbles = 32-block 2c, high nibbles = 2c+1
    __m512i u = bit_move2(broadcast32(qs + 32 * c), kLowNibble, kHighNibble);
    if constexpr (kFive)  // 32-block j's fifth bit: bit j of qh, to bit 4
      u = _mm512_or_si512(u, bit_move2(qh, bit_move(2 * c, 4, 1), bit_move(2 * c + 1, 4, 1)));
    z[c] = dpbusd(u, load64(x + 64 * c));
  }
  const __m128i scales_mins = unpack_scales_k4_simd(block + 4);  // bytes 0-7 scales, 8-15 mins
  const __m512i c = quarter_sums_weighted(z, quarter_weights(_mm256_cvtepu8_epi16(scales_mins), kPerBlock));
  // M_b = m_b * X_b by int16 madd: X_b's low word is X_b (|X_b| <= 32 * 127), its high word meets m's zero word.
  const __m256i mins =
      _mm256_madd_epi16(load32(xsum), _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(scales_mins, scales_mins)));
  return block_sums_with(c, mins);
}

DSMOE_INLINE void superblock_q6k(const uint8_t* block, const int8_t* x, __m256i& sums) {
  const __m512i m4 = _mm512_set1_epi8(0x0f), offset = _mm512_set1_epi8(32);
  __m512i z[4];
  for (int h = 0; h < 2; ++h) {
    // ql(0) | ql(1) of the half; qh twice. 32-block 4h + c: nibble c/2 of ql(c%2), top bits 2c, 2c+1 of qh.
    const __m512i ql = load64(block + 64 * h), qh = broadcast32(block + 128 + 32 * h);
    const __m512i top01 = bit_move2(qh, bit_move(0, 4, 2), bit_move(2, 4, 2));
    const __m512i top23 = bit_move2(qh, bit_move(4, 4, 2), bit_move(6, 4, 2));
    const __m512i u01 = _mm512_ternarylogic_epi32(ql, m4, top01, 0xea);  // (ql & 0x0f) | top
    const __m512i u23 = _mm512_or_si512(bit_move2(ql, kHighNibble, kHighNibble), top23);
    z[2 * h] = dpbusd_offset(u01, load64(x + 128 * h), offset);
    z[2 * h + 1] = dpbusd_offset(u23, load64(x + 128 * h + 64), offset);
  }
  sums = block_sums(quarter_sums_weighted(z, quarter_weights(_mm256_cvtepi8_epi16(load16(block + 192)), kPerSubBlock)));
}

DSMOE_INLINE void superblock_q3k(const uint8_t* block, const int8_t* x, __m256i& sums) {
  const __m512i four = _mm512_set1_epi8(4);
  const __m512i hmask = broadcast32(block);
  __m512i z[4];
  for (int h = 0; h < 2; ++h) {
    const __m512i qs = broadcast32(block + 32 + 32 * h);
    for (int c = 0; c < 4; c += 2) {  // 32-blocks j, j+1: bits 2c (2c+2) of qs, bit j (j+1) of hmask to bit 2
      const int j = 4 * h + c;
      const __m512i u = _mm512_or_si512(bit_move2(qs, bit_move(2 * c, 0, 2), bit_move(2 * c + 2, 0, 2)),
                                        bit_move2(hmask, bit_move(j, 2, 1), bit_move(j + 1, 2, 1)));
      z[2 * h + c / 2] = dpbusd_offset(u, load64(x + 32 * j), four);  // u = q + 4
    }
  }
  const __m128i scale_bytes =
      _mm_sub_epi8(_mm256_castsi256_si128(qdot_avx2::unpack_scale_bytes_q3k(block + 96)), _mm_set1_epi8(32));
  sums = block_sums(quarter_sums_weighted(z, quarter_weights(_mm256_cvtepi8_epi16(scale_bytes), kPerSubBlock)));
}

DSMOE_INLINE __m512i superblock_q2k(const uint8_t* block, const int8_t* x) {  // [S | M] as superblock_k45
  const __m128i packed = load16(block), low4 = _mm_set1_epi8(0x0f);
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i z[4], w[4];
  for (int h = 0; h < 2; ++h) {
    const __m512i qs = broadcast32(block + 16 + 32 * h);
    for (int c = 0; c < 4; c += 2) {
      const int j = 4 * h + c;
      const __m512i xv = load64(x + 32 * j);
      z[2 * h + c / 2] = dpbusd(bit_move2(qs, bit_move(2 * c, 0, 2), bit_move(2 * c + 2, 0, 2)), xv);
      w[2 * h + c / 2] = dpbusd(ones, xv);  // sums of x per 4 bytes, for the mins
    }
  }
  const __m512i scales = quarter_weights(_mm256_cvtepu8_epi16(_mm_and_si128(packed, low4)), kPerSubBlock);
  const __m512i min16 =
      quarter_weights(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), low4)), kPerSubBlock);
  return block_sums_with(quarter_sums_weighted(z, scales), block_sums(quarter_sums_weighted(w, min16)));
}

template <QuantType T>
float dot_kquant(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n) {
  constexpr size_t bb = block_bytes(T);
  constexpr int d_at = qdot_avx2::kquant_d_offset<T>();
  alignas(32) float lanes[8];
  if constexpr (has_min(T)) {
    // 16 lanes: acc (S terms) | mac (min terms), one FMA per super-block; d and dmin are adjacent fp16s.
    const __m512i d_then_dmin = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; ++i) {
      const uint8_t* block = row + i * bb;
      __m512i sums_mins;
      if constexpr (T == QuantType::Q2_K)
        sums_mins = superblock_q2k(block, xq + 256 * i);
      else
        sums_mins = superblock_k45<T>(block, xq + 256 * i, xsum + 8 * i);
      const __m128 scales = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(load_u32(block + d_at))));
      const __m512 d = _mm512_permutexvar_ps(d_then_dmin, _mm512_castps128_ps512(scales));
      const __m512 xd16 = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(xd + 8 * i))));
      acc = _mm512_fmadd_ps(_mm512_mul_ps(d, xd16), _mm512_cvtepi32_ps(sums_mins), acc);
    }
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
    _mm256_store_ps(lanes, _mm256_sub_ps(_mm512_castps512_ps256(acc), hi));
  } else {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 256; ++i) {
      const uint8_t* block = row + i * bb;
      __m256i sums;
      if constexpr (T == QuantType::Q6_K)
        superblock_q6k(block, xq + 256 * i, sums);
      else
        superblock_q3k(block, xq + 256 * i, sums);
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(block + d_at)));
      acc = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_loadu_ps(xd + 8 * i)), _mm256_cvtepi32_ps(sums), acc);
    }
    _mm256_store_ps(lanes, acc);
  }
  return hsum8(lanes);
}

template <QuantType T>
float kernel(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n) {
  if constexpr (is_kquant(T))
    return dot_kquant<T>(row, xq, xd, xsum, n);
  else
    return dot_block32<T>(row, xq, xd, xsum, n);
}

}  // namespace qdot_avx512
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif  // DSMOE_QDOT_X86

namespace {
bool have_vnni() {
#if defined(DSMOE_QDOT_SIMD)
  static const bool have = quant_have_avx2() && __builtin_cpu_supports("avx512f") &&
                           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("gfni");
  return have;
#else
  return false;
#endif
}

float kernel_scalar(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                    int64_t n) {
  return is_kquant(t) ? dot_kquant_scalar(t, row, xq, xd, n) : dot_block32_scalar(t, row, xq, xd, xsum, n);
}

template <QuantType kType>
float scalar_kernel(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n) {
  return kernel_scalar(kType, row, xq, xd, xsum, n);
}

// The kernel template KERNEL instantiated for t (nullptr if t has none).
#define DSMOE_QDOT_SWITCH(t, KERNEL)                          \
  switch (t) {                                                \
    case QuantType::Q4_1: return KERNEL<QuantType::Q4_1>;     \
    case QuantType::Q5_0: return KERNEL<QuantType::Q5_0>;     \
    case QuantType::Q5_1: return KERNEL<QuantType::Q5_1>;     \
    case QuantType::IQ4_NL: return KERNEL<QuantType::IQ4_NL>; \
    case QuantType::Q2_K: return KERNEL<QuantType::Q2_K>;     \
    case QuantType::Q3_K: return KERNEL<QuantType::Q3_K>;     \
    case QuantType::Q4_K: return KERNEL<QuantType::Q4_K>;     \
    case QuantType::Q5_K: return KERNEL<QuantType::Q5_K>;     \
    case QuantType::Q6_K: return KERNEL<QuantType::Q6_K>;     \
    default: return nullptr;                                  \
  }

QdotKernel scalar_kernel_for(QuantType t){DSMOE_QDOT_SWITCH(t, scalar_kernel)}
#if defined(DSMOE_QDOT_SIMD)
QdotKernel avx2_kernel_for(QuantType t){DSMOE_QDOT_SWITCH(t, qdot_avx2::kernel)} QdotKernel
    vnni_kernel_for(QuantType t) {
  DSMOE_QDOT_SWITCH(t, qdot_avx512::kernel)
}
#endif
#undef DSMOE_QDOT_SWITCH
}  // namespace

bool qdot_supported(QuantType t) { return is_block32(t) || is_kquant(t); }

float qdot_q8act_scalar(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                        int64_t n) {
  check_row(t, n);
  return kernel_scalar(t, row, xq, xd, xsum, n);
}

namespace {
// The kernel of the fastest path this CPU has, up to `most` (tests and benchmarks pin a path).
enum class Path { kScalar, kAvx2, kVnni };
QdotKernel kernel_up_to(QuantType t, Path most) {
#if defined(DSMOE_QDOT_SIMD)
  if (most >= Path::kVnni && have_vnni()) return vnni_kernel_for(t);
  if (most >= Path::kAvx2 && quant_have_avx2()) return avx2_kernel_for(t);
#endif
  (void)most;
  return scalar_kernel_for(t);
}
}  // namespace

float qdot_q8act_avx2(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                      int64_t n) {
  check_row(t, n);
  return kernel_up_to(t, Path::kAvx2)(row, xq, xd, xsum, n);
}

float qdot_q8act_vnni(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                      int64_t n) {
  check_row(t, n);
  return kernel_up_to(t, Path::kVnni)(row, xq, xd, xsum, n);
}

float qdot_q8act(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n) {
  // Called once per row while decoding: the kernel comes from a table by type id (the fastest path, chosen once).
  struct Entry {
    QdotKernel kernel = nullptr;
    int64_t block = 0;
  };
  static const std::array<Entry, 32> table = [] {
    std::array<Entry, 32> e{};
    for (QuantType k : kAllQuantTypes)
      if (qdot_supported(k)) e[static_cast<uint32_t>(k)] = {qdot_q8act_kernel(k), quant_block_size(k)};
    return e;
  }();
  const uint32_t id = static_cast<uint32_t>(t);
  if (id < table.size() && table[id].kernel != nullptr && n >= 0 && n % table[id].block == 0)
    return table[id].kernel(row, xq, xd, xsum, n);
  check_row(t, n);  // throws
  return 0.0f;
}

QdotKernel qdot_q8act_kernel(QuantType t) {
  check(qdot_supported(t), "integer dot product: no kernel for {}", quant_type_name(t));
  return kernel_up_to(t, Path::kVnni);
}

const char* qdot_q8act_path() {
  if (have_vnni()) return "AVX512-VNNI";
  if (quant_have_avx2()) return "AVX2";
  return "scalar";
}

}  // namespace dsmoe
