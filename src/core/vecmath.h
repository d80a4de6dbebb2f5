// Vectorisable float math for the hot element-wise loops (softmax, SiLU, cross-entropy).
//
// Why not std::exp: libm's scalar exp is called once per element and blocks vectorisation; in a training step the
// attention softmax, SiLU and the vocabulary softmax make hundreds of millions of calls. exp_fast is branch-free
// float code that GCC/Clang turn into AVX2/AVX-512 vectors. Accuracy: within 2 ulp of expf over [-87, 88]
// (tests/test_vecmath checks it) over [-87.3, 88.3]; below -87.3 it returns 0, above 88.3 it returns exp(88.3)
// (finite; softmax and SiLU only ever need it saturated there).
#pragma once
#include <algorithm>
#include <bit>
#include <cstdint>

namespace dsmoe {

inline float exp_fast(float x) {
  // exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n ln2 in [-ln2/2, ln2/2]; exp(r) by a degree-6 minimax
  // polynomial (Cephes expf coefficients); 2^n assembled in the exponent bits.
  const float clamped = std::min(std::max(x, -87.3f), 88.3f);
  const float n = __builtin_floorf(clamped * 1.44269504088896341f + 0.5f);
  const float r = (clamped - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  const float result = p * std::bit_cast<float>(bits);
  return x < -87.3f ? 0.0f : result;
}

// x[i] = exp(x[i] - shift); returns sum of the results.
inline float exp_shift_sum(float* x, int64_t n, float shift) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    x[i] = exp_fast(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

// sum of exp(x[i] - shift), x unchanged.
inline float exp_shift_sum_const(const float* x, int64_t n, float shift) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += exp_fast(x[i] - shift);
  return sum;
}

inline float max_of(const float* x, int64_t n) {
  float m = x[0];
#pragma omp simd reduction(max : m)
  for (int64_t i = 1; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// The fixed 8-lane reduction order of ggml's hsum_float_8: ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). Every kernel
// whose SIMD path must equal its scalar reference bit for bit reduces its 8 lanes this way.
inline float hsum8(const float* a) {
  const float r0 = a[0] + a[4], r1 = a[1] + a[5], r2 = a[2] + a[6], r3 = a[3] + a[7];
  return (r0 + r2) + (r1 + r3);
}

inline float dot_of(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline void scale_in_place(float* x, int64_t n, float s) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace dsmoe
