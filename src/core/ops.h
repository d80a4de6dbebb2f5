// Element-wise and row-wise operators with their hand-written backward passes.
//
// Dimension legend: T = tokens (rows), d = row width, F = MLP width, V = vocabulary, S = sequence length,
// hd = head dimension.
// Gradient rule (llm.c): parameter gradients accumulate (+=); activation gradients overwrite (=) unless a
// function says otherwise.
#pragma once
#include <cstdint>

namespace dsmoe {

// RMSNorm (HF DeepseekRMSNorm): y = x * rsqrt(mean(x^2) + eps) * w.
// x, y: [T, d]; w: [d]; rstd: [T] saved for the backward pass.
void rmsnorm_forward(const float* x, const float* w, float eps, float* y, float* rstd, int64_t T, int64_t d);
// dx [T,d] (=), dw [d] (+=).
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                      int64_t T, int64_t d);

// SwiGLU activation: act = silu(g) * u, element-wise over n values.
void swiglu_forward(const float* g, const float* u, float* act, int64_t n);
// dg, du (=) from dact.
void swiglu_backward(const float* g, const float* u, const float* dact, float* dg, float* du, int64_t n);

// Split-half ("rotate_half", NeoX) RoPE tables: cos/sin [S, hd/2] for positions 0..S-1,
// inv_freq[i] = theta^(-2i/hd).
void rope_tables(int64_t S, int64_t hd, double theta, float* cos_table, float* sin_table);
// Rotate one row x[hd] at position pos in place: pairs (i, i + hd/2). `sign` = +1 forward, -1 backward (the
// inverse rotation is the transpose, which is exactly the gradient map).
void rope_rotate(float* x, int64_t hd, const float* cos_row, const float* sin_row, float sign);
// The same rotation on adjacent pairs (2i, 2i + 1) (llama.cpp's "NORM" RoPE): equal to rope_rotate on a row whose
// elements were permuted as GGUF's Q/K rows are (new 2i <- old i, new 2i+1 <- old hd/2 + i).
void rope_rotate_pairs(float* x, int64_t hd, const float* cos_row, const float* sin_row);

// Row softmax in place over [rows, n].
void softmax_rows(float* x, int64_t rows, int64_t n);

// Cross-entropy of logits [T, V] against targets [T]; a negative target is ignored (PyTorch's ignore_index: no loss,
// zero gradient). When `write_grad`, logits are overwritten with d(loss)/d(logits) scaled by `grad_scale` (pass
// 1/number-of-counted-targets for a mean). Returns the SUM of per-token NLL over counted targets (double).
double cross_entropy(float* logits, const int32_t* targets, int64_t T, int64_t V, bool write_grad, float grad_scale);

// y[n] += alpha * x[n]
void axpy(float alpha, const float* x, float* y, int64_t n);

}  // namespace dsmoe
