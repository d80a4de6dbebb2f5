// Packed Q8_0 / Q4_0 rows and their integer dot-product kernels (see qpack.h for the layout).
#include "core/qpack.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DSMOE_QPACK_X86 1
#endif

#include "core/error.h"

namespace dsmoe {

namespace {
constexpr int64_t kGroup = 8;  // blocks per packed group

size_t block_bytes(QuantType t) { return t == QuantType::Q8_0 ? 34 : 18; }

void check_packable(QuantType t, int64_t n) {
  check(qpack_supported(t), "packed rows are Q8_0 or Q4_0, not {}", quant_type_name(t));
  check(n >= 0 && n % 32 == 0, "{}: {} weights is not a multiple of 32", quant_type_name(t), n);
}

// The stored 4-bit value (0..15) of weight i of a Q4_0 block.
inline uint8_t q4_nibble(const uint8_t* block, int i) {
  return i < 16 ? (block[2 + i] & 0x0f) : (block[2 + i - 16] >> 4);
}
}  // namespace

bool qpack_supported(QuantType t) { return t == QuantType::Q8_0 || t == QuantType::Q4_0; }

void qpack_row(QuantType t, const uint8_t* src, uint8_t* dst, int64_t n) {
  check_packable(t, n);
  const size_t bb = block_bytes(t);
  const int64_t nb = n / 32, ng = nb / kGroup;
  for (int64_t g = 0; g < ng; ++g, src += kGroup * bb, dst += kGroup * bb) {
    for (int64_t b = 0; b < kGroup; ++b) std::memcpy(dst + 2 * b, src + b * bb, 2);  // the 8 scales
    uint8_t* payload = dst + 2 * kGroup;
    if (t == QuantType::Q8_0) {
      for (int64_t b = 0; b < kGroup; ++b) std::memcpy(payload + 32 * b, src + b * bb + 2, 32);
    } else {
      for (int64_t p = 0; p < kGroup / 2; ++p) {
        const uint8_t* even = src + 2 * p * bb;
        const uint8_t* odd = even + bb;
        for (int i = 0; i < 32; ++i)
          payload[32 * p + i] = static_cast<uint8_t>(q4_nibble(even, i) | (q4_nibble(odd, i) << 4));
      }
    }
  }
  std::memcpy(dst, src, static_cast<size_t>(nb - ng * kGroup) * bb);  // the partial group as stored
}

void qunpack_row(QuantType t, const uint8_t* src, uint8_t* dst, int64_t n) {
  check_packable(t, n);
  const size_t bb = block_bytes(t);
  const int64_t nb = n / 32, ng = nb / kGroup;
  for (int64_t g = 0; g < ng; ++g, src += kGroup * bb, dst += kGroup * bb) {
    for (int64_t b = 0; b < kGroup; ++b) std::memcpy(dst + b * bb, src + 2 * b, 2);
    const uint8_t* payload = src + 2 * kGroup;
    if (t == QuantType::Q8_0) {
      for (int64_t b = 0; b < kGroup; ++b) std::memcpy(dst + b * bb + 2, payload + 32 * b, 32);
    } else {
      for (int64_t p = 0; p < kGroup / 2; ++p) {
        uint8_t* even = dst + 2 * p * bb;
        uint8_t* odd = even + bb;
        for (int i = 0; i < 16; ++i) {
          const uint8_t lo = payload[32 * p + i], hi = payload[32 * p + 16 + i];
          even[2 + i] = static_cast<uint8_t>((lo & 0x0f) | ((hi & 0x0f) << 4));
          odd[2 + i] = static_cast<uint8_t>((lo >> 4) | (hi & 0xf0));
        }
      }
    }
  }
  std::memcpy(dst, src, static_cast<size_t>(nb - ng * kGroup) * bb);
}

void qpack_dot_rows_scalar(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                           int64_t n, int64_t nx, float* out) {
  check_packable(t, n);
  thread_local std::vector<uint8_t> stored;
  stored.resize(quant_row_bytes(t, n));
  qunpack_row(t, row, stored.data(), n);
  for (int64_t i = 0; i < nx; ++i)
    out[i] = quant_dot_q8act_scalar(t, stored.data(), xq + i * n, xd + i * n / 32, xsum + i * n / 32, n);
}

#if defined(DSMOE_QPACK_X86)
namespace {
#define DSMOE_QPACK_AVX2 __attribute__((target("avx2,fma,f16c")))
#define DSMOE_QPACK_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))

// Lane k of the result = the sum of the 8 int32 lanes of v[k] (exact).
template <typename V>
DSMOE_QPACK_AVX2 inline __m256i hadd_tree(const V& v) {
  const __m256i s01 = _mm256_hadd_epi32(v[0], v[1]), s23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i s45 = _mm256_hadd_epi32(v[4], v[5]), s67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i t0 = _mm256_hadd_epi32(s01, s23), t1 = _mm256_hadd_epi32(s45, s67);
  const __m128i u0 = _mm_add_epi32(_mm256_castsi256_si128(t0), _mm256_extracti128_si256(t0, 1));
  const __m128i u1 = _mm_add_epi32(_mm256_castsi256_si128(t1), _mm256_extracti128_si256(t1, 1));
  return _mm256_set_m128i(u1, u0);
}

inline float hsum8(const float* a) {  // ggml's hsum_float_8 order, as quant.cpp
  const float r0 = a[0] + a[4], r1 = a[1] + a[5], r2 = a[2] + a[6], r3 = a[3] + a[7];
  return (r0 + r2) + (r1 + r3);
}

// The exact integer dot product of one stored block with 32 activations. Not auto-vectorised: GCC 12 turns this
// signed x signed int8 reduction into vpdpbusd (which reads one operand as unsigned) under avx512vnni targets.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-vectorize"), noinline))
#endif
int32_t stored_block_dot(QuantType t, const uint8_t* block, const int8_t* x) {
  int32_t sum = 0;
  for (int j = 0; j < 32; ++j) {
    const int wq = t == QuantType::Q4_0 ? q4_nibble(block, j) - 8 : static_cast<int8_t>(block[2 + j]);
    sum += wq * x[j];
  }
  return sum;
}

// 8 int32 partial sums of one 32-weight block: u8 weights (already unsigned) x s8 activations.
DSMOE_QPACK_VNNI inline __m256i dot_u8s8_vnni(__m256i w, __m256i x) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
}
DSMOE_QPACK_AVX2 inline __m256i dot_u8s8_avx2(__m256i w, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

// One packed row against NX activation rows. Weights of a group are decoded once into w[8] (unsigned forms:
// Q4_0 nibbles q = w + 8; Q8_0 under VNNI w ^ 0x80 = w + 128, under AVX2 |w| with the sign moved onto x),
// then per activation row: 8 block products, the hadd tree, the unsigned correction (sum -= xsum << shift), and one
// vector FMA with the 8 scale products — lane b of acc takes block b of each group, i.e. acc[b % 8] as in the
// reference. Written once, instantiated per instruction set (a target attribute cannot depend on a template
// parameter, and AVX2-only CPUs must not meet EVEX encodings).
#define DSMOE_QPACK_KERNEL(NAME, TARGET, VNNI, DOT)                                                                \
  template <QuantType kType, int NX>                                                                               \
  TARGET void NAME(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n,          \
                   float* out) {                                                                                   \
    constexpr bool kVnni = VNNI;                                                                                   \
    constexpr bool kQ4 = kType == QuantType::Q4_0;                                                                 \
    constexpr size_t bb = kQ4 ? 18 : 34;                                                                           \
    constexpr int shift = kQ4 ? 3 : (kVnni ? 7 : -1);                                                              \
    const int64_t nb = n / 32, ng = nb / kGroup;                                                                   \
    __m256 acc[NX];                                                                                                \
    for (int i = 0; i < NX; ++i) acc[i] = _mm256_setzero_ps();                                                     \
    const __m256i low4 = _mm256_set1_epi8(0x0f);                                                                   \
    for (int64_t g = 0; g < ng; ++g) {                                                                             \
      const uint8_t* grp = row + g * kGroup * bb;                                                                  \
      const uint8_t* payload = grp + 2 * kGroup;                                                                   \
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(grp)));                  \
      __m256i w[8], wsign[8];                                                                                      \
      if constexpr (kQ4) {                                                                                         \
        for (int p = 0; p < 4; ++p) {                                                                              \
          const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(payload + 32 * p));           \
          w[2 * p] = _mm256_and_si256(bytes, low4);                                                                \
          w[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);                                      \
        }                                                                                                          \
      } else {                                                                                                     \
        for (int k = 0; k < 8; ++k) {                                                                              \
          const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(payload + 32 * k));             \
          if constexpr (kVnni) {                                                                                   \
            w[k] = _mm256_xor_si256(raw, _mm256_set1_epi8(-128));                                                  \
          } else {                                                                                                 \
            w[k] = _mm256_sign_epi8(raw, raw);                                                                     \
            wsign[k] = raw;                                                                                        \
          }                                                                                                        \
        }                                                                                                          \
      }                                                                                                            \
      for (int i = 0; i < NX; ++i) {                                                                               \
        const int8_t* x = xq + i * n + g * kGroup * 32;                                                            \
        __m256i v[8];                                                                                              \
        for (int k = 0; k < 8; ++k) {                                                                              \
          __m256i xk = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32 * k));                          \
          if constexpr (!kQ4 && !kVnni) xk = _mm256_sign_epi8(xk, wsign[k]);                                       \
          v[k] = DOT(w[k], xk);                                                                                    \
        }                                                                                                          \
        __m256i sums = hadd_tree(v);                                                                               \
        if constexpr (shift >= 0)                                                                                  \
          sums = _mm256_sub_epi32(sums, _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(    \
                                                              xsum + i * nb + g * kGroup)),                        \
                                                          shift));                                                 \
        const __m256 scale = _mm256_mul_ps(dw, _mm256_loadu_ps(xd + i * nb + g * kGroup));                        \
        acc[i] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc[i]);                                         \
      }                                                                                                            \
    }                                                                                                              \
    for (int i = 0; i < NX; ++i) { /* the partial group, stored blocks one by one (same sums, same lanes) */      \
      alignas(32) float lanes[8];                                                                                  \
      _mm256_store_ps(lanes, acc[i]);                                                                              \
      for (int64_t b = ng * kGroup; b < nb; ++b) {                                                                 \
        const uint8_t* block = row + b * bb;                                                                       \
        const int32_t sum = stored_block_dot(kType, block, xq + i * n + 32 * b);                                   \
        uint16_t d;                                                                                                \
        std::memcpy(&d, block, 2);                                                                                 \
        lanes[b % 8] = std::fmaf(_cvtsh_ss(d) * xd[i * nb + b], static_cast<float>(sum), lanes[b % 8]);            \
      }                                                                                                            \
      out[i] = hsum8(lanes);                                                                                       \
    }                                                                                                              \
  }

DSMOE_QPACK_KERNEL(dot_rows_vnni, DSMOE_QPACK_VNNI, true, dot_u8s8_vnni)
DSMOE_QPACK_KERNEL(dot_rows_avx2, DSMOE_QPACK_AVX2, false, dot_u8s8_avx2)

template <QuantType kType, bool kVnni>
void dot_rows_any(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n, int64_t nx,
                  float* out) {
#define DSMOE_QPACK_CALL(M) \
  (kVnni ? dot_rows_vnni<kType, M>(row, q, d, s, n, out + i0) : dot_rows_avx2<kType, M>(row, q, d, s, n, out + i0))
  const int64_t nbx = n / 32;
  for (int64_t i0 = 0; i0 < nx; i0 += 4) {
    const int64_t m = std::min<int64_t>(4, nx - i0);
    const int8_t* q = xq + i0 * n;
    const float* d = xd + i0 * nbx;
    const int32_t* s = xsum + i0 * nbx;
    switch (m) {
      case 4: DSMOE_QPACK_CALL(4); break;
      case 3: DSMOE_QPACK_CALL(3); break;
      case 2: DSMOE_QPACK_CALL(2); break;
      default: DSMOE_QPACK_CALL(1); break;
    }
  }
#undef DSMOE_QPACK_CALL
}

bool have_avx2() {
  static const bool have =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return have;
}
bool have_vnni() {
  static const bool have = have_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                           __builtin_cpu_supports("avx512vnni");
  return have;
}
}  // namespace
#endif

void qpack_dot_rows_avx2(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                         int64_t n, int64_t nx, float* out) {
#if defined(DSMOE_QPACK_X86)
  if (have_avx2()) {
    check_packable(t, n);
    if (t == QuantType::Q4_0) dot_rows_any<QuantType::Q4_0, false>(row, xq, xd, xsum, n, nx, out);
    else dot_rows_any<QuantType::Q8_0, false>(row, xq, xd, xsum, n, nx, out);
    return;
  }
#endif
  qpack_dot_rows_scalar(t, row, xq, xd, xsum, n, nx, out);
}

void qpack_dot_rows(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                    int64_t n, int64_t nx, float* out) {
#if defined(DSMOE_QPACK_X86)
  if (have_vnni()) {
    if (t == QuantType::Q4_0) dot_rows_any<QuantType::Q4_0, true>(row, xq, xd, xsum, n, nx, out);
    else dot_rows_any<QuantType::Q8_0, true>(row, xq, xd, xsum, n, nx, out);
    return;
  }
#endif
  qpack_dot_rows_avx2(t, row, xq, xd, xsum, n, nx, out);
}

}  // namespace dsmoe
