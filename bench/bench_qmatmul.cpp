// Ceilings and kernels of decoding: memory read bandwidth of this machine, and the bandwidth each qmatmul path
// reaches on one matrix-vector product (n = 1) and small batches, per weight type.
//   bench_qmatmul [--rows R] [--cols C] [--threads T]
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <omp.h>

#include "core/quant.h"
#include "core/threads.h"
#include "core/membw.h"
#include "infer/qmatmul.h"

using namespace dsmoe;

int main(int argc, char** argv) {
  CLI::App app{"qmatmul / bandwidth benchmark"};
  int64_t rows = 102400, cols = 1024;
  int threads = 0;
  bool bandwidth_only = false;
  app.add_flag("--bandwidth-only", bandwidth_only, "print the memory read bandwidth (GB/s) and stop");
  app.add_option("--rows", rows);
  app.add_option("--cols", cols);
  app.add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) set_num_threads(threads);
  if (bandwidth_only) {
    fmt::print("{:.1f}\n", memory_read_bandwidth_gbs());
    return 0;
  }
  fmt::print("threads {}; memory read bandwidth {:.1f} GB/s\n", num_threads(), memory_read_bandwidth_gbs());
  std::vector<float> w(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(cols * 8)), y(static_cast<size_t>(rows * 8));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
  for (QuantType t : {QuantType::F32, QuantType::F16, QuantType::BF16, QuantType::Q8_0, QuantType::Q4_0}) {
    std::vector<uint8_t> q(quant_row_bytes(t, cols) * rows);
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, w.data() + r * cols, q.data() + r * quant_row_bytes(t, cols), cols);
    const QMatrix m = QMatrix::view(t, q.data(), rows, cols);
    for (int64_t n : {1, 2, 4}) {
      qmatmul(m, x.data(), n, y.data());
      double best = 1e30;
      for (int rep = 0; rep < 10; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        qmatmul(m, x.data(), n, y.data());
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      fmt::print("{:5} [{} x {}] n={}: {:8.3f} ms  {:6.1f} GB/s of weights\n", quant_type_name(t), rows, cols, n,
                 best * 1e3, m.bytes() / best / 1e9);
    }
  }
  return 0;
}
