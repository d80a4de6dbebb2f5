#include "infer/qmatmul.h"

#include <algorithm>
#include <vector>

#include <omp.h>

#include "core/error.h"
#include "core/gemm.h"

namespace dsmoe {

QMatrix QMatrix::view(QuantType type, const void* data, int64_t rows, int64_t cols) {
  QMatrix m;
  m.type = type;
  m.data = static_cast<const uint8_t*>(data);
  m.rows = rows;
  m.cols = cols;
  m.row_bytes = quant_row_bytes(type, cols);
  return m;
}

void qmatrix_row_f32(const QMatrix& w, int64_t r, float* out) { dequantize_row(w.type, w.row(r), out, w.cols); }

namespace {
// Scratch that lives as long as its thread: qmatmul may run on many threads at once (experts in parallel).
thread_local std::vector<float> t_panel;
thread_local std::vector<int8_t> t_xq;
thread_local std::vector<float> t_xd;
thread_local std::vector<int32_t> t_xsum;

// n <= kQmatmulDotMaxRows rows of x against every weight row.
void dot_rows(const QMatrix& w, const float* x, int64_t n, float* y, int64_t ldy) {
  const int64_t K = w.cols;
  if (quant_is_block(w.type)) {
    t_xq.resize(static_cast<size_t>(n * K));
    t_xd.resize(static_cast<size_t>(n * K / 32));
    t_xsum.resize(static_cast<size_t>(n * K / 32));
    for (int64_t i = 0; i < n; ++i)
      quantize_act_q8(x + i * K, t_xq.data() + i * K, t_xd.data() + i * K / 32, t_xsum.data() + i * K / 32, K);
    const int8_t* xq = t_xq.data();
    const float* xd = t_xd.data();
    const int32_t* xs = t_xsum.data();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < w.rows; ++r)
      for (int64_t i = 0; i < n; ++i)
        y[i * ldy + r] = quant_dot_q8act(w.type, w.row(r), xq + i * K, xd + i * K / 32, xs + i * K / 32, K);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t i = 0; i < n; ++i) y[i * ldy + r] = quant_dot(w.type, w.row(r), x + i * K, K);
}

// Panels of rows dequantized to f32, then sgemm: y[:, r0:r0+R] = x · panelᵀ.
void panel_gemm(const QMatrix& w, const float* x, int64_t n, float* y, int64_t ldy) {
  const int64_t K = w.cols;
  const int64_t panel_rows = std::max<int64_t>(16, (int64_t{1} << 20) / K);  // ~4 MB of f32
  t_panel.resize(static_cast<size_t>(std::min(panel_rows, w.rows) * K));
  float* panel = t_panel.data();
  for (int64_t r0 = 0; r0 < w.rows; r0 += panel_rows) {
    const int64_t R = std::min(panel_rows, w.rows - r0);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; ++r) dequantize_row(w.type, w.row(r0 + r), panel + r * K, K);
    gemm(false, true, n, R, K, 1.0f, x, K, panel, K, 0.0f, y + r0, ldy);
  }
}
}  // namespace

void qmatmul(const QMatrix& w, const float* x, int64_t n, float* y, int64_t ldy) {
  if (ldy == 0) ldy = w.rows;
  check(!w.empty() && n >= 0 && ldy >= w.rows, "qmatmul: bad arguments");
  if (n == 0) return;
  if (w.type == QuantType::F32 && n > 1) {
    gemm(false, true, n, w.rows, w.cols, 1.0f, x, w.cols, reinterpret_cast<const float*>(w.data), w.cols, 0.0f, y,
         ldy);
    return;
  }
  if (n <= kQmatmulDotMaxRows) dot_rows(w, x, n, y, ldy);
  else panel_gemm(w, x, n, y, ldy);
}

void qmatmul_reference(const QMatrix& w, const float* x, int64_t n, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    qmatrix_row_f32(w, r, row.data());
    for (int64_t i = 0; i < n; ++i) {
      double s = 0.0;
      for (int64_t k = 0; k < w.cols; ++k) s += static_cast<double>(row[k]) * x[i * w.cols + k];
      y[i * w.rows + r] = static_cast<float>(s);
    }
  }
}

}  // namespace dsmoe
