// Packed Q8_0 / Q4_0 rows: the layout the decode and small-batch kernels read. Stored GGUF blocks interleave an
// fp16 scale with every 32 weights, so a kernel spends more instructions gathering scales and splitting nibbles than
// the memory bus needs to deliver the bytes; the packed row holds the same bytes, permuted per group of 8 blocks:
//
//   group of 8 blocks -> [8 fp16 scales (16 B)] [payload]
//   Q8_0 payload: the 8 blocks' int8 weights in block order (256 B)
//   Q4_0 payload: 4 pairs of 32 B; byte i of pair p = q(2p, i) | q(2p+1, i) << 4, q(b, i) = the stored 4-bit value
//                 of weight i of block b (0..15): one AND yields block 2p's 32 weights in order, shift+AND block 2p+1's
//   a trailing partial group (blocks per row not a multiple of 8) keeps the stored block layout.
//
// Every path computes what quant_dot_q8act_scalar computes on the unpacked row (exact per-block integer sums, the
// same float order), so packed and stored rows give identical bits.
// Dimension legend: n = weights per row (a multiple of 32), nx = activation rows sharing one pass over the weights.
#pragma once
#include <cstdint>

#include "core/quant.h"

namespace dsmoe {

bool qpack_supported(QuantType t);  // Q8_0 or Q4_0
void qpack_row(QuantType t, const uint8_t* src, uint8_t* dst, int64_t n);    // stored -> packed (src != dst)
void qunpack_row(QuantType t, const uint8_t* src, uint8_t* dst, int64_t n);  // packed -> stored (src != dst)

// out[i] = dot(packed weight row, activation row i) for i < nx; activation row i is xq + i*n, xd + i*n/32,
// xsum + i*n/32 (quantize_act_q8 output). The weights are decoded once for all nx rows (prefill: a few tokens per
// expert).
void qpack_dot_rows(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                    int64_t n, int64_t nx, float* out);
// The readable reference (unpack, then quant_dot_q8act_scalar per row) and the AVX2 kernel alone, for tests.
void qpack_dot_rows_scalar(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                           int64_t n, int64_t nx, float* out);
void qpack_dot_rows_avx2(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                         int64_t n, int64_t nx, float* out);

}  // namespace dsmoe
