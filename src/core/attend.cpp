// Decode attention of one query row over one head's cache (core/attend.h): a scalar reference and an AVX2 path
// with the same order of every rounding. Why a kernel of its own: per position, a general dot-product call plus a
// row conversion and an axpy cost ~60 cycles for 64 values; streaming K and V through registers costs ~15.
#include "core/attend.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/vecmath.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DSMOE_ATTEND_X86 1
#endif

namespace dsmoe {
namespace {

float load_value(QuantType t, const uint8_t* row, int64_t i) {
  uint16_t h;
  switch (t) {
    case QuantType::F32: {
      float v;
      std::memcpy(&v, row + 4 * i, 4);
      return v;
    }
    case QuantType::F16: std::memcpy(&h, row + 2 * i, 2); return fp16_to_fp32(h);
    default: std::memcpy(&h, row + 2 * i, 2); return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
  }
}

void check_args(QuantType type, int64_t hd) {
  check(type == QuantType::F32 || type == QuantType::F16 || type == QuantType::BF16,
        "attend_decode: the KV cache type must be f32, f16 or bf16");
  check(hd > 0, "attend_decode: the head dimension must be positive");
}

// The last hd % 8 values of a score, in order after the lanes' sum (both paths).
float score_tail(QuantType type, const uint8_t* kr, const float* q, int64_t hd, float sum) {
  for (int64_t j = hd - hd % 8; j < hd; ++j) sum = std::fmaf(load_value(type, kr, j), q[j], sum);
  return sum;
}

// Softmax of scores[0, T) in place, as weights that sum to one (the shared step of both paths).
void softmax_weights(float* scores, int64_t total) {
  const float sum = exp_shift_sum(scores, total, max_of(scores, total));
  const float inv = 1.0f / sum;
  for (int64_t p = 0; p < total; ++p) scores[p] *= inv;
}

}  // namespace

void attend_decode_scalar(QuantType type, const uint8_t* k, const uint8_t* v, int64_t total, const float* q, int64_t hd,
                          float scale, float* scores, float* out) {
  check_args(type, hd);
  const size_t row_bytes = static_cast<size_t>(hd) * (type == QuantType::F32 ? 4 : 2);
  for (int64_t p = 0; p < total; ++p) {
    const uint8_t* kr = k + p * row_bytes;
    float lanes[8] = {};
    for (int64_t c = 0; c + 8 <= hd; c += 8)
      for (int l = 0; l < 8; ++l) lanes[l] = std::fmaf(load_value(type, kr, c + l), q[c + l], lanes[l]);
    scores[p] = score_tail(type, kr, q, hd, hsum8(lanes)) * scale;
  }
  softmax_weights(scores, total);
  for (int64_t j = 0; j < hd; ++j) out[j] = 0.0f;
  for (int64_t p = 0; p < total; ++p) {
    const uint8_t* vr = v + p * row_bytes;
    for (int64_t j = 0; j < hd; ++j) out[j] = std::fmaf(scores[p], load_value(type, vr, j), out[j]);
  }
}

#if defined(DSMOE_ATTEND_X86)
namespace {
#define DSMOE_ATTEND_AVX2 __attribute__((target("avx2,fma,f16c")))

DSMOE_ATTEND_AVX2 inline __m256 load8(QuantType t, const uint8_t* row, int64_t i) {
  if (t == QuantType::F32) return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
  if (t == QuantType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// hsum8's order in registers: ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)).
DSMOE_ATTEND_AVX2 inline float hsum8_avx(__m256 a) {
  const __m128 r = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));  // r_l = a_l + a_{l+4}
  const __m128 s = _mm_add_ps(r, _mm_movehl_ps(r, r));                                  // s0 = r0+r2, s1 = r1+r3
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));                              // s0 + s1
}

template <QuantType T>
DSMOE_ATTEND_AVX2 void attend_avx2(const uint8_t* k, const uint8_t* v, int64_t total, const float* q, int64_t hd,
                                   float scale, float* scores, float* out) {
  constexpr size_t kValueBytes = T == QuantType::F32 ? 4 : 2;
  const size_t row_bytes = static_cast<size_t>(hd) * kValueBytes;
  const int64_t hd8 = hd - hd % 8;
  // Scores, four positions at a time: four independent FMA chains keep the core busy.
  int64_t p = 0;
  for (; p + 4 <= total; p += 4) {
    const uint8_t* k0 = k + p * row_bytes;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t c = 0; c < hd8; c += 8) {
      const __m256 qc = _mm256_loadu_ps(q + c);
      a0 = _mm256_fmadd_ps(load8(T, k0, c), qc, a0);
      a1 = _mm256_fmadd_ps(load8(T, k0 + row_bytes, c), qc, a1);
      a2 = _mm256_fmadd_ps(load8(T, k0 + 2 * row_bytes, c), qc, a2);
      a3 = _mm256_fmadd_ps(load8(T, k0 + 3 * row_bytes, c), qc, a3);
    }
    scores[p] = score_tail(T, k0, q, hd, hsum8_avx(a0)) * scale;
    scores[p + 1] = score_tail(T, k0 + row_bytes, q, hd, hsum8_avx(a1)) * scale;
    scores[p + 2] = score_tail(T, k0 + 2 * row_bytes, q, hd, hsum8_avx(a2)) * scale;
    scores[p + 3] = score_tail(T, k0 + 3 * row_bytes, q, hd, hsum8_avx(a3)) * scale;
  }
  for (; p < total; ++p) {
    const uint8_t* kr = k + p * row_bytes;
    __m256 a = _mm256_setzero_ps();
    for (int64_t c = 0; c < hd8; c += 8) a = _mm256_fmadd_ps(load8(T, kr, c), _mm256_loadu_ps(q + c), a);
    scores[p] = score_tail(T, kr, q, hd, hsum8_avx(a)) * scale;
  }
  softmax_weights(scores, total);
  // out, up to 64 values at a time held in registers over all positions.
  for (int64_t j0 = 0; j0 < hd8; j0 += 64) {
    const int64_t chunks = std::min<int64_t>(8, (hd8 - j0) / 8);
    __m256 acc[8];
    for (int64_t c = 0; c < 8; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t pp = 0; pp < total; ++pp) {
      const uint8_t* vr = v + pp * row_bytes;
      const __m256 w = _mm256_set1_ps(scores[pp]);
      for (int64_t c = 0; c < chunks; ++c) acc[c] = _mm256_fmadd_ps(w, load8(T, vr, j0 + 8 * c), acc[c]);
    }
    for (int64_t c = 0; c < chunks; ++c) _mm256_storeu_ps(out + j0 + 8 * c, acc[c]);
  }
  for (int64_t j = hd8; j < hd; ++j) {
    float o = 0.0f;
    for (int64_t pp = 0; pp < total; ++pp) o = std::fmaf(scores[pp], load_value(T, v + pp * row_bytes, j), o);
    out[j] = o;
  }
}
}  // namespace
#endif

void attend_decode_avx2(QuantType type, const uint8_t* k, const uint8_t* v, int64_t total, const float* q, int64_t hd,
                        float scale, float* scores, float* out) {
#if defined(DSMOE_ATTEND_X86)
  if (quant_have_avx2()) {
    check_args(type, hd);
    switch (type) {
      case QuantType::F32: return attend_avx2<QuantType::F32>(k, v, total, q, hd, scale, scores, out);
      case QuantType::F16: return attend_avx2<QuantType::F16>(k, v, total, q, hd, scale, scores, out);
      default: return attend_avx2<QuantType::BF16>(k, v, total, q, hd, scale, scores, out);
    }
  }
#endif
  attend_decode_scalar(type, k, v, total, q, hd, scale, scores, out);
}

void attend_decode(QuantType type, const uint8_t* k, const uint8_t* v, int64_t total, const float* q, int64_t hd,
                   float scale, float* scores, float* out) {
  if (quant_have_avx2())
    attend_decode_avx2(type, k, v, total, q, hd, scale, scores, out);
  else
    attend_decode_scalar(type, k, v, total, q, hd, scale, scores, out);
}

}  // namespace dsmoe
