// Weight matrices in any GGUF storage type, used where they lie (a mapped file, an owned buffer, or an F32 model),
// and the one product the inference engine needs: y = x · Wᵀ.
//
// Dimension legend: n = rows of x (tokens), rows/cols = W's shape [out, in].
// Paths (chosen per call, all giving the same math up to rounding):
//   F32, any n          -> OpenBLAS (sgemv for n == 1, sgemm otherwise).
//   block types, n small -> x quantized to 8 bits per 32-block once, integer dot products per weight row
//                          (decoding is bound by reading the weights; this reads each byte once, as llama.cpp does);
//                          Q8_0/Q4_0 matrices packed at load (core/qpack.h) decode each weight group once for
//                          up to 4 rows of x.
//   F16/BF16, n small   -> float dot products converting on the fly.
//   any type, n large   -> panels of rows dequantized to f32 (a few MB) and multiplied with sgemm (prefill is
//                          bound by arithmetic; sgemm's throughput pays for the conversion many times over).
// Row-parallel with OpenMP; inside an enclosing parallel region (e.g. experts run in parallel) it runs on the
// calling thread.
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
// Several matrix-vector products (n = 1) in one parallel region, their rows spread evenly over the threads:
// decoding runs many small products per layer (Q/K/V; the selected experts' gate and up), and one fork/join
// each would leave the memory bus idle between them. Products sharing an input quantize it once.
struct QMatVec {
  const QMatrix* w;
  const float* x;  // [w->cols]
  float* y;        // [w->rows]
};
void qmatvec_many(const QMatVec* jobs, size_t count);
// Reference: dequantize W fully and multiply in double. For tests.
void qmatmul_reference(const QMatrix& w, const float* x, int64_t n, float* y);
// Row r of W as f32 (embedding lookups).
void qmatrix_row_f32(const QMatrix& w, int64_t r, float* out);

// Largest n that takes the per-row dot-product path for a block type (above it: dequantize + sgemm). Measured on
// bench-infer Q8_0: 16 beats 4 for 16- and 64-token prompts (the experts then see a few rows each) and 48.
inline constexpr int64_t kQmatmulDotMaxRows = 16;

}  // namespace dsmoe
