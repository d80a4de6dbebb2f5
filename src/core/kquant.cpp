// Why one file of ~820 lines: every quantizer here must be compiled with -ffp-contract=off (CMakeLists.txt) to stay
// byte-identical to ggml, and they share the search helpers; one file keeps that build rule on exactly this code.
//
// The block quantizations beyond Q8_0/Q4_0: Q4_1, Q5_0, Q5_1, IQ4_NL (32-weight blocks) and the K-quants Q2_K,
// Q3_K, Q4_K, Q5_K, Q6_K (256-weight super-blocks of 16 or 32-weight sub-blocks), byte-identical to what ggml writes.
//
// Which ggml routine each type matches: the one llama-quantize runs without an importance matrix, i.e.
// quantize_row_<type>_ref for every type but IQ4_NL, whose file path is quantize_iq4_nl (the non-linear search with
// ntry = 7 and weights x^2; quantize_row_iq4_nl_ref searches nothing and leaves the codes of all-zero blocks as
// whatever its stack held).
//
// How byte identity is kept (checked against ggml by tests/test_kquant.cpp):
//  - The arithmetic is ggml-quants.c's, operation for operation: the same float expressions evaluated in the same
//    order (w * x * l is (w * x) * l), integers converted to float where ggml converts them, the same strict
//    comparisons in the searches, the same integer narrowing (uint8_t/int8_t casts wrap).
//  - No fused multiply-add: ggml-base is compiled without FMA (plain x86-64), so every product is rounded before it is
//    added. This file is built with -ffp-contract=off (CMakeLists.txt); -march=native would otherwise fuse them.
//  - nearest_int is ggml's float trick (round half to even by adding 1.5 * 2^23), not lrintf; both agree for
//    |v| < 2^22 and ggml's version also defines what happens beyond.
//  - Float -> small-integer casts of the 32-weight quantizers follow x86's cvttss2si, as ggml's compiled code does
//    for NaN or out-of-range values (e.g. a row of subnormals, whose 1/d overflows to inf).
//  - fp16 scales round to nearest even (quant.h's F16 conversion, the same as ggml's).
//
// Dimension legend: n = weights in a row; a block holds 32 weights (kQK_K = 256 for the K-quants), a K-quant
// super-block has 16 sub-blocks of 16 weights (Q2_K, Q3_K, Q6_K) or 8 sub-blocks of 32 (Q4_K, Q5_K).
#include "core/kquant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace dsmoe {

namespace {

constexpr int kQK = 32;                 // weights per block of Q4_1, Q5_0, Q5_1, IQ4_NL
constexpr int kSuper = 256;             // kQK_K: weights per K-quant super-block
constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: a group whose largest |x| is below counts as zero

// ---- small helpers ----

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// fp16 through quant.h's F16 row conversion (round to nearest even; exact back to f32).
inline void store_half(uint8_t* p, float v) { quantize_row(QuantType::F16, &v, p, 1); }
inline float load_half(const uint8_t* p) {
  float v;
  dequantize_row(QuantType::F16, p, &v, 1);
  return v;
}

// ggml's nearest_int: adding 1.5 * 2^23 puts round-half-even(v) + 2^22 into the low 23 mantissa bits.
inline int nearest_int(float v) {
  const float shifted = v + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

inline int clamp_int(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// C's (int)f as x86 computes it (cvttss2si): truncation, and INT32_MIN for NaN or values outside int32. ggml's
// (int8_t)(x + 0.5f) style casts narrow that result, so NaN/inf codes become 0 there.
inline int32_t truncate_like_x86(float f) {
  if (!(std::fabs(f) < 2147483648.0f)) return INT32_MIN;
  return static_cast<int32_t>(f);
}

// ggml's `uint8_t q = MIN(max, (int8_t)v)` of the 32-weight quantizers (v already offset by 0.5 to round).
inline uint8_t int8_code(float v, int max) {
  return static_cast<uint8_t>(std::min(max, static_cast<int>(static_cast<int8_t>(truncate_like_x86(v)))));
}

// ---- scale searches (ggml's make_*_quants, only the variants the file quantizers use) ----

// The value of largest magnitude, the first one on ties (its sign sets the scale's sign); 0 for an empty group.
float largest_magnitude(const float* x, int n) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  return max;
}

// make_qx_quants with rmse_type 1 and no importance weights (Q6_K's 16-weight groups). Codes l in [-nmax, nmax-1]
// (stored as l + nmax), weights w = x^2. Starting from the scale that maps the largest-magnitude x to -nmax, tries
// the inverse scales -(nmax + 0.1 k)/max for k = -9..9 and keeps the codes whose weighted least-squares fit
// (sum w x l)^2 / (sum w l^2) is largest. Returns the fitted scale (x ~ scale * l).
float fit_symmetric_codes(int n, int nmax, const float* x, int8_t* codes) {
  const float max = largest_magnitude(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    std::fill(codes, codes + n, int8_t{0});
    return 0.0f;
  }
  auto code = [&](float iscale, int i) { return clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1); };
  auto fit = [&](float iscale, float& sumlx, float& suml2) {
    sumlx = 0;
    suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const float l = static_cast<float>(code(iscale, i));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
  };
  auto store = [&](float iscale) {
    for (int i = 0; i < n; ++i) codes[i] = static_cast<int8_t>(nmax + code(iscale, i));
  };

  float iscale = static_cast<float>(-nmax) / max;
  float sumlx, suml2;
  fit(iscale, sumlx, suml2);
  store(iscale);
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    fit(iscale, sumlx, suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      store(iscale);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// make_q3_quants with do_rmse (Q3_K's 16-weight groups): codes l in [-nmax, nmax-1] (stored as l + nmax) from the
// scale mapping the largest-magnitude x to -nmax, then up to 5 passes of coordinate descent: each code moves to the
// value that is optimal given the others, when that improves the weighted (w = x^2) least-squares fit.
float fit_q3_codes(int n, int nmax, const float* x, int8_t* codes) {
  const float max = largest_magnitude(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    std::fill(codes, codes + n, int8_t{0});
    return 0.0f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    codes[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const float li = static_cast<float>(codes[i]);
      float slx = sumlx - w * x[i] * li;  // the sums without weight i
      if (slx > 0) {
        float sl2 = suml2 - w * li * li;
        const int new_l = clamp_int(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l != codes[i]) {
          const float nl = static_cast<float>(new_l);
          slx += w * x[i] * nl;
          sl2 += w * nl * nl;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            codes[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (changed == 0) break;
  }
  for (int i = 0; i < n; ++i) codes[i] = static_cast<int8_t>(codes[i] + nmax);
  return sumlx / suml2;
}

// make_qkx2_quants (Q2_K, Q4_K, Q5_K groups): affine codes l in [0, nmax] with x ~ scale * l - the_min (the_min >= 0,
// i.e. the offset is never positive). Starts from the min/max range, then tries the inverse scales
// (rmin + rdelta * k + nmax) / (max - min) for k = 0..nstep; for each it solves the weighted least-squares scale and
// offset for those codes and keeps them when the weighted error (|diff| with use_mad, else diff^2) is smaller.
float fit_affine_codes(int n, int nmax, const float* x, const float* weights, uint8_t* codes, float* the_min,
                       float rmin, float rdelta, int nstep, bool use_mad) {
  uint8_t trial[32];  // n <= 32
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(codes, codes + n, uint8_t{0});
    *the_min = -min;
    return 0.0f;
  }
  auto error_of = [&](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    codes[i] = static_cast<uint8_t>(clamp_int(l, 0, nmax));
    const float diff = scale * static_cast<float>(codes[i]) + min - x[i];
    best_error += weights[i] * error_of(diff);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      const float w = weights[i], fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
      if (this_min > 0) {  // an offset above zero is not representable: refit the scale alone
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * static_cast<float>(trial[i]) + this_min - x[i];
        error += weights[i] * error_of(diff);
      }
      if (error < best_error) {
        std::copy(trial, trial + n, codes);
        best_error = error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Packs four 2-bit code planes: byte l of each 32-byte group holds codes l, l+32, l+64, l+96 of its 128 weights
// (bits 0-1, 2-3, 4-5, 6-7). Q2_K and Q3_K's low bits.
template <typename Code>
void pack_2bit_planes(const Code* codes, uint8_t* qs) {
  for (int j = 0; j < kSuper; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(codes[j + l] | (codes[j + l + 32] << 2) | (codes[j + l + 64] << 4) |
                                           (codes[j + l + 96] << 6));
}

// ---- the 32-weight block types ----

// Q4_1: d, m (fp16), qs[16]; x ~ q * d + m with q = 4 bits (weight j low nibble, j+16 high nibble).
void quantize_block_q4_1(const float* x, uint8_t* b) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < kQK; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 15;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  store_half(b, d);
  store_half(b + 2, min);
  for (int j = 0; j < 16; ++j) {
    const uint8_t q0 = int8_code((x[j] - min) * id + 0.5f, 15), q1 = int8_code((x[j + 16] - min) * id + 0.5f, 15);
    b[4 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

// The fifth bits of Q5_0/Q5_1: bit j of the 32-bit qh is weight j's.
inline void store_q5_codes(const uint8_t* q, uint8_t* qh_bytes, uint8_t* qs) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
    qh |= ((q[j] & 0x10u) >> 4) << j;
    qh |= ((q[j + 16] & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

// Q5_0: d (fp16), qh[4], qs[16]; x ~ (q - 16) * d, d = max / -16 (max = the value of largest magnitude).
void quantize_block_q5_0(const float* x, uint8_t* b) {
  const float d = largest_magnitude(x, kQK) / -16;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  store_half(b, d);
  uint8_t q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = int8_code(x[j] * id + 16.5f, 31);
  store_q5_codes(q, b + 2, b + 6);
}

// Q5_1: d, m (fp16), qh[4], qs[16]; x ~ q * d + m with 5-bit q.
void quantize_block_q5_1(const float* x, uint8_t* b) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < kQK; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 31;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  store_half(b, d);
  store_half(b + 2, min);
  uint8_t q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(truncate_like_x86((x[j] - min) * id + 0.5f));
  store_q5_codes(q, b + 4, b + 8);
}

// IQ4_NL's 16 non-linear levels (x ~ d * level), denser near zero.
constexpr int8_t kIq4nlLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// The level nearest to v (ties to the upper one), by ggml's bisection.
inline int nearest_iq4nl_level(float v) {
  const int8_t* levels = kIq4nlLevels;
  if (v <= levels[0]) return 0;
  if (v >= levels[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (v < levels[mid])
      hi = mid;
    else
      lo = mid;
  }
  return v - levels[hi - 1] < levels[hi] - v ? hi - 1 : hi;
}

// IQ4_NL: d (fp16), qs[16] (4-bit level indices, weight j low nibble, j+16 high). ggml's quantize_iq4_nl without an
// importance matrix: weights w = x^2; start at d = max / 127 (max = value of largest magnitude), fit d by weighted
// least squares for the nearest levels, try the inverse scales (k - 127) / max for k = -7..7 and keep the best fit;
// then every weight takes the level nearest to x / d. An all-zero block gets d = 0 and level 8 (+1) everywhere.
void quantize_block_iq4_nl(const float* x, uint8_t* b) {
  constexpr int kTries = 7;
  const float max = largest_magnitude(x, kQK);
  float d = 0;
  if (std::fabs(max) >= kGroupMaxEps) {
    auto fit = [&](float id, float& sumqx, float& sumq2) {
      sumqx = 0;
      sumq2 = 0;
      for (int j = 0; j < kQK; ++j) {
        const float q = kIq4nlLevels[nearest_iq4nl_level(id * x[j])];
        const float w = x[j] * x[j];
        sumqx += w * q * x[j];
        sumq2 += w * q * q;
      }
    };
    float sumqx, sumq2;
    fit(1 / (-max / static_cast<float>(kIq4nlLevels[0])), sumqx, sumq2);
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int t = -kTries; t <= kTries; ++t) {
      fit(static_cast<float>(t + kIq4nlLevels[0]) / max, sumqx, sumq2);
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
  }
  store_half(b, d);
  const float id = d != 0 ? 1 / d : 0.0f;
  for (int j = 0; j < 16; ++j)
    b[2 + j] = static_cast<uint8_t>(nearest_iq4nl_level(id * x[j]) | (nearest_iq4nl_level(id * x[j + 16]) << 4));
}

void dequantize_block_q4_1(const uint8_t* b, float* y) {
  const float d = load_half(b), m = load_half(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(b[4 + j] & 0x0f) * d + m;
    y[j + 16] = static_cast<float>(b[4 + j] >> 4) * d + m;
  }
}

// Code j of a Q5_0/Q5_1 block (0..31).
inline int q5_code(const uint8_t* qh_bytes, const uint8_t* qs, int j) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  const int low = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
  return low | static_cast<int>(((qh >> j) & 1u) << 4);
}

void dequantize_block_q5_0(const uint8_t* b, float* y) {
  const float d = load_half(b);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q5_code(b + 2, b + 6, j) - 16) * d;
}

void dequantize_block_q5_1(const uint8_t* b, float* y) {
  const float d = load_half(b), m = load_half(b + 2);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q5_code(b + 4, b + 8, j)) * d + m;
}

void dequantize_block_iq4_nl(const uint8_t* b, float* y) {
  const float d = load_half(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kIq4nlLevels[b[2 + j] & 0x0f]);
    y[j + 16] = d * static_cast<float>(kIq4nlLevels[b[2 + j] >> 4]);
  }
}

// ---- K-quants ----

// Q2_K super-block: scales[16] (low nibble: sub-block scale, high nibble: sub-block min, both 4-bit multiples of
// d / dmin), qs[64] (2-bit codes, pack_2bit_planes), d, dmin (fp16). x ~ d * sc * q - dmin * m.
constexpr int kQ2Scales = 0, kQ2Qs = 16, kQ2D = 80, kQ2Dmin = 82;

void quantize_block_q2_k(const float* x, uint8_t* b) {
  uint8_t codes[kSuper];
  float mins[16], scales[16], weights[16];
  float max_scale = 0, max_min = 0;  // scales are positive: the min is taken out
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = fit_affine_codes(16, 3, x + 16 * j, weights, codes + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  uint8_t* sc = b + kQ2Scales;
  constexpr float kLevels = 15.f;
  if (max_scale > 0) {
    const float iscale = kLevels / max_scale;
    for (int j = 0; j < 16; ++j) sc[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
    store_half(b + kQ2D, max_scale / kLevels);
  } else {
    std::fill(sc, sc + 16, uint8_t{0});
    store_half(b + kQ2D, 0.0f);
  }
  if (max_min > 0) {
    const float iscale = kLevels / max_min;
    for (int j = 0; j < 16; ++j) sc[j] = static_cast<uint8_t>(sc[j] | (nearest_int(iscale * mins[j]) << 4));
    store_half(b + kQ2Dmin, max_min / kLevels);
  } else {
    store_half(b + kQ2Dmin, 0.0f);
  }
  // Requantize against the scales as stored (fp16 d/dmin times the 4-bit multiples).
  for (int j = 0; j < 16; ++j) {
    const float d = load_half(b + kQ2D) * static_cast<float>(sc[j] & 0xf);
    if (d == 0) continue;
    const float dm = load_half(b + kQ2Dmin) * static_cast<float>(sc[j] >> 4);
    for (int i = 0; i < 16; ++i)
      codes[16 * j + i] = static_cast<uint8_t>(clamp_int(nearest_int((x[16 * j + i] + dm) / d), 0, 3));
  }
  pack_2bit_planes(codes, b + kQ2Qs);
}

void dequantize_block_q2_k(const uint8_t* b, float* y) {
  const float d = load_half(b + kQ2D), dmin = load_half(b + kQ2Dmin);
  const uint8_t* q = b + kQ2Qs;
  int is = 0;
  for (int half = 0; half < 2; ++half, q += 32)
    for (int shift = 0; shift < 8; shift += 2)
      for (int part = 0; part < 2; ++part) {  // weights l and l + 16 of the 32-byte group
        const uint8_t s = b[kQ2Scales + is++];
        const float dl = d * static_cast<float>(s & 0xf), ml = dmin * static_cast<float>(s >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * part] >> shift) & 3) - ml;
      }
}

// Q3_K super-block: hmask[32] (the third bit: bit k of byte m is weight 32k + m's), qs[64] (low 2 bits,
// pack_2bit_planes), scales[12] (16 signed 6-bit sub-block scales, stored + 32: low nibbles of 0-7 in bytes 0-7,
// of 8-15 in the high nibbles of bytes 0-7, the top 2 bits of sub-block j in byte 8 + j%4 at bit 2*(j/4)), d (fp16).
// x ~ d * (sc - 32) * (q - 4).
constexpr int kQ3Hmask = 0, kQ3Qs = 32, kQ3Scales = 96, kQ3D = 108;

inline int q3_scale(const uint8_t* s, int j) {
  const int low = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
  return (low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

void quantize_block_q3_k(const float* x, uint8_t* b) {
  int8_t codes[kSuper];
  float scales[16];
  for (int j = 0; j < 16; ++j) scales[j] = fit_q3_codes(16, 4, x + 16 * j, codes + 16 * j);
  const float max_scale = largest_magnitude(scales, 16);
  uint8_t* s = b + kQ3Scales;
  std::fill(s, s + 12, uint8_t{0});
  if (max_scale != 0) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; ++j) {
      const int8_t narrow = static_cast<int8_t>(nearest_int(iscale * scales[j]));
      const int l = clamp_int(narrow, -32, 31) + 32;
      if (j < 8)
        s[j] = static_cast<uint8_t>(l & 0xf);
      else
        s[j - 8] = static_cast<uint8_t>(s[j - 8] | ((l & 0xf) << 4));
      s[8 + j % 4] = static_cast<uint8_t>(s[8 + j % 4] | ((l >> 4) << (2 * (j / 4))));
    }
    store_half(b + kQ3D, 1 / iscale);
  } else {
    store_half(b + kQ3D, 0.0f);
  }
  for (int j = 0; j < 16; ++j) {
    const float d = load_half(b + kQ3D) * static_cast<float>(static_cast<int8_t>(q3_scale(s, j)));
    if (d == 0) continue;
    for (int i = 0; i < 16; ++i)
      codes[16 * j + i] = static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + i] / d), -4, 3) + 4);
  }
  uint8_t* hmask = b + kQ3Hmask;
  std::fill(hmask, hmask + 32, uint8_t{0});
  for (int j = 0; j < kSuper; ++j) {
    if (codes[j] > 3) {
      hmask[j % 32] = static_cast<uint8_t>(hmask[j % 32] | (1 << (j / 32)));
      codes[j] = static_cast<int8_t>(codes[j] - 4);
    }
  }
  pack_2bit_planes(codes, b + kQ3Qs);
}

void dequantize_block_q3_k(const uint8_t* b, float* y) {
  const float d_all = load_half(b + kQ3D);
  const uint8_t* q = b + kQ3Qs;
  const uint8_t* hm = b + kQ3Hmask;
  int is = 0;
  uint8_t bit = 1;
  for (int half = 0; half < 2; ++half, q += 32)
    for (int shift = 0; shift < 8; shift += 2, bit = static_cast<uint8_t>(bit << 1))
      for (int part = 0; part < 2; ++part) {
        const float dl = d_all * static_cast<float>(q3_scale(b + kQ3Scales, is++));
        for (int l = 16 * part; l < 16 * part + 16; ++l)
          *y++ = dl * static_cast<float>(((q[l] >> shift) & 3) - ((hm[l] & bit) ? 0 : 4));
      }
}

// Q4_K/Q5_K super-block: d, dmin (fp16), scales[12] (8 sub-block scales and mins, 6 bits each: sub-blocks 0-3 in
// the low 6 bits of bytes 0-3 (scale) and 4-7 (min); 4-7 in the nibbles of bytes 8-11 with their top 2 bits in the
// top bits of bytes 0-3 (scale) and 4-7 (min)), then the codes. x ~ d * sc * q - dmin * m.
constexpr int kQ4KScales = 4, kQ4KQs = 16;               // Q4_K: qs[128], 4-bit codes
constexpr int kQ5KScales = 4, kQ5KQh = 16, kQ5KQs = 48;  // Q5_K: qh[32] (fifth bits), qs[128]

void store_scale_min_6bit(uint8_t* s, int j, uint8_t ls, uint8_t lm) {
  if (j < 4) {
    s[j] = ls;
    s[j + 4] = lm;
  } else {
    s[j + 4] = static_cast<uint8_t>((ls & 0xf) | ((lm & 0xf) << 4));
    s[j - 4] = static_cast<uint8_t>(s[j - 4] | ((ls >> 4) << 6));
    s[j] = static_cast<uint8_t>(s[j] | ((lm >> 4) << 6));
  }
}
inline void load_scale_min_6bit(const uint8_t* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// The shared part of Q4_K and Q5_K: per 32-weight sub-block an affine fit with weights av_x + |x|
// (av_x = the sub-block's RMS), 6-bit scales/mins relative to the largest, then codes against the stored scales.
void quantize_scales_mins_k(const float* x, uint8_t* b, int nmax, float rmin, int nstep, uint8_t* codes) {
  float mins[8], scales[8], weights[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_affine_codes(32, nmax, xs, weights, codes + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t* s = b + kQ4KScales;
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    store_scale_min_6bit(s, j, ls, lm);
  }
  store_half(b, max_scale / 63.f);
  store_half(b + 2, max_min / 63.f);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    load_scale_min_6bit(s, j, sc, m);
    const float d = load_half(b) * static_cast<float>(sc);
    if (d == 0) continue;
    const float dm = load_half(b + 2) * static_cast<float>(m);
    for (int i = 0; i < 32; ++i)
      codes[32 * j + i] = static_cast<uint8_t>(clamp_int(nearest_int((x[32 * j + i] + dm) / d), 0, nmax));
  }
}

// Q4_K codes: byte l of each 32-byte group holds codes l (low nibble) and l + 32 (high) of its 64 weights.
void quantize_block_q4_k(const float* x, uint8_t* b) {
  uint8_t codes[kSuper];
  quantize_scales_mins_k(x, b, 15, -1.f, 20, codes);
  uint8_t* q = b + kQ4KQs;
  for (int j = 0; j < kSuper; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(codes[j + l] | (codes[j + l + 32] << 4));
}

// Q5_K codes: low 4 bits as Q4_K; the fifth bit of code l (and l + 32) of 64-weight group g in qh[l], bit 2g (2g+1).
void quantize_block_q5_k(const float* x, uint8_t* b) {
  uint8_t codes[kSuper];
  quantize_scales_mins_k(x, b, 31, -0.5f, 15, codes);
  uint8_t* qh = b + kQ5KQh;
  uint8_t* ql = b + kQ5KQs;
  std::fill(qh, qh + 32, uint8_t{0});
  uint8_t bit1 = 1, bit2 = 2;
  for (int g = 0; g < kSuper; g += 64, ql += 32) {
    for (int l = 0; l < 32; ++l) {
      int l1 = codes[g + l], l2 = codes[g + l + 32];
      if (l1 > 15) {
        l1 -= 16;
        qh[l] = static_cast<uint8_t>(qh[l] | bit1);
      }
      if (l2 > 15) {
        l2 -= 16;
        qh[l] = static_cast<uint8_t>(qh[l] | bit2);
      }
      ql[l] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    bit1 = static_cast<uint8_t>(bit1 << 2);
    bit2 = static_cast<uint8_t>(bit2 << 2);
  }
}

void dequantize_block_q4_k(const uint8_t* b, float* y) {
  const float d = load_half(b), dmin = load_half(b + 2);
  const uint8_t* q = b + kQ4KQs;
  for (int j = 0; j < 8; j += 2, q += 32) {
    int sc, m;
    load_scale_min_6bit(b + kQ4KScales, j, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    load_scale_min_6bit(b + kQ4KScales, j + 1, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xf) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

void dequantize_block_q5_k(const uint8_t* b, float* y) {
  const float d = load_half(b), dmin = load_half(b + 2);
  const uint8_t* ql = b + kQ5KQs;
  const uint8_t* qh = b + kQ5KQh;
  uint8_t bit1 = 1, bit2 = 2;
  for (int j = 0; j < 8; j += 2, ql += 32) {
    int sc, m;
    load_scale_min_6bit(b + kQ5KScales, j, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    load_scale_min_6bit(b + kQ5KScales, j + 1, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xf) + ((qh[l] & bit1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & bit2) ? 16 : 0)) - m2;
    bit1 = static_cast<uint8_t>(bit1 << 2);
    bit2 = static_cast<uint8_t>(bit2 << 2);
  }
}

// Q6_K super-block: ql[128] (low 4 bits), qh[64] (top 2 bits), scales[16] (int8 sub-block scales), d (fp16);
// x ~ d * sc * (q - 32). Per 128 weights (64 ql bytes, 32 qh bytes): ql byte l holds codes l (low) and l + 64
// (high), ql byte l + 32 codes l + 32 and l + 96; qh byte l the top bits of codes l, l+32, l+64, l+96 (2 bits each).
constexpr int kQ6Ql = 0, kQ6Qh = 128, kQ6Scales = 192, kQ6D = 208, kQ6Bytes = 210;

void quantize_block_q6_k(const float* x, uint8_t* b) {
  int8_t codes[kSuper];
  float scales[16];
  for (int j = 0; j < 16; ++j) scales[j] = fit_symmetric_codes(16, 32, x + 16 * j, codes + 16 * j);
  const float max_scale = largest_magnitude(scales, 16);
  if (std::fabs(max_scale) < kGroupMaxEps) {  // all zero: an all-zero block
    std::fill(b, b + kQ6Bytes, uint8_t{0});
    return;
  }
  const float iscale = -128.f / max_scale;
  store_half(b + kQ6D, 1 / iscale);
  auto* sc = reinterpret_cast<int8_t*>(b + kQ6Scales);
  for (int j = 0; j < 16; ++j) sc[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
  for (int j = 0; j < 16; ++j) {
    const float d = load_half(b + kQ6D) * static_cast<float>(sc[j]);
    if (d == 0) continue;
    for (int i = 0; i < 16; ++i)
      codes[16 * j + i] = static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + i] / d), -32, 31) + 32);
  }
  uint8_t* ql = b + kQ6Ql;
  uint8_t* qh = b + kQ6Qh;
  for (int j = 0; j < kSuper; j += 128, ql += 64, qh += 32)
    for (int l = 0; l < 32; ++l) {
      const int c0 = codes[j + l], c1 = codes[j + l + 32], c2 = codes[j + l + 64], c3 = codes[j + l + 96];
      ql[l] = static_cast<uint8_t>((c0 & 0xf) | ((c2 & 0xf) << 4));
      ql[l + 32] = static_cast<uint8_t>((c1 & 0xf) | ((c3 & 0xf) << 4));
      qh[l] = static_cast<uint8_t>((c0 >> 4) | ((c1 >> 4) << 2) | ((c2 >> 4) << 4) | ((c3 >> 4) << 6));
    }
}

void dequantize_block_q6_k(const uint8_t* b, float* y) {
  const float d = load_half(b + kQ6D);
  const uint8_t* ql = b + kQ6Ql;
  const uint8_t* qh = b + kQ6Qh;
  const auto* sc = reinterpret_cast<const int8_t*>(b + kQ6Scales);
  for (int n = 0; n < kSuper; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q0 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q1 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q0);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q1);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q2);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q3);
    }
}

// ---- dispatch ----

struct KQuantKernels {
  QuantType type;
  void (*quantize_block)(const float* x, uint8_t* block);
  void (*dequantize_block)(const uint8_t* block, float* y);
};
constexpr KQuantKernels kKernels[] = {
    {QuantType::Q4_1, quantize_block_q4_1, dequantize_block_q4_1},
    {QuantType::Q5_0, quantize_block_q5_0, dequantize_block_q5_0},
    {QuantType::Q5_1, quantize_block_q5_1, dequantize_block_q5_1},
    {QuantType::IQ4_NL, quantize_block_iq4_nl, dequantize_block_iq4_nl},
    {QuantType::Q2_K, quantize_block_q2_k, dequantize_block_q2_k},
    {QuantType::Q3_K, quantize_block_q3_k, dequantize_block_q3_k},
    {QuantType::Q4_K, quantize_block_q4_k, dequantize_block_q4_k},
    {QuantType::Q5_K, quantize_block_q5_k, dequantize_block_q5_k},
    {QuantType::Q6_K, quantize_block_q6_k, dequantize_block_q6_k},
};
const KQuantKernels& kernels_of(QuantType t, const char* what) {
  for (const KQuantKernels& k : kKernels)
    if (k.type == t) return k;
  fail("{}: {} is not a K-quant/extra block type (kquant.cpp handles Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K..Q6_K)", what,
       quant_type_name(t));
}

// The fp16 scale fields of each block type, for validation: offsets in the block and their ggml names.
struct ScaleFields {
  QuantType type;
  int offsets[2];  // -1: none
  const char* names[2];
};
constexpr ScaleFields kScaleFields[] = {
    {QuantType::Q8_0, {0, -1}, {"d", ""}},
    {QuantType::Q4_0, {0, -1}, {"d", ""}},
    {QuantType::Q4_1, {0, 2}, {"d", "m"}},
    {QuantType::Q5_0, {0, -1}, {"d", ""}},
    {QuantType::Q5_1, {0, 2}, {"d", "m"}},
    {QuantType::IQ4_NL, {0, -1}, {"d", ""}},
    {QuantType::Q2_K, {kQ2D, kQ2Dmin}, {"d", "dmin"}},
    {QuantType::Q3_K, {kQ3D, -1}, {"d", ""}},
    {QuantType::Q4_K, {0, 2}, {"d", "dmin"}},
    {QuantType::Q5_K, {0, 2}, {"d", "dmin"}},
    {QuantType::Q6_K, {kQ6D, -1}, {"d", ""}},
};

// "NaN" / "inf" for a non-finite fp16, nullptr for a finite one.
const char* half_problem(uint16_t h) {
  if ((h & 0x7c00u) != 0x7c00u) return nullptr;
  return (h & 0x03ffu) != 0 ? "NaN" : "inf";
}

}  // namespace

void kquant_quantize_row(QuantType t, const float* x, uint8_t* dst, int64_t n) {
  const KQuantKernels& k = kernels_of(t, "quantize");
  const size_t bytes = quant_row_bytes(t, n);  // checks n is a multiple of the block size
  const int64_t bs = quant_block_size(t);
  const size_t bb = quant_block_bytes(t);
  for (size_t off = 0; off < bytes; off += bb, x += bs) k.quantize_block(x, dst + off);
}

void kquant_dequantize_row(QuantType t, const uint8_t* src, float* y, int64_t n) {
  const KQuantKernels& k = kernels_of(t, "dequantize");
  const size_t bytes = quant_row_bytes(t, n);
  const int64_t bs = quant_block_size(t);
  const size_t bb = quant_block_bytes(t);
  for (size_t off = 0; off < bytes; off += bb, y += bs) k.dequantize_block(src + off, y);
}

bool quant_validate_row(QuantType t, const uint8_t* data, int64_t n, std::string* why) {
  const size_t bytes = quant_row_bytes(t, n);
  auto report = [&](std::string message) {
    if (why != nullptr) *why = std::move(message);
    return false;
  };
  if (!quant_is_block(t)) {  // F32/F16/BF16: every value, as ggml_validate_row_data does
    for (int64_t i = 0; i < n; ++i) {
      float v;
      if (t == QuantType::F32)
        std::memcpy(&v, data + 4 * i, 4);
      else
        dequantize_row(t, data + 2 * i, &v, 1);
      if (!std::isfinite(v))
        return report(fmt::format("{} value {} is {}", quant_type_name(t), i, std::isnan(v) ? "NaN" : "inf"));
    }
    return true;
  }
  const ScaleFields* fields = nullptr;
  for (const ScaleFields& f : kScaleFields)
    if (f.type == t) fields = &f;
  if (fields == nullptr) fail("validate: no scale layout for {}", quant_type_name(t));
  const size_t bb = quant_block_bytes(t);
  for (size_t b = 0; b * bb < bytes; ++b)
    for (int f = 0; f < 2; ++f) {
      if (fields->offsets[f] < 0) continue;
      if (const char* problem = half_problem(load_u16(data + b * bb + fields->offsets[f])))
        return report(fmt::format("{} block {}: scale {} is {}", quant_type_name(t), b, fields->names[f], problem));
    }
  return true;
}

}  // namespace dsmoe
