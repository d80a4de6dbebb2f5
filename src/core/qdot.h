// Integer dot products of every block type beyond Q8_0/Q4_0 (Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K) against activations quantized by quantize_act (core/quant.h: int8 xq[n], f32 scale xd[n/32], int32 sum
// xsum[n/32] per 32-block). Every path (scalar reference, AVX2, AVX512-VNNI) computes the same exact integer sums
// and combines them in the same documented float order, so all return identical bits.
#pragma once
#include <cstdint>

#include "core/quant.h"

namespace dsmoe {

bool qdot_supported(QuantType t);  // one of the nine types above
float qdot_q8act_scalar(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                        int64_t n);
// The AVX2 kernel (scalar when the CPU lacks AVX2), and the AVX512-VNNI kernel (needs AVX512F/VL/BW, VNNI and GFNI;
// the AVX2 kernel otherwise): so tests cover every path on any machine that has it.
float qdot_q8act_avx2(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                      int64_t n);
float qdot_q8act_vnni(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                      int64_t n);
// The fastest path this CPU has.
float qdot_q8act(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n);

// The fastest kernel for t, to call per row without the per-call type dispatch and checks (a decode row of 2048
// Q4_K weights streams in ~50 ns, where a switch and a call are noticeable). n must be a multiple of the block size
// (32, or 256 for K-quants); throws if t has no kernel.
using QdotKernel = float (*)(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum, int64_t n);
QdotKernel qdot_q8act_kernel(QuantType t);
const char* qdot_q8act_path();  // "AVX512-VNNI", "AVX2" or "scalar": what qdot_q8act runs here

}  // namespace dsmoe
