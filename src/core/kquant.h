// The block quantizations beyond Q8_0/Q4_0 that llama.cpp files use: the 32-weight blocks Q4_1, Q5_0, Q5_1, IQ4_NL
// and the 256-weight K-quant super-blocks Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. Byte layouts are ggml's
// (ggml/src/ggml-common.h) and the quantizers reproduce ggml's reference quantizers (quantize_row_*_ref, with their
// scale searches) so a row quantized here is byte-identical to one quantized by ggml; dequantization matches
// ggml's dequantize_row_* bit for bit.
//
// Dimension legend: n = weights in the row (a multiple of the type's block size: 32, or kQK_K = 256).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/quant.h"

namespace dsmoe {

// t is one of Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (throws otherwise).
void kquant_quantize_row(QuantType t, const float* x, uint8_t* dst, int64_t n);
void kquant_dequantize_row(QuantType t, const uint8_t* src, float* y, int64_t n);

// Checks a row's block scales (fp16 d / dmin) are finite, as ggml_validate_row_data does; any block type incl.
// Q8_0/Q4_0. On failure returns false and, if `why` is given, says which block and which scale.
bool quant_validate_row(QuantType t, const uint8_t* data, int64_t n, std::string* why = nullptr);

}  // namespace dsmoe
