#include "infer/qmatmul.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include <omp.h>

#include "core/error.h"
#include "core/gemm.h"
#include "core/profile.h"
#include "core/qdot.h"
#include "core/qpack.h"

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

namespace {
thread_local std::vector<uint8_t> t_stored_row;
}  // namespace

void qmatrix_row_f32(const QMatrix& w, int64_t r, float* out) {
  const uint8_t* row = w.row(r);
  if (w.packed) {
    t_stored_row.resize(w.row_bytes);
    qunpack_row(w.type, row, t_stored_row.data(), w.cols);
    row = t_stored_row.data();
  }
  dequantize_row(w.type, row, out, w.cols);
}

namespace {
// 64-byte aligned storage for the 8-bit activations: the kernels load them in 32/64-byte vectors, and loads that
// split cache lines cost 5-20% (measured on the K-quant kernels).
template <typename T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <typename U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  bool operator==(const Aligned64&) const { return true; }
};

// Scratch that lives as long as its thread: qmatmul may run on many threads at once (experts in parallel).
thread_local std::vector<float> t_panel;
thread_local std::vector<int8_t, Aligned64<int8_t>> t_xq;
thread_local std::vector<int8_t, Aligned64<int8_t>> t_xt;  // t_xq in the transposed form packed matrices read (core/qpack.h)
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
    if (w.packed) {  // each weight row decoded once for all n rows of x
      t_xt.resize(t_xq.size());
      for (int64_t i = 0; i < n; ++i) qpack_act(xq + i * K, t_xt.data() + i * K, K);
      const int8_t* xt = t_xt.data();
      if (n == 1) {  // one contiguous run of rows per thread, no per-row dispatch
#pragma omp parallel
        {
          const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
          qpack_matvec(w.type, w.data, w.row_bytes, w.rows * tid / nt, w.rows * (tid + 1) / nt, xt, xd, xs, K, y);
        }
        return;
      }
#pragma omp parallel
      {
        float out[kQmatmulDotMaxRows];
#pragma omp for schedule(static)
        for (int64_t r = 0; r < w.rows; ++r) {
          qpack_dot_rows(w.type, w.row(r), xt, xd, xs, K, n, out);
          for (int64_t i = 0; i < n; ++i) y[i * ldy + r] = out[i];
        }
      }
      return;
    }
    if (qdot_supported(w.type)) {
      const QdotKernel kernel = qdot_q8act_kernel(w.type);
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < w.rows; ++r)
        for (int64_t i = 0; i < n; ++i) y[i * ldy + r] = kernel(w.row(r), xq + i * K, xd + i * K / 32, xs + i * K / 32, K);
      return;
    }
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
    for (int64_t r = 0; r < R; ++r) qmatrix_row_f32(w, r0 + r, panel + r * K);
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

void qmatvec_many(const QMatVec* jobs, size_t count) {
  // Each distinct input gets a slot in the 8-bit scratch, quantized once when some block-type matrix reads it.
  std::vector<const float*> inputs;
  std::vector<size_t> slot_offset;  // per input, in elements
  std::vector<bool> quantized;
  std::vector<size_t> input_of(count);
  size_t total = 0;
  for (size_t j = 0; j < count; ++j) {
    const auto it = std::find(inputs.begin(), inputs.end(), jobs[j].x);
    input_of[j] = static_cast<size_t>(it - inputs.begin());
    if (it == inputs.end()) {
      inputs.push_back(jobs[j].x);
      slot_offset.push_back(total);
      quantized.push_back(false);
      total += static_cast<size_t>(jobs[j].w->cols);
    }
  }
  t_xq.resize(total);
  t_xt.resize(total);
  t_xd.resize(total / 32 + 1);
  t_xsum.resize(total / 32 + 1);
  for (size_t j = 0; j < count; ++j) {
    const QMatrix& w = *jobs[j].w;
    const size_t in = input_of[j], off = slot_offset[in];
    if (!quant_is_block(w.type) || quantized[in]) continue;
    quantize_act_q8(jobs[j].x, t_xq.data() + off, t_xd.data() + off / 32, t_xsum.data() + off / 32, w.cols);
    qpack_act(t_xq.data() + off, t_xt.data() + off, w.cols);
    quantized[in] = true;
  }
  // Tasks of up to 32 rows, in job order. Each thread takes one contiguous run of tasks holding an equal share of
  // the bytes to read: contiguous so the prefetchers follow long streams (a dynamic hand-out measured 1.5x
  // slower), by bytes because Q8_0 and Q4_0 rows of one batch differ twofold in size.
  constexpr int64_t kRows = 32;
  struct Task {
    size_t job;
    int64_t r0, r1;
    size_t end_bytes;  // cumulative bytes up to and including this task
  };
  std::vector<Task> tasks;
  size_t bytes = 0;
  for (size_t j = 0; j < count; ++j)
    for (int64_t r0 = 0; r0 < jobs[j].w->rows; r0 += kRows) {
      const int64_t r1 = std::min(jobs[j].w->rows, r0 + kRows);
      bytes += static_cast<size_t>(r1 - r0) * jobs[j].w->row_bytes;
      tasks.push_back({j, r0, r1, bytes});
    }
  const int8_t* xq = t_xq.data();
  const int8_t* xt = t_xt.data();
  const float* xd = t_xd.data();
  const int32_t* xs = t_xsum.data();
  // Profiling: each thread's busy time, so the time threads spend waiting at the region's end (imbalance, fork and
  // join) can be reported as "barrier wait".
  const bool profiling = profile_table().enabled;
  std::vector<double> busy(profiling ? static_cast<size_t>(omp_get_max_threads()) : 0);
  const auto region_start = std::chrono::steady_clock::now();
#pragma omp parallel
  {
    const size_t nt = static_cast<size_t>(omp_get_num_threads()), tid = static_cast<size_t>(omp_get_thread_num());
    // First task whose cumulative bytes pass the thread's starting share.
    auto first_task = [&](size_t thread) {
      const size_t share = bytes * thread / nt;
      return static_cast<size_t>(std::upper_bound(tasks.begin(), tasks.end(), share,
                                                  [](size_t v, const Task& t) { return v < t.end_bytes; }) -
                                 tasks.begin());
    };
    const size_t lo = tid == 0 ? 0 : first_task(tid), hi = tid + 1 == nt ? tasks.size() : first_task(tid + 1);
    const auto thread_start = std::chrono::steady_clock::now();
    for (size_t t = lo; t < hi; ++t) {
      const QMatVec& job = jobs[tasks[t].job];
      const QMatrix& w = *job.w;
      const size_t off = slot_offset[input_of[tasks[t].job]];
      if (w.packed) {
        qpack_matvec(w.type, w.data, w.row_bytes, tasks[t].r0, tasks[t].r1, xt + off, xd + off / 32, xs + off / 32,
                     w.cols, job.y);
        continue;
      }
      if (qdot_supported(w.type)) {  // K-quants and the other 32-blocks: the kernel chosen once per task
        const QdotKernel kernel = qdot_q8act_kernel(w.type);
        for (int64_t r = tasks[t].r0; r < tasks[t].r1; ++r)
          job.y[r] = kernel(w.row(r), xq + off, xd + off / 32, xs + off / 32, w.cols);
        continue;
      }
      for (int64_t r = tasks[t].r0; r < tasks[t].r1; ++r) {
        if (quant_is_block(w.type))
          job.y[r] = quant_dot_q8act(w.type, w.row(r), xq + off, xd + off / 32, xs + off / 32, w.cols);
        else job.y[r] = quant_dot(w.type, w.row(r), job.x, w.cols);
      }
    }
    if (profiling && nt == busy.size())
      busy[tid] = std::chrono::duration<double>(std::chrono::steady_clock::now() - thread_start).count();
  }
  if (profiling) {
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - region_start).count();
    double wait = 0.0;
    for (double b : busy) wait += b > 0.0 ? wall - b : 0.0;
    profile_table().seconds["barrier_wait"] += wait / static_cast<double>(busy.size());
  }
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
