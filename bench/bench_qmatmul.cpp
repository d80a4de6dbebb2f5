// Ceilings and kernels of decoding: memory read bandwidth of this machine, and the bandwidth each qmatmul path
// reaches on one matrix-vector product (n = 1) and small batches, per weight type.
//   bench_qmatmul [--rows R] [--cols C] [--threads T]
//   bench_qmatmul --kernels [--cols C] [--mb M]: each block type's integer dot kernel (8-bit activations) on one
//     thread, per path (scalar, AVX2, fastest = AVX512-VNNI where the CPU has it), over a ~M MB matrix: GB/s of
//     weights streamed (e.g. --cols 2048 --mb 100).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <omp.h>
#include <CLI/CLI.hpp>

#include "core/membw.h"
#include "core/qdot.h"
#include "core/qpack.h"
#include "core/quant.h"
#include "core/threads.h"
#include "infer/qmatmul.h"

using namespace dsmoe;

namespace {
double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// One thread, one kernel per row over a matrix of ~mb MB (beyond the caches): the best of a few passes, timed in
// this thread's CPU time (so that other processes on a shared machine do not count; memory stalls do).
void bench_kernels(int64_t cols, int64_t mb) {
  using Kernel = float (*)(QuantType, const uint8_t*, const int8_t*, const float*, const int32_t*, int64_t);
  std::vector<float> x(static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i) x[i] = static_cast<float>((i * 7919) % 255) / 127.0f - 1.0f;
  std::vector<int8_t> xq(cols);
  std::vector<float> xd(cols / 32);
  std::vector<int32_t> xsum(cols / 32);
  quantize_act_q8(x.data(), xq.data(), xd.data(), xsum.data(), cols);
  fmt::print("integer dot kernels, 1 thread, rows of {} weights, ~{} MB per matrix (this CPU: {})\n", cols, mb,
             qdot_q8act_path());
  for (QuantType t :
       {QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::IQ4_NL,
        QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K}) {
    if (cols % quant_block_size(t) != 0) continue;
    const size_t row_bytes = quant_row_bytes(t, cols);
    const int64_t rows = std::max<int64_t>(1, mb * 1000000 / static_cast<int64_t>(row_bytes));
    // 64 distinct quantized rows, repeated (quantizing 100 MB of K-quants takes long).
    const int64_t distinct = std::min<int64_t>(64, rows);
    std::vector<float> w(static_cast<size_t>(cols));
    std::vector<uint8_t> q(row_bytes * rows);
    for (int64_t r = 0; r < distinct; ++r) {
      for (int64_t i = 0; i < cols; ++i)
        w[i] = static_cast<float>(((r * cols + i) * 2654435761u) % 1000) / 1000.0f - 0.5f;
      quantize_row(t, w.data(), q.data() + r * row_bytes, cols);
    }
    for (int64_t r = distinct; r < rows; ++r)
      std::copy_n(q.data() + (r % distinct) * row_bytes, row_bytes, q.data() + r * row_bytes);
    const bool own = t == QuantType::Q8_0 || t == QuantType::Q4_0;  // quant.cpp's kernels
    const std::pair<const char*, Kernel> paths[] = {{"scalar", own ? quant_dot_q8act_scalar : qdot_q8act_scalar},
                                                    {"AVX2", own ? quant_dot_q8act_avx2 : qdot_q8act_avx2},
                                                    {"fastest", own ? quant_dot_q8act : qdot_q8act}};
    std::string line = fmt::format("{:6} {:5.1f} MB:", quant_type_name(t), q.size() / 1e6);
    for (const auto& [name, kernel] : paths) {
      double best = 1e30;
      float sink = 0;
      for (int rep = 0; rep < (name[0] == 's' ? 2 : 6); ++rep) {
        const double t0 = thread_cpu_seconds();
        for (int64_t r = 0; r < rows; ++r)
          sink += kernel(t, q.data() + r * row_bytes, xq.data(), xd.data(), xsum.data(), cols);
        best = std::min(best, thread_cpu_seconds() - t0);
      }
      line += fmt::format("  {} {:6.1f} GB/s", name, q.size() / best / 1e9);
      if (sink == 12345.0f) line += " ";  // keeps the results live
    }
    fmt::print("{}\n", line);
  }
}
// Prefill of one expert: an [rows x cols] matrix (cache-resident after the first pass) against nx rows of x on
// one thread, as the engine runs each expert's products: GFLOP/s (2 * rows * cols * nx per product) per type and nx,
// beside OpenBLAS sgemm on the same f32 matrix (the float ceiling the dequantize path reaches at best).
void bench_prefill(int64_t rows, int64_t cols) {
  set_num_threads(1);
  std::vector<float> w(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(cols * 512)),
      y(static_cast<size_t>(rows * 512));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
  fmt::print("expert prefill, 1 thread, W [{} x {}] against nx rows: GFLOP/s\n", rows, cols);
  for (QuantType t :
       {QuantType::F32, QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_K, QuantType::Q5_0, QuantType::Q6_K}) {
    if (cols % quant_block_size(t) != 0) continue;
    const size_t rb = quant_row_bytes(t, cols);
    std::vector<uint8_t> stored(rb * rows), packed(rb * rows);
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, w.data() + r * cols, stored.data() + r * rb, cols);
    QMatrix m = QMatrix::view(t, stored.data(), rows, cols);
    if (qpack_supported(t)) {
      for (int64_t r = 0; r < rows; ++r) qpack_row(t, stored.data() + r * rb, packed.data() + r * rb, cols);
      m = QMatrix::view(t, packed.data(), rows, cols);
      m.packed = true;
    }
    std::string line = fmt::format("{:6}{}", quant_type_name(t), m.packed ? " packed" : "       ");
    for (int64_t n : {1, 3, 8, 12, 16, 48, 512}) {
      qmatmul(m, x.data(), n, y.data());
      double best = 1e30;
      for (int rep = 0; rep < 5; ++rep) {
        const double t0 = thread_cpu_seconds();
        qmatmul(m, x.data(), n, y.data());
        best = std::min(best, thread_cpu_seconds() - t0);
      }
      line += fmt::format("  n={} {:6.1f}", n, 2.0 * rows * cols * n / best / 1e9);
    }
    fmt::print("{}\n", line);
  }
}
// A routed-expert batch as MoE prefill runs it: E expert matrices [rows x cols] (beyond the caches), expert e with
// a given number of rows of x, all in one qmatmul_many on every thread: wall-clock GFLOP/s.
void bench_expert_batch(int64_t rows, int64_t cols, int64_t experts, QuantType t) {
  const size_t rb = quant_row_bytes(t, cols);
  std::vector<float> wrow(static_cast<size_t>(cols));
  std::vector<uint8_t> stored(rb), all(rb * rows * experts);
  for (int64_t r = 0; r < rows * experts; ++r) {
    for (int64_t i = 0; i < cols; ++i)
      wrow[i] = static_cast<float>(((r * 31 + i) * 2654435761u) % 1000) / 1000.0f - 0.5f;
    quantize_row(t, wrow.data(), stored.data(), cols);
    if (qpack_supported(t))
      qpack_row(t, stored.data(), all.data() + r * rb, cols);
    else
      std::copy(stored.begin(), stored.end(), all.begin() + r * rb);
  }
  std::vector<QMatrix> mats;
  for (int64_t e = 0; e < experts; ++e) {
    mats.push_back(QMatrix::view(t, all.data() + e * rows * rb, rows, cols));
    mats.back().packed = qpack_supported(t);
  }
  fmt::print("routed-expert batch, {} threads, {} x W [{} x {}] {}: wall GFLOP/s\n", num_threads(), experts, rows, cols,
             quant_type_name(t));
  for (int64_t per : {1, 12, 48}) {
    // Skewed like a real router: expert e gets per * (0.25 .. 1.75) rows.
    std::vector<int64_t> n(experts);
    int64_t total = 0;
    for (int64_t e = 0; e < experts; ++e) total += n[e] = std::max<int64_t>(1, per * (1 + 6 * (e % 7)) / 10);
    std::vector<float> x(static_cast<size_t>(total * cols)), y(static_cast<size_t>(total * rows));
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 13) - 6.0f;
    std::vector<QProduct> jobs;
    int64_t off = 0;
    for (int64_t e = 0; e < experts; ++e) {
      jobs.push_back({&mats[e], x.data() + off * cols, y.data() + off * rows, n[e]});
      off += n[e];
    }
    double best = 1e30;
    for (int rep = 0; rep < 4; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      qmatmul_many(jobs.data(), jobs.size());
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    fmt::print("  ~{:3} rows per expert ({} in all): {:7.2f} ms  {:6.1f} GFLOP/s\n", per, total, best * 1e3,
               2.0 * rows * cols * total / best / 1e9);
  }
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qmatmul / bandwidth benchmark"};
  int64_t rows = 102400, cols = 1024;
  int threads = 0;
  bool bandwidth_only = false, kernels = false, prefill = false, experts = false;
  int64_t kernel_mb = 100;
  app.add_flag("--bandwidth-only", bandwidth_only, "print the memory read bandwidth (GB/s) and stop");
  app.add_flag("--kernels", kernels, "time each block type's integer dot kernel per path on one thread, and stop");
  app.add_flag(
      "--prefill", prefill,
      "time one expert's products (--rows x --cols, default 1408 x 2048) against 1..48 rows on one thread, and stop");
  app.add_flag("--experts", experts,
               "time a batch of 64 expert products (--rows x --cols, default 1408 x 2048) with skewed rows per expert "
               "on --threads, and stop");
  app.add_option("--mb", kernel_mb, "--kernels: matrix size in MB");
  app.add_option("--rows", rows);
  app.add_option("--cols", cols);
  app.add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) set_num_threads(threads);
  if (experts) {
    const bool sized = app.count("--rows") > 0;
    for (QuantType t : {QuantType::Q4_0, QuantType::Q4_K})
      bench_expert_batch(sized ? rows : 1408, app.count("--cols") > 0 ? cols : 2048, 64, t);
    return 0;
  }
  if (prefill) {
    const bool sized = app.count("--rows") > 0;
    bench_prefill(sized ? rows : 1408, app.count("--cols") > 0 ? cols : 2048);
    return 0;
  }
  if (kernels) {
    bench_kernels(cols, kernel_mb);
    return 0;
  }
  if (bandwidth_only) {
    fmt::print("{:.1f}\n", memory_read_bandwidth_gbs());
    return 0;
  }
  fmt::print("threads {}; memory read bandwidth {:.1f} GB/s\n", num_threads(), memory_read_bandwidth_gbs());
  std::vector<float> w(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(cols * 8)),
      y(static_cast<size_t>(rows * 8));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
  for (QuantType t : {QuantType::F32, QuantType::F16, QuantType::BF16, QuantType::Q8_0, QuantType::Q4_0}) {
    std::vector<uint8_t> q(quant_row_bytes(t, cols) * rows);
    for (int64_t r = 0; r < rows; ++r)
      quantize_row(t, w.data() + r * cols, q.data() + r * quant_row_bytes(t, cols), cols);
    // Q8_0 and Q4_0 also in the packed form the engine keeps them in (core/qpack.h).
    std::vector<uint8_t> packed(qpack_supported(t) ? q.size() : 0);
    for (int64_t r = 0; r < rows && qpack_supported(t); ++r)
      qpack_row(t, q.data() + r * quant_row_bytes(t, cols), packed.data() + r * quant_row_bytes(t, cols), cols);
    for (bool pack : {false, true}) {
      if (pack && packed.empty()) continue;
      QMatrix m = QMatrix::view(t, pack ? packed.data() : q.data(), rows, cols);
      m.packed = pack;
      for (int64_t n : {1, 2, 4}) {
        qmatmul(m, x.data(), n, y.data());
        double best = 1e30;
        for (int rep = 0; rep < 10; ++rep) {
          const auto t0 = std::chrono::steady_clock::now();
          qmatmul(m, x.data(), n, y.data());
          best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        fmt::print("{:5}{} [{} x {}] n={}: {:8.3f} ms  {:6.1f} GB/s of weights\n", quant_type_name(t),
                   pack ? " packed" : "", rows, cols, n, best * 1e3, m.bytes() / best / 1e9);
      }
    }
  }
  return 0;
}
