// Weight matrices in any GGUF storage type, used where they lie (a mapped file, an owned buffer, or an F32 model),
// and the one product the inference engine needs: y = x · Wᵀ, usually several at once.
//
// Dimension legend: n = rows of x (tokens), rows/cols = W's shape [out, in].
// Paths (chosen per matrix type, the same for every n, so a token's output does not depend on what it is batched
// with):
//   block types (Q8_0, Q4_0, K-quants, ...) -> x quantized to 8 bits per 32-block once, integer dot products per
//                          weight row against blocks of up to kXBlock rows of x (llama.cpp's arithmetic). Decoding
//                          is bound by reading the weights and reads each byte once; prefill is bound by arithmetic,
//                          where 8-bit dot products outrun sgemm (bench_qmatmul --prefill: ~190 against ~90
//                          GFLOP/s per AVX-512 core). Q8_0/Q4_0 matrices packed at load (core/qpack.h) decode each
//                          weight group once for up to 4 rows of x.
//   F16/BF16, n == 1      -> float dot products converting on the fly; n > 1: panels of rows widened to f32, sgemm.
//   F32                   -> OpenBLAS (dot products for n == 1, sgemm otherwise).
//   (A product marked decode_rows takes the n == 1 path for each of its rows: see QProduct.)
// qmatmul_many runs a batch of products in one parallel region, the weight rows of all of them split evenly over
// the threads (one fork/join per batch: decoding runs many small products per layer, prefill one chain per expert).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/quant.h"

namespace dsmoe {

struct QMatrix {
  QuantType type = QuantType::F32;
  const uint8_t* data = nullptr;  // rows * row_bytes bytes
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;
  bool packed = false;  // Q8_0/Q4_0 rows in the packed layout of core/qpack.h (same bytes per row)

  static QMatrix view(QuantType type, const void* data, int64_t rows, int64_t cols);
  static QMatrix f32(const float* data, int64_t rows, int64_t cols) { return view(QuantType::F32, data, rows, cols); }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
  size_t bytes() const { return static_cast<size_t>(rows) * row_bytes; }
  bool empty() const { return data == nullptr; }
};

// y[n, rows] = x[n, cols] · Wᵀ  (y row stride ldy >= rows; 0 means rows).
void qmatmul(const QMatrix& w, const float* x, int64_t n, float* y, int64_t ldy = 0);
// One product of a batch: y[n, ldy] = x[n, w->cols] · wᵀ. Products that share an input (the same x pointer) must
// agree on n and cols; it is quantized once.
struct QProduct {
  const QMatrix* w;
  const float* x;
  float* y;
  int64_t n = 1;
  int64_t ldy = 0;  // 0: w->rows
  // Float types only: every row of x by dot products, as a lone row (n == 1) is, instead of sgemm, so that rows
  // batched together (decode steps of several sequences) get exactly the bits each would get alone.
  bool decode_rows = false;
};
void qmatmul_many(const QProduct* jobs, size_t count);
// Reference: dequantize W fully and multiply in double. For tests.
void qmatmul_reference(const QMatrix& w, const float* x, int64_t n, float* y);
// Row r of W as f32 (embedding lookups).
void qmatrix_row_f32(const QMatrix& w, int64_t r, float* out);

// Rows of x one integer pass reads for every weight row of a task: 8 rows of 2048 8-bit activations (16 KB) stay
// in L1 while the task's weight rows stream by.
inline constexpr int64_t kXBlock = 8;

}  // namespace dsmoe
