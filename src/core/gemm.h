// Row-major matrix products. The fast path is OpenBLAS sgemm; gemm_reference is the readable triple loop kept
// beside it for tests.
//
// Naming: C[M,N] = alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T (trans_a / trans_b).
// The three uses in a linear layer y = x W^T (W stored [out, in] as PyTorch does):
//   forward        y[T,out]  = x[T,in] * W^T           gemm(false, true, ...)
//   input grad     dx[T,in]  = dy[T,out] * W           gemm(false, false, ...)
//   weight grad    dW[out,in] += dy^T * x              gemm(true, false, ..., beta = 1)
#pragma once
#include <cstdint>

namespace dsmoe {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The machine's sgemm ceiling: best-of-3 GFLOP/s of an n x n x n product with the current thread count.
double sgemm_peak_gflops(int64_t n = 1024);

// Linear layer helpers over contiguous row-major buffers.
// y[T,out] = x[T,in] W[out,in]^T   (beta 0: overwrite, 1: accumulate)
// One row (decoding) goes through a matrix-vector product: OpenBLAS's sgemv reads W twice as fast as its sgemm
// with M = 1 (measured: 27 vs 13 GB/s on a 102400 x 1024 lm_head).
void gemv(const float* W, const float* x, float* y, int64_t out, int64_t in, float beta);
inline void linear_forward(const float* x, const float* W, float* y, int64_t T, int64_t in, int64_t out,
                           float beta = 0.0f) {
  if (T == 1) return gemv(W, x, y, out, in, beta);
  gemm(false, true, T, out, in, 1.0f, x, in, W, in, beta, y, out);
}
// dx[T,in] (=, or += with beta 1) dy[T,out] W[out,in];  dW[out,in] += dy^T x
inline void linear_backward(const float* x, const float* W, const float* dy, float* dx, float* dW, int64_t T,
                            int64_t in, int64_t out, float dx_beta = 0.0f) {
  if (dx != nullptr) gemm(false, false, T, in, out, 1.0f, dy, out, W, in, dx_beta, dx, in);
  gemm(true, false, out, in, T, 1.0f, dy, out, x, in, 1.0f, dW, in);
}

}  // namespace dsmoe
