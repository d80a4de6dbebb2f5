// Weight storage types of GGUF files (llama.cpp/ggml): F32, F16, BF16, the 32-weight block quantizations Q8_0,
// Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL and the 256-weight K-quant super-blocks Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, with ggml's
// exact block layouts and reference rounding (ggml/src/ggml-quants.c quantize_row_*_ref), so a tensor quantized
// here is byte-identical to one quantized by llama.cpp. Q8_0/Q4_0 live here; the other block types in kquant.cpp.
//
//   Q8_0 block (34 bytes): fp16 d = amax/127, then 32 int8 q = roundf(x * (1/d)); x ~ q*d.
//   Q4_0 block (18 bytes): fp16 d = max/-8 (max = the signed value of largest magnitude), then 16 bytes:
//     q = min(15, (int8_t)(x * (1/d) + 8.5f)); byte j holds weight j in the low nibble, weight j+16 in the high
//     nibble; x ~ (q-8)*d.
// The scale is computed and used in f32 while quantizing and stored rounded to fp16 (ties to even).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dsmoe {

// Values are GGML type ids (ggml.h enum ggml_type), as stored in GGUF tensor infos.
enum class QuantType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  IQ4_NL = 20,
  BF16 = 30,
};
// Every type above, in id order.
inline constexpr QuantType kAllQuantTypes[] = {QuantType::F32,    QuantType::F16,  QuantType::Q4_0, QuantType::Q4_1,
                                               QuantType::Q5_0,   QuantType::Q5_1, QuantType::Q8_0, QuantType::Q2_K,
                                               QuantType::Q3_K,   QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K,
                                               QuantType::IQ4_NL, QuantType::BF16};

const char* quant_type_name(QuantType t);                 // ggml's names: "F32", "Q8_0", "Q4_K", "IQ4_NL", ...
QuantType quant_type_from_name(const std::string& name);  // case-insensitive; throws dsmoe::Error
bool quant_type_known(uint32_t ggml_id);                  // one of the ids above
// The ggml name of any type id, known or not ("Q8_1", "IQ2_XXS", ..., or "type 99"): error messages.
std::string ggml_type_name(uint32_t ggml_id);
int64_t quant_block_size(QuantType t);  // weights per block: 1 (float), 32, or 256 (K-quants)
size_t quant_block_bytes(QuantType t);  // bytes per block (ggml-common.h)
bool quant_is_block(QuantType t);       // a block quantization (not F32/F16/BF16)
// Bytes of n weights of type t; n must be a multiple of the block size (throws otherwise).
size_t quant_row_bytes(QuantType t, int64_t n);

inline constexpr int64_t kQK8_0 = 32;
inline constexpr int64_t kQK4_0 = 32;
inline constexpr int64_t kQK_K = 256;  // K-quant super-block

// IEEE half precision <-> f32 (round to nearest even, as F16C's vcvtps2ph with rounding mode 0, which ggml uses).
uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(uint16_t h);

// Reference quantizers (n a multiple of 32): bit-identical to ggml's *_ref functions.
void quantize_row_q8_0(const float* x, uint8_t* dst, int64_t n);
void quantize_row_q4_0(const float* x, uint8_t* dst, int64_t n);
void dequantize_row_q8_0(const uint8_t* src, float* y, int64_t n);
void dequantize_row_q4_0(const uint8_t* src, float* y, int64_t n);

// Any type: n f32 values -> quant_row_bytes(t, n) bytes (F16/BF16 round to nearest even), and back.
// Unaligned source/destination pointers are fine.
void quantize_row(QuantType t, const float* x, uint8_t* dst, int64_t n);
void dequantize_row(QuantType t, const uint8_t* src, float* y, int64_t n);

// dot(row of n weights of type t, x[n]) in f32. Summation order is fixed (4 x 8 lanes, per block for Q8_0/Q4_0; see
// quant.cpp) and every multiply-add is fused, so the scalar reference and the AVX2 path give identical bits.
float quant_dot(QuantType t, const uint8_t* row, const float* x, int64_t n);  // dispatches (AVX2 when available)
float quant_dot_scalar(QuantType t, const uint8_t* row, const float* x, int64_t n);
// AVX2 (+FMA, F16C) path; falls back to the scalar reference when the CPU lacks them.
float quant_dot_avx2(QuantType t, const uint8_t* row, const float* x, int64_t n);
bool quant_have_avx2();  // the CPU supports avx2, fma and f16c (checked once with __builtin_cpu_supports)

// ---- integer dot products for decoding (ggml's vec_dot_q8_0_q8_0 / vec_dot_q4_0_q8_0 scheme) ----
// The activation vector is quantized once per matrix-vector product to 8 bits, exactly as ggml quantizes it for
// llama.cpp's integer dot products on x86 (so both engines multiply the same integers and differ only in the order
// of float sums: greedy text made from one GGUF file agrees). Per 32-block (xq int8 [n], xd f32 scale [n/32], xsum
// int32 [n/32] = the block's sum of xq), two formats:
//  - Q8_0 (ggml's quantize_row_q8_0/q8_1 AVX2 path; the activations of Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL):
//    q = round-to-even(x * (127/amax)), d = amax/127 rounded to fp16 (kept as the f32 it decodes to);
//  - Q8_K (ggml's quantize_row_q8_K_ref; the activations of the K-quants): one scale per 256, iscale = -127/max
//    (max: the signed value of largest magnitude), q = min(127, round-to-even(iscale * x)), d = 1/iscale, written
//    to all eight of the super-block's xd entries.
// Each weight block then costs one 32-wide int8 dot product instead of 32 float multiply-adds.
// Order (every path): per block b, the exact integer dot product s_b; acc[b % 8] = fmaf(d_w,b * d_x,b, s_b,
// acc[b % 8]); the result is hsum8(acc) (ggml's 8-lane order). So the scalar reference and the SIMD kernels
// (AVX2, AVX512-VNNI; chosen at run time) return identical bits.
enum class ActFormat { Q8_0, Q8_K };
ActFormat act_format(QuantType weights);  // the format ggml's vec_dot of that weight type reads
void quantize_act_q8(const float* x, int8_t* xq, float* xd, int32_t* xsum, int64_t n);    // Q8_0; n % 32 == 0
void quantize_act_q8_k(const float* x, int8_t* xq, float* xd, int32_t* xsum, int64_t n);  // Q8_K; n % 256 == 0
void quantize_act(ActFormat f, const float* x, int8_t* xq, float* xd, int32_t* xsum, int64_t n);
float quant_dot_q8act(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                      int64_t n);  // Q8_0 / Q4_0 rows
float quant_dot_q8act_scalar(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                             int64_t n);
// The AVX2 kernel alone (scalar without AVX2), so tests cover it on VNNI machines too.
float quant_dot_q8act_avx2(QuantType t, const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xsum,
                           int64_t n);
const char* quant_dot_q8act_kernel();  // "AVX512-VNNI", "AVX2" or "scalar": what quant_dot_q8act runs here

}  // namespace dsmoe
