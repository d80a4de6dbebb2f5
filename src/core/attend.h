// Decode attention for one query row of one head: out = softmax(scale * K q) V over the `total` cached positions.
//
// Dimension legend: T = cached positions (total), hd = head dimension.
// K and V are the cache's rows for one head: T rows of hd values each, contiguous, in `type` (F32, F16 or BF16).
//
// Order (every path): score p = hsum8(lanes) * scale where lane l accumulates fmaf(k[p][8c + l], q[8c + l]) over the
// chunks c = 0 .. hd/8 - 1 in order, the last hd % 8 values fmaf-ed on after the lanes' sum; softmax with max_of /
// exp_shift_sum (core/vecmath.h); then for p in order out[j] = fmaf(weight_p, v[p][j], out[j]) with weight_p = e_p * (1
// / sum). So the scalar reference and the AVX2 path give identical bits, and a row attends the same alone as in a
// batch.
#pragma once
#include <cstdint>

#include "core/quant.h"

namespace dsmoe {

// scores: scratch of T floats.
void attend_decode(QuantType type, const uint8_t* k, const uint8_t* v, int64_t total, const float* q, int64_t hd,
                   float scale, float* scores, float* out);
void attend_decode_scalar(QuantType type, const uint8_t* k, const uint8_t* v, int64_t total, const float* q, int64_t hd,
                          float scale, float* scores, float* out);
// AVX2 (+FMA, F16C) path; the scalar reference when the CPU lacks them.
void attend_decode_avx2(QuantType type, const uint8_t* k, const uint8_t* v, int64_t total, const float* q, int64_t hd,
                        float scale, float* scores, float* out);

}  // namespace dsmoe
