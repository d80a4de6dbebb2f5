#include "core/ops.h"

#include "core/vecmath.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <omp.h>

namespace dsmoe {

void rmsnorm_forward(const float* x, const float* w, float eps, float* y, float* rstd, int64_t T, int64_t d) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * d;
    float* yr = y + t * d;
    double ss = 0.0;
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / d + eps));
    rstd[t] = r;
    for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * r * w[i];
  }
}

void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                      int64_t T, int64_t d) {
  // y_i = x_i r w_i with r = (mean(x^2)+eps)^-1/2:
  //   dx_i = r (w_i dy_i) - x_i r^3 / d * sum_j (w_j dy_j x_j);  dw_i += sum_t dy_i x_i r
  // dw is reduced per thread and summed in thread order, so results do not depend on scheduling.
  const int n_threads = std::max(1, omp_get_max_threads());
  std::vector<std::vector<double>> partial(n_threads, std::vector<double>(d, 0.0));
#pragma omp parallel num_threads(n_threads)
  {
    std::vector<double>& acc = partial[omp_get_thread_num()];
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float* xr = x + t * d;
      const float* gr = dy + t * d;
      float* dxr = dx + t * d;
      const float r = rstd[t];
      double dot = 0.0;
      for (int64_t i = 0; i < d; ++i) dot += static_cast<double>(w[i]) * gr[i] * xr[i];
      const float coef = static_cast<float>(dot * r * r * r / d);
      for (int64_t i = 0; i < d; ++i) {
        dxr[i] = r * w[i] * gr[i] - xr[i] * coef;
        acc[i] += static_cast<double>(gr[i]) * xr[i] * r;
      }
    }
  }
  for (int th = 0; th < n_threads; ++th)
    for (int64_t i = 0; i < d; ++i) dw[i] += static_cast<float>(partial[th][i]);
}

// Small calls run without an OpenMP region at all: a region with an `if` clause that runs on one thread still
// re-forms the thread team and puts the idle threads to sleep, which costs decoding (many small calls per token)
// more than the work.
void swiglu_forward(const float* g, const float* u, float* act, int64_t n) {
  if (n > 65536) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) act[i] = g[i] / (1.0f + exp_fast(-g[i])) * u[i];
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) act[i] = g[i] / (1.0f + exp_fast(-g[i])) * u[i];
  }
}

void swiglu_backward(const float* g, const float* u, const float* dact, float* dg, float* du, int64_t n) {
  // silu'(x) = s(x) (1 + x (1 - s(x))) with s the logistic sigmoid.
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + exp_fast(-g[i]));
    const float si = g[i] * s;
    const float da = dact[i];
    du[i] = da * si;
    dg[i] = da * u[i] * s * (1.0f + g[i] * (1.0f - s));
  }
}

void rope_tables(int64_t S, int64_t hd, double theta, float* cos_table, float* sin_table) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < half; ++i) {
    // HF computes inv_freq and the angles in float32; matching that keeps long positions within 1 ulp of it.
    const float inv_freq = static_cast<float>(1.0 / std::pow(theta, static_cast<double>(2 * i) / hd));
    for (int64_t p = 0; p < S; ++p) {
      const float angle = static_cast<float>(p) * inv_freq;
      cos_table[p * half + i] = std::cos(angle);
      sin_table[p * half + i] = std::sin(angle);
    }
  }
}

void rope_rotate(float* x, int64_t hd, const float* cos_row, const float* sin_row, float sign) {
  // x*cos + rotate_half(x)*sin with rotate_half(x) = cat(-x2, x1):
  //   x1' = x1 cos - x2 sin;  x2' = x2 cos + x1 sin
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half], c = cos_row[i], s = sign * sin_row[i];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

void rope_rotate_pairs(float* x, int64_t hd, const float* cos_row, const float* sin_row) {
  for (int64_t i = 0; i < hd / 2; ++i) {
    const float a = x[2 * i], b = x[2 * i + 1], c = cos_row[i], s = sin_row[i];
    x[2 * i] = a * c - b * s;
    x[2 * i + 1] = b * c + a * s;
  }
}

void softmax_rows(float* x, int64_t rows, int64_t n) {
  auto softmax_row = [&](int64_t r) {
    float* row = x + r * n;
    const float sum = exp_shift_sum(row, n, max_of(row, n));
    scale_in_place(row, n, 1.0f / sum);
  };
  if (rows * n > 65536) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) softmax_row(r);
  } else {
    for (int64_t r = 0; r < rows; ++r) softmax_row(r);
  }
}

double cross_entropy(float* logits, const int32_t* targets, int64_t T, int64_t V, bool write_grad, float grad_scale) {
  double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
  for (int64_t t = 0; t < T; ++t) {
    float* row = logits + t * V;
    if (targets[t] < 0) {  // ignored position
      if (write_grad) std::fill(row, row + V, 0.0f);
      continue;
    }
    const float mx = max_of(row, V);
    const float target_logit = row[targets[t]];
    if (!write_grad) {  // logits stay as they are: callers may still read them
      total += std::log(static_cast<double>(exp_shift_sum_const(row, V, mx))) + mx - target_logit;
      continue;
    }
    // dlogits = (softmax - onehot) * grad_scale, computed in place
    const float sum = exp_shift_sum(row, V, mx);
    total += std::log(static_cast<double>(sum)) + mx - target_logit;
    scale_in_place(row, V, grad_scale / sum);
    row[targets[t]] -= grad_scale;
  }
  return total;
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace dsmoe
