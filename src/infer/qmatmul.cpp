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
  T* allocate(size_t n) { return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, size_t) { ::operator delete (p, std::align_val_t{64}); }
  bool operator==(const Aligned64&) const { return true; }
};

// Scratch of the calling thread (several sessions may run batches at once); the workers of its parallel region
// read it through pointers.
thread_local std::vector<float> t_panel;
thread_local std::vector<int8_t, Aligned64<int8_t>> t_xq;
thread_local std::vector<int8_t, Aligned64<int8_t>>
    t_xt;  // t_xq in the transposed form packed matrices read (core/qpack.h)
thread_local std::vector<float> t_xd;
thread_local std::vector<int32_t> t_xsum;

// Panels of rows widened to f32, then sgemm: y[:, r0:r0+R] = x · panelᵀ (F16/BF16 with n > 1).
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

// A float product with several rows of x: BLAS (multi-threaded, or on the calling thread inside a parallel region).
void float_matmul(const QMatrix& w, const float* x, int64_t n, float* y, int64_t ldy) {
  if (w.type == QuantType::F32)
    gemm(false, true, n, w.rows, w.cols, 1.0f, x, w.cols, reinterpret_cast<const float*>(w.data), w.cols, 0.0f, y, ldy);
  else
    panel_gemm(w, x, n, y, ldy);
}

// Weight rows [r0, r1) of one product against all its rows of x: the unit of work a thread takes.
struct Task {
  size_t job;
  int64_t r0, r1;
  double end_cost;  // cumulative cost up to and including this task
};

// One quantized input: n rows of cols 8-bit activations at element offset `offset` of the scratch.
struct QuantizedInput {
  const float* x;
  ActFormat format;  // as ggml quantizes activations for the weight type (so the products equal llama.cpp's)
  int64_t n, cols;
  size_t offset;
};

// out[i] = dot(row r of w, activation row i) for i < nx, all in the 8-bit form.
inline void int_dot_rows(const QMatrix& w, QdotKernel kernel, int64_t r, const int8_t* xq, const int8_t* xt,
                         const float* xd, const int32_t* xs, int64_t nx, float* out) {
  const int64_t K = w.cols, nb = K / 32;
  if (w.packed) return qpack_dot_rows(w.type, w.row(r), xt, xd, xs, K, nx, out);
  for (int64_t i = 0; i < nx; ++i)
    out[i] = kernel ? kernel(w.row(r), xq + i * K, xd + i * nb, xs + i * nb, K)
                    : quant_dot_q8act(w.type, w.row(r), xq + i * K, xd + i * nb, xs + i * nb, K);
}

// The calling thread's 8-bit scratch, by address: inside the parallel region t_xq and friends name each worker's
// own (empty) thread_local copies.
struct Scratch {
  int8_t* xq;
  int8_t* xt;
  float* xd;
  int32_t* xs;
};

// Rows [r0, r1) of one block-type product: y[i, r] for every row i of x, in x-blocks of kXBlock rows, each
// against all the task's weight rows (the x-block stays in L1, the task's weight rows in L2).
void run_int_task(const QProduct& job, int64_t r0, int64_t r1, const QuantizedInput& in, const Scratch& s) {
  const QMatrix& w = *job.w;
  const int64_t K = w.cols, nb = K / 32, n = job.n, ldy = job.ldy == 0 ? w.rows : job.ldy;
  const int8_t* xq = s.xq + in.offset;
  const int8_t* xt = s.xt + in.offset;
  const float* xd = s.xd + in.offset / 32;
  const int32_t* xs = s.xs + in.offset / 32;
  if (n == 1 && w.packed) return qpack_matvec(w.type, w.data, w.row_bytes, r0, r1, xt, xd, xs, K, job.y);
  const QdotKernel kernel = qdot_supported(w.type) ? qdot_q8act_kernel(w.type) : nullptr;  // chosen once per task
  float out[kXBlock];
  for (int64_t i0 = 0; i0 < n; i0 += kXBlock) {
    const int64_t nx = std::min(kXBlock, n - i0);
    for (int64_t r = r0; r < r1; ++r) {
      int_dot_rows(w, kernel, r, xq + i0 * K, xt + i0 * K, xd + i0 * nb, xs + i0 * nb, nx, out);
      for (int64_t i = 0; i < nx; ++i) job.y[(i0 + i) * ldy + r] = out[i];
    }
  }
}
// Rows [r0, r1) of a float product by dot products, for each row of x (one row, or a decode batch).
void run_float_rows_task(const QProduct& job, int64_t r0, int64_t r1) {
  const QMatrix& w = *job.w;
  const int64_t ldy = job.ldy == 0 ? w.rows : job.ldy;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t i = 0; i < job.n; ++i) job.y[i * ldy + r] = quant_dot(w.type, w.row(r), job.x + i * w.cols, w.cols);
}

bool uses_blas(const QProduct& p) { return p.n > 1 && !quant_is_block(p.w->type) && !p.decode_rows; }
}  // namespace

void qmatmul(const QMatrix& w, const float* x, int64_t n, float* y, int64_t ldy) {
  check(!w.empty() && n >= 0 && (ldy == 0 || ldy >= w.rows), "qmatmul: bad arguments");
  const QProduct job{&w, x, y, n, ldy};
  qmatmul_many(&job, 1);
}

void qmatmul_many(const QProduct* jobs, size_t count) {
  // Float products with several rows of x go to BLAS: one at a time on all threads when they are few, else
  // spread whole over the threads (many small experts: one BLAS call per thread at a time).
  std::vector<size_t> blas_jobs;
  for (size_t j = 0; j < count; ++j) {
    const QProduct& p = jobs[j];
    check(p.w != nullptr && !p.w->empty() && p.n >= 0 && (p.ldy == 0 || p.ldy >= p.w->rows), "qmatmul: bad arguments");
    if (uses_blas(p)) blas_jobs.push_back(j);
  }
  if (!blas_jobs.empty()) {
    auto run = [&](size_t j) {
      const QProduct& p = jobs[j];
      float_matmul(*p.w, p.x, p.n, p.y, p.ldy == 0 ? p.w->rows : p.ldy);
    };
    // Largest first, so that no big product starts last while the other threads idle.
    auto work = [&](size_t j) { return static_cast<double>(jobs[j].n) * static_cast<double>(jobs[j].w->bytes()); };
    std::stable_sort(blas_jobs.begin(), blas_jobs.end(), [&](size_t a, size_t b) { return work(a) > work(b); });
    if (blas_jobs.size() < 2 * static_cast<size_t>(omp_get_max_threads())) {
      for (size_t j : blas_jobs) run(j);
    } else {
#pragma omp parallel for schedule(dynamic, 1)
      for (size_t i = 0; i < blas_jobs.size(); ++i) run(blas_jobs[i]);
    }
  }
  // Each distinct input (x and the activation format its weight type reads) gets a slot in the 8-bit scratch.
  std::vector<QuantizedInput> inputs;
  std::vector<size_t> input_of(count, 0);
  size_t total = 0;
  int64_t quant_rows = 0;
  for (size_t j = 0; j < count; ++j) {
    const QProduct& p = jobs[j];
    if (!quant_is_block(p.w->type) || p.n == 0) continue;
    check(p.w->cols % 32 == 0, "qmatmul: {} columns is not a multiple of 32", p.w->cols);
    const ActFormat format = act_format(p.w->type);
    size_t i = 0;
    while (i < inputs.size() && (inputs[i].x != p.x || inputs[i].format != format)) ++i;
    if (i == inputs.size()) {
      inputs.push_back({p.x, format, p.n, p.w->cols, total});
      total += static_cast<size_t>(p.n * p.w->cols);
      quant_rows += p.n;
    }
    check(inputs[i].n == p.n && inputs[i].cols == p.w->cols, "qmatmul: products sharing an input differ in shape");
    input_of[j] = i;
  }
  // Tasks of up to 32 weight rows, in job order; cost = bytes read x rows of x (decoding is bound by bytes,
  // prefill by bytes times rows).
  constexpr int64_t kRows = 32;
  std::vector<Task> tasks;
  double cost = 0.0;
  for (size_t j = 0; j < count; ++j) {
    const QProduct& p = jobs[j];
    if (p.n == 0 || uses_blas(p)) continue;
    for (int64_t r0 = 0; r0 < p.w->rows; r0 += kRows) {
      const int64_t r1 = std::min(p.w->rows, r0 + kRows);
      cost += static_cast<double>((r1 - r0) * p.n) * static_cast<double>(p.w->row_bytes);
      tasks.push_back({j, r0, r1, cost});
    }
  }
  if (tasks.empty()) return;
  // Bound by arithmetic only when some product has more rows of x than one x-block: decode steps of a few
  // sequences (a server's slots) still stream their weights, and keep the contiguous per-thread runs.
  const bool batched = std::any_of(jobs, jobs + count, [](const QProduct& p) { return p.n > kXBlock; });
  t_xq.resize(total);
  t_xt.resize(total);
  t_xd.resize(total / 32 + 1);
  t_xsum.resize(total / 32 + 1);
  const Scratch scratch{t_xq.data(), t_xt.data(), t_xd.data(), t_xsum.data()};
  // Profiling: each thread's busy time, so the time threads spend waiting at the region's end (imbalance, fork and
  // join) can be reported as "barrier wait".
  const bool profiling = profile_table().enabled;
  std::vector<double> busy(profiling ? static_cast<size_t>(omp_get_max_threads()) : 0);
  const auto region_start = std::chrono::steady_clock::now();
#pragma omp parallel
  {
    // 1. Quantize every input row once (rows spread over the threads).
#pragma omp for schedule(static)
    for (int64_t row = 0; row < quant_rows; ++row) {
      size_t i = 0;
      int64_t first = 0;
      while (row >= first + inputs[i].n) first += inputs[i++].n;
      const QuantizedInput& in = inputs[i];
      const int64_t K = in.cols;
      const size_t off = in.offset + static_cast<size_t>((row - first) * K);
      quantize_act(in.format, in.x + (row - first) * K, scratch.xq + off, scratch.xd + off / 32, scratch.xs + off / 32,
                   K);
      qpack_act(scratch.xq + off, scratch.xt + off, K);
    }
    // 2. Tasks. Decoding (every product a few rows of x at most) is bound by memory: each thread takes one contiguous
    // run of tasks holding an equal share of the bytes, so the prefetchers follow long streams (a dynamic hand-out
    // measured 1.5x slower). Prefill is bound by arithmetic, each task's weight rows reused by every x-block from
    // cache: tasks are handed out one by one, so a thread slowed by anything (a busier core, a slower type) does not
    // hold the others at the barrier.
    const size_t nt = static_cast<size_t>(omp_get_num_threads()), tid = static_cast<size_t>(omp_get_thread_num());
    auto run = [&](size_t t) {
      const QProduct& job = jobs[tasks[t].job];
      if (quant_is_block(job.w->type))
        run_int_task(job, tasks[t].r0, tasks[t].r1, inputs[input_of[tasks[t].job]], scratch);
      else
        run_float_rows_task(job, tasks[t].r0, tasks[t].r1);
    };
    const auto thread_start = std::chrono::steady_clock::now();
    if (batched) {
#pragma omp for schedule(dynamic, 1) nowait
      for (size_t t = 0; t < tasks.size(); ++t) run(t);
    } else {
      auto first_task = [&](size_t thread) {
        const double share = cost * static_cast<double>(thread) / static_cast<double>(nt);
        return static_cast<size_t>(std::upper_bound(tasks.begin(), tasks.end(), share,
                                                    [](double v, const Task& t) { return v < t.end_cost; }) -
                                   tasks.begin());
      };
      const size_t lo = tid == 0 ? 0 : first_task(tid), hi = tid + 1 == nt ? tasks.size() : first_task(tid + 1);
      for (size_t t = lo; t < hi; ++t) run(t);
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
