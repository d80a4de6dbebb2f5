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
#include "core/vecmath.h"

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

// Byte offset, inside the payload of a group of m blocks (m = 8, or fewer for the row's last group), of weight i
// (0..31) of block k (< m): vectors are 4m bytes wide. Q4_0: the byte holding it (low nibble for i < 16, high
// nibble for i >= 16).
inline int64_t q8_payload_offset(int64_t k, int i, int64_t m) { return 4 * m * (i / 4) + 4 * k + i % 4; }
inline int64_t q4_payload_offset(int64_t k, int i, int64_t m) { return 4 * m * ((i % 16) / 4) + 4 * k + i % 4; }

void qpack_row(QuantType t, const uint8_t* src, uint8_t* dst, int64_t n) {
  check_packable(t, n);
  const size_t bb = block_bytes(t);
  const int64_t nb = n / 32;
  for (int64_t b0 = 0; b0 < nb; b0 += kGroup) {
    const int64_t m = std::min(kGroup, nb - b0);  // blocks in this group
    const uint8_t* blocks = src + b0 * bb;
    uint8_t* grp = dst + b0 * bb;
    uint8_t* payload = grp + 2 * m;
    if (t == QuantType::Q4_0) std::memset(payload, 0, 16 * m);
    for (int64_t k = 0; k < m; ++k) {
      const uint8_t* block = blocks + k * bb;
      std::memcpy(grp + 2 * k, block, 2);  // the scales, in block order
      for (int i = 0; i < 32; ++i) {
        if (t == QuantType::Q8_0)
          payload[q8_payload_offset(k, i, m)] = block[2 + i];
        else
          payload[q4_payload_offset(k, i, m)] |= static_cast<uint8_t>(q4_nibble(block, i) << (i < 16 ? 0 : 4));
      }
    }
  }
}

void qunpack_row(QuantType t, const uint8_t* src, uint8_t* dst, int64_t n) {
  check_packable(t, n);
  const size_t bb = block_bytes(t);
  const int64_t nb = n / 32;
  for (int64_t b0 = 0; b0 < nb; b0 += kGroup) {
    const int64_t m = std::min(kGroup, nb - b0);
    const uint8_t* grp = src + b0 * bb;
    const uint8_t* payload = grp + 2 * m;
    for (int64_t k = 0; k < m; ++k) {
      uint8_t* block = dst + (b0 + k) * bb;
      std::memcpy(block, grp + 2 * k, 2);
      if (t == QuantType::Q8_0) {
        for (int i = 0; i < 32; ++i) block[2 + i] = payload[q8_payload_offset(k, i, m)];
      } else {
        for (int i = 0; i < 16; ++i)
          block[2 + i] = static_cast<uint8_t>((payload[q4_payload_offset(k, i, m)] & 0x0f) |
                                              (payload[q4_payload_offset(k, i + 16, m)] & 0xf0));
      }
    }
  }
}

void qpack_act(const int8_t* xq, int8_t* xt, int64_t n) {
  check(n % 32 == 0, "activations: {} is not a multiple of 32", n);
  const int64_t nb = n / 32;
  for (int64_t b0 = 0; b0 < nb; b0 += kGroup) {
    const int64_t m = std::min(kGroup, nb - b0);
    for (int64_t k = 0; k < m; ++k)
      for (int i = 0; i < 32; ++i) xt[32 * b0 + q8_payload_offset(k, i, m)] = xq[32 * (b0 + k) + i];
  }
}

namespace {
// Inverse of qpack_act (the scalar reference reads natural order).
void unpack_act(const int8_t* xt, int8_t* xq, int64_t n) {
  const int64_t nb = n / 32;
  for (int64_t b0 = 0; b0 < nb; b0 += kGroup) {
    const int64_t m = std::min(kGroup, nb - b0);
    for (int64_t k = 0; k < m; ++k)
      for (int i = 0; i < 32; ++i) xq[32 * (b0 + k) + i] = xt[32 * b0 + q8_payload_offset(k, i, m)];
  }
}
}  // namespace

void qpack_dot_rows_scalar(QuantType t, const uint8_t* row, const int8_t* xt, const float* xd, const int32_t* xsum,
                           int64_t n, int64_t nx, float* out) {
  check_packable(t, n);
  thread_local std::vector<uint8_t> stored;
  thread_local std::vector<int8_t> x;
  stored.resize(quant_row_bytes(t, n));
  x.resize(static_cast<size_t>(n));
  qunpack_row(t, row, stored.data(), n);
  for (int64_t i = 0; i < nx; ++i) {
    unpack_act(xt + i * n, x.data(), n);
    out[i] = quant_dot_q8act_scalar(t, stored.data(), x.data(), xd + i * n / 32, xsum + i * n / 32, n);
  }
}

#if defined(DSMOE_QPACK_X86)
namespace {
#define DSMOE_QPACK_AVX2 __attribute__((target("avx2,fma,f16c")))
#define DSMOE_QPACK_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))

// acc + per 4-byte lane, the sum of the 4 products of u8 weights (already unsigned) and s8 activations.
DSMOE_QPACK_VNNI inline __m256i dot_u8s8_vnni(__m256i acc, __m256i w, __m256i x) {
  return _mm256_dpbusd_epi32(acc, w, x);
}
DSMOE_QPACK_AVX2 inline __m256i dot_u8s8_avx2(__m256i acc, __m256i w, __m256i x) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
}

// One full Q4_0 or Q8_0 group (8 blocks) against NX activation rows, 512 bits wide: vectors j and j+1 of a group are
// adjacent (32 bytes apart), so one zmm load (and, for Q4_0, mask and shift; for Q8_0, one xor) decodes two weight
// vectors, one zmm vpdpbusd sums two block-vectors, and the two 256-bit halves are added at the end. Integer sums
// are exact, so this gives the bits of the 256-bit kernel below. Q4_0: about 35% fewer instructions (the nibble
// decoding made Q4_0 decode instruction-bound: 40-46 GB/s against 48-54 for packed Q8_0 on the same 0.9 GB matrix).
// Q8_0 with several activation rows (decode steps of several streams, prompts): 4 rows +4-6%, pp128 +8%; one Q8_0
// row is bound by memory and measured 2% slower in zmm, so it keeps the 256-bit loop.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12: _mm512_undefined_epi32() (bug 105593)
template <bool kQ4, int NX>
DSMOE_QPACK_VNNI inline void group_vnni512(const uint8_t* grp, const int8_t* xt, const float* xd, const int32_t* xsum,
                                           int64_t n, int64_t b0, __m256* acc) {
  const int64_t nb = n / 32;
  const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(grp)));
  const uint8_t* payload = grp + 2 * kGroup;
  // w[p]: the unsigned weights of vectors 2p, 2p+1 (Q4_0: nibble q = w + 8; Q8_0: w ^ 0x80 = w + 128).
  __m512i w[4];
  if constexpr (kQ4) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i b01 = _mm512_loadu_si512(payload), b23 = _mm512_loadu_si512(payload + 64);
    w[0] = _mm512_and_si512(b01, low4);
    w[1] = _mm512_and_si512(b23, low4);
    w[2] = _mm512_and_si512(_mm512_srli_epi16(b01, 4), low4);
    w[3] = _mm512_and_si512(_mm512_srli_epi16(b23, 4), low4);
  } else {
    const __m512i flip = _mm512_set1_epi8(-128);
    for (int j = 0; j < 4; ++j) w[j] = _mm512_xor_si512(_mm512_loadu_si512(payload + 64 * j), flip);
  }
  constexpr int shift = kQ4 ? 3 : 7;  // sum -= xsum * (8 or 128): back to the signed weights
  for (int i = 0; i < NX; ++i) {
    const int8_t* x = xt + i * n + b0 * 32;
    __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], _mm512_loadu_si512(x));
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[1], _mm512_loadu_si512(x + 64));
    s0 = _mm512_dpbusd_epi32(s0, w[2], _mm512_loadu_si512(x + 128));
    s1 = _mm512_dpbusd_epi32(s1, w[3], _mm512_loadu_si512(x + 192));
    const __m512i s = _mm512_add_epi32(s0, s1);
    __m256i sums = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
    sums = _mm256_sub_epi32(
        sums, _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xsum + i * nb + b0)), shift));
    const __m256 scale = _mm256_mul_ps(dw, _mm256_loadu_ps(xd + i * nb + b0));
    acc[i] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc[i]);
  }
}
#pragma GCC diagnostic pop

// One packed row against NX activation rows. Weights of a group are decoded once into w[8] vectors (unsigned
// forms: Q4_0 nibbles q = w + 8; Q8_0 under VNNI w ^ 0x80 = w + 128, under AVX2 |w| with the sign moved onto x),
// then per activation row: 8 dot-product instructions into two accumulators whose lane k is block k's exact sum,
// the unsigned correction (sum -= xsum << shift), and one vector FMA with the 8 scale products: lane b of acc takes
// block b of each group, i.e. acc[b % 8] as in the reference. Written once, instantiated per instruction set (a
// target attribute cannot depend on a template parameter, and AVX2-only CPUs must not meet EVEX encodings).
#define DSMOE_QPACK_KERNEL(NAME, TARGET, VNNI, DOT)                                                                  \
  template <QuantType kType, int NX>                                                                                 \
  TARGET void NAME(const uint8_t* row, const int8_t* xt, const float* xd, const int32_t* xsum, int64_t n,            \
                   float* out) {                                                                                     \
    constexpr bool kVnni = VNNI;                                                                                     \
    constexpr bool kQ4 = kType == QuantType::Q4_0;                                                                   \
    constexpr size_t bb = kQ4 ? 18 : 34;                                                                             \
    constexpr int shift = kQ4 ? 3 : (kVnni ? 7 : -1);                                                                \
    const int64_t nb = n / 32, ng = nb / kGroup;                                                                     \
    __m256 acc[NX];                                                                                                  \
    for (int i = 0; i < NX; ++i) acc[i] = _mm256_setzero_ps();                                                       \
    const __m256i low4 = _mm256_set1_epi8(0x0f);                                                                     \
    /* One group of m blocks starting at block b0 (vectors 4m bytes apart), its vectors read by `load`; `update` */  \
    /* turns (old acc, new acc) into the stored acc. */                                                              \
    auto group = [&](int64_t b0, int64_t m, __m256 dw, auto load, auto update) {                                     \
      const uint8_t* payload = row + b0 * bb + 2 * m;                                                                \
      const int64_t stride = 4 * m;                                                                                  \
      __m256i w[8], wsign[8];                                                                                        \
      if constexpr (kQ4) {                                                                                           \
        for (int j = 0; j < 4; ++j) {                                                                                \
          const __m256i bytes = load(payload + stride * j);                                                          \
          w[j] = _mm256_and_si256(bytes, low4);                                                                      \
          w[j + 4] = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);                                            \
        }                                                                                                            \
      } else {                                                                                                       \
        for (int j = 0; j < 8; ++j) {                                                                                \
          const __m256i raw = load(payload + stride * j);                                                            \
          if constexpr (kVnni) {                                                                                     \
            w[j] = _mm256_xor_si256(raw, _mm256_set1_epi8(-128));                                                    \
          } else {                                                                                                   \
            w[j] = _mm256_sign_epi8(raw, raw);                                                                       \
            wsign[j] = raw;                                                                                          \
          }                                                                                                          \
        }                                                                                                            \
      }                                                                                                              \
      for (int i = 0; i < NX; ++i) {                                                                                 \
        const int8_t* x = xt + i * n + b0 * 32;                                                                      \
        __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),                      \
                        _mm256_setzero_si256()};                                                                     \
        for (int j = 0; j < 8; ++j) {                                                                                \
          __m256i xj = load(x + stride * j);                                                                         \
          if constexpr (!kQ4 && !kVnni) xj = _mm256_sign_epi8(xj, wsign[j]);                                         \
          s[j % 4] = DOT(s[j % 4], w[j], xj);                                                                        \
        }                                                                                                            \
        __m256i sums = _mm256_add_epi32(_mm256_add_epi32(s[0], s[1]), _mm256_add_epi32(s[2], s[3]));                 \
        if constexpr (shift >= 0) sums = _mm256_sub_epi32(sums, _mm256_slli_epi32(load(xsum + i * nb + b0), shift)); \
        const __m256 scale = _mm256_mul_ps(dw, _mm256_castsi256_ps(load(xd + i * nb + b0)));                         \
        acc[i] = update(acc[i], _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc[i]));                           \
      }                                                                                                              \
    };                                                                                                               \
    auto full = [](const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); };                    \
    auto keep_new = [](__m256, __m256 updated) { return updated; };                                                  \
    if constexpr (kVnni && kQ4) {                                                                                    \
      for (int64_t g = 0; g < ng; ++g)                                                                               \
        group_vnni512<true, NX>(row + g * kGroup * bb, xt, xd, xsum, n, g * kGroup, acc);                            \
    } else if constexpr (kVnni && NX > 1) {                                                                          \
      for (int64_t g = 0; g < ng; ++g)                                                                               \
        group_vnni512<false, NX>(row + g * kGroup * bb, xt, xd, xsum, n, g * kGroup, acc);                           \
    } else {                                                                                                         \
      for (int64_t g = 0; g < ng; ++g) {                                                                             \
        const uint8_t* grp = row + g * kGroup * bb;                                                                  \
        group(g* kGroup, kGroup, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(grp))), full,      \
              keep_new);                                                                                             \
      }                                                                                                              \
    }                                                                                                                \
    const int64_t m = nb - ng * kGroup; /* the last, partial group: m 4-byte lanes, loaded under a lane mask */      \
    if (m > 0) {                                                                                                     \
      const __m256i mask =                                                                                           \
          _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(m)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));     \
      const __mmask8 kmask = static_cast<__mmask8>((1u << m) - 1);                                                   \
      auto masked = [&](const void* p) {                                                                             \
        if constexpr (kVnni)                                                                                         \
          return _mm256_maskz_loadu_epi32(kmask, p); /* AVX-512 masked load: full speed */                           \
        else                                                                                                         \
          return _mm256_maskload_epi32(static_cast<const int*>(p), mask);                                            \
      };                                                                                                             \
      /* lanes >= m keep their value exactly (the reference never touches them) */                                   \
      auto blend = [&](__m256 old, __m256 updated) {                                                                 \
        return _mm256_blendv_ps(old, updated, _mm256_castsi256_ps(mask));                                            \
      };                                                                                                             \
      alignas(16) uint16_t scales16[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                   \
      std::memcpy(scales16, row + ng * kGroup * bb, static_cast<size_t>(2 * m));                                     \
      group(ng* kGroup, m, _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(scales16))), masked,      \
            blend);                                                                                                  \
    }                                                                                                                \
    for (int i = 0; i < NX; ++i) {                                                                                   \
      alignas(32) float lanes[8];                                                                                    \
      _mm256_store_ps(lanes, acc[i]);                                                                                \
      out[i] = hsum8(lanes);                                                                                         \
    }                                                                                                                \
  }

DSMOE_QPACK_KERNEL(dot_rows_vnni, DSMOE_QPACK_VNNI, true, dot_u8s8_vnni)
DSMOE_QPACK_KERNEL(dot_rows_avx2, DSMOE_QPACK_AVX2, false, dot_u8s8_avx2)

template <QuantType kType, bool kVnni>
void dot_rows_any(const uint8_t* row, const int8_t* xt, const float* xd, const int32_t* xsum, int64_t n, int64_t nx,
                  float* out) {
#define DSMOE_QPACK_CALL(M) \
  (kVnni ? dot_rows_vnni<kType, M>(row, q, d, s, n, out + i0) : dot_rows_avx2<kType, M>(row, q, d, s, n, out + i0))
  const int64_t nbx = n / 32;
  for (int64_t i0 = 0; i0 < nx; i0 += 4) {
    const int64_t m = std::min<int64_t>(4, nx - i0);
    const int8_t* q = xt + i0 * n;
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
                           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
  return have;
}
}  // namespace
#endif

void qpack_matvec(QuantType t, const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, const int8_t* xt,
                  const float* xd, const int32_t* xsum, int64_t n, float* y) {
#if defined(DSMOE_QPACK_X86)
  if (have_vnni()) {
    if (t == QuantType::Q4_0)
      for (int64_t r = r0; r < r1; ++r) dot_rows_vnni<QuantType::Q4_0, 1>(w + r * row_bytes, xt, xd, xsum, n, y + r);
    else
      for (int64_t r = r0; r < r1; ++r) dot_rows_vnni<QuantType::Q8_0, 1>(w + r * row_bytes, xt, xd, xsum, n, y + r);
    return;
  }
  if (have_avx2()) {
    if (t == QuantType::Q4_0)
      for (int64_t r = r0; r < r1; ++r) dot_rows_avx2<QuantType::Q4_0, 1>(w + r * row_bytes, xt, xd, xsum, n, y + r);
    else
      for (int64_t r = r0; r < r1; ++r) dot_rows_avx2<QuantType::Q8_0, 1>(w + r * row_bytes, xt, xd, xsum, n, y + r);
    return;
  }
#endif
  for (int64_t r = r0; r < r1; ++r) qpack_dot_rows_scalar(t, w + r * row_bytes, xt, xd, xsum, n, 1, y + r);
}

void qpack_dot_rows_avx2(QuantType t, const uint8_t* row, const int8_t* xt, const float* xd, const int32_t* xsum,
                         int64_t n, int64_t nx, float* out) {
#if defined(DSMOE_QPACK_X86)
  if (have_avx2()) {
    check_packable(t, n);
    if (t == QuantType::Q4_0)
      dot_rows_any<QuantType::Q4_0, false>(row, xt, xd, xsum, n, nx, out);
    else
      dot_rows_any<QuantType::Q8_0, false>(row, xt, xd, xsum, n, nx, out);
    return;
  }
#endif
  qpack_dot_rows_scalar(t, row, xt, xd, xsum, n, nx, out);
}

void qpack_dot_rows(QuantType t, const uint8_t* row, const int8_t* xt, const float* xd, const int32_t* xsum, int64_t n,
                    int64_t nx, float* out) {
#if defined(DSMOE_QPACK_X86)
  if (have_vnni()) {
    if (t == QuantType::Q4_0)
      dot_rows_any<QuantType::Q4_0, true>(row, xt, xd, xsum, n, nx, out);
    else
      dot_rows_any<QuantType::Q8_0, true>(row, xt, xd, xsum, n, nx, out);
    return;
  }
#endif
  qpack_dot_rows_avx2(t, row, xt, xd, xsum, n, nx, out);
}

}  // namespace dsmoe
