// Packed Q8_0 / Q4_0 rows: the layout the decode and small-batch kernels read. Stored GGUF blocks interleave an
// fp16 scale with every 32 weights, so a kernel spends more instructions gathering scales and splitting nibbles than
// the memory bus needs to deliver the bytes; the packed row holds the same bytes, permuted per group of 8 blocks:
//
//   group of 8 blocks -> [8 fp16 scales (16 B)] [payload of 32-byte vectors, 4-byte lane k = block k]
//   Q8_0 payload: 8 vectors; vector j, lane k = weights 4j..4j+3 of block k (int8)
//   Q4_0 payload: 4 vectors; vector j, lane k, byte m = q(k, 4j+m) | q(k, 16+4j+m) << 4, q = the stored 4-bit value
//   a row's last group may hold m < 8 blocks: m scales, then vectors of 4m bytes (lanes k < m), same order.
// Activations take the matching transposed form (qpack_act): per group of blocks, vector j, lane k = the 4
// activations 4j..4j+3 of block k. Then one u8 x s8 dot-product instruction per vector accumulates into lane k
// exactly block k's products: 8 blocks' integer sums come out in one vector, with no horizontal reduction.
//
// Every path computes what quant_dot_q8act_scalar computes on the unpacked row (exact per-block integer sums, the
// same float order acc[b % 8]), so packed and stored rows give identical bits.
// Dimension legend: n = weights per row (a multiple of 32), nx = activation rows sharing one pass over the weights.
#pragma once
#include <cstdint>

#include "core/quant.h"

namespace dsmoe {

bool qpack_supported(QuantType t);                                           // Q8_0 or Q4_0
void qpack_row(QuantType t, const uint8_t* src, uint8_t* dst, int64_t n);    // stored -> packed (src != dst)
void qunpack_row(QuantType t, const uint8_t* src, uint8_t* dst, int64_t n);  // packed -> stored (src != dst)
// Activations quantized by quantize_act_q8 (xq [n]) -> the transposed form the packed kernels read (xt [n]).
void qpack_act(const int8_t* xq, int8_t* xt, int64_t n);

// out[i] = dot(packed weight row, activation row i) for i < nx; activation row i is xt + i*n (qpack_act form),
// xd + i*n/32, xsum + i*n/32 (quantize_act_q8's scales and sums). The weights are decoded once for all nx rows
// (prefill: a few tokens per expert).
void qpack_dot_rows(QuantType t, const uint8_t* row, const int8_t* xt, const float* xd, const int32_t* xsum, int64_t n,
                    int64_t nx, float* out);
// y[r] = dot(packed row r, one activation row) for r in [r0, r1) of a matrix whose rows are row_bytes apart: the
// decode product, with the per-row dispatch hoisted out of the loop.
void qpack_matvec(QuantType t, const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, const int8_t* xt,
                  const float* xd, const int32_t* xsum, int64_t n, float* y);
// The readable reference (unpack weights and activations, then quant_dot_q8act_scalar per row) and the AVX2 kernel
// alone, for tests.
void qpack_dot_rows_scalar(QuantType t, const uint8_t* row, const int8_t* xt, const float* xd, const int32_t* xsum,
                           int64_t n, int64_t nx, float* out);
void qpack_dot_rows_avx2(QuantType t, const uint8_t* row, const int8_t* xt, const float* xd, const int32_t* xsum,
                         int64_t n, int64_t nx, float* out);

}  // namespace dsmoe
