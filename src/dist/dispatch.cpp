#include "dist/dispatch.h"

#include <cstring>

#include "core/error.h"

namespace dsmoe::dist {

namespace {
// Row offsets of the received buffer, source-major ([source][local expert]): src_offset[s * El + j].
std::vector<int64_t> source_major_offsets(const ExpertDispatch& x) {
  std::vector<int64_t> off(static_cast<size_t>(x.P * x.El) + 1, 0);
  for (int64_t i = 0; i < x.P * x.El; ++i) off[i + 1] = off[i] + x.recv_counts[i];
  return off;
}

// Copies every (source, expert) chunk between the source-major and the expert-major layouts.
template <typename Copy>
void for_each_chunk(const ExpertDispatch& x, Copy&& copy) {
  const std::vector<int64_t> src = source_major_offsets(x);
  for (int64_t j = 0; j < x.El; ++j) {
    int64_t at = x.local_offsets[j];
    for (int64_t s = 0; s < x.P; ++s) {
      const int64_t n = x.recv_counts[s * x.El + j];
      copy(src[s * x.El + j], at, n);
      at += n;
    }
  }
}
}  // namespace

ExpertDispatch dispatch_plan(const Comm& ep, const RoutingPlan& plan) {
  ExpertDispatch x;
  x.P = ep.size();
  x.E = plan.E;
  check(x.E % x.P == 0, "expert parallelism: {} routed experts do not split evenly over {} ranks", x.E, x.P);
  x.El = x.E / x.P;
  // Per destination rank, the counts of its experts' rows; the plan is sorted by expert, so each rank's rows are
  // one contiguous range.
  std::vector<int64_t> send_counts(static_cast<size_t>(x.E));
  x.send_rows.assign(static_cast<size_t>(x.P), 0);
  for (int64_t e = 0; e < x.E; ++e) {
    send_counts[e] = plan.rows_of(e);
    x.send_rows[e / x.El] += send_counts[e];
  }
  x.recv_counts.resize(static_cast<size_t>(x.E));
  ep.alltoall(send_counts.data(), x.El, x.recv_counts.data());
  x.recv_rows.assign(static_cast<size_t>(x.P), 0);
  x.local_offsets.assign(static_cast<size_t>(x.El) + 1, 0);
  for (int64_t s = 0; s < x.P; ++s)
    for (int64_t j = 0; j < x.El; ++j) {
      x.recv_rows[s] += x.recv_counts[s * x.El + j];
      x.local_offsets[j + 1] += x.recv_counts[s * x.El + j];
    }
  for (int64_t j = 0; j < x.El; ++j) x.local_offsets[j + 1] += x.local_offsets[j];
  return x;
}

void dispatch_rows(const Comm& ep, const ExpertDispatch& x, const float* rows, float* experts, int64_t d) {
  std::vector<float> received(static_cast<size_t>(x.received() * d));
  ep.alltoallv_rows(rows, x.send_rows, received.data(), x.recv_rows, d);
  for_each_chunk(x, [&](int64_t from, int64_t to, int64_t n) {
    std::memcpy(experts + to * d, received.data() + from * d, static_cast<size_t>(n * d) * sizeof(float));
  });
}

void combine_rows(const Comm& ep, const ExpertDispatch& x, const float* experts, float* rows, int64_t d) {
  std::vector<float> outgoing(static_cast<size_t>(x.received() * d));
  for_each_chunk(x, [&](int64_t to, int64_t from, int64_t n) {
    std::memcpy(outgoing.data() + to * d, experts + from * d, static_cast<size_t>(n * d) * sizeof(float));
  });
  ep.alltoallv_rows(outgoing.data(), x.recv_rows, rows, x.send_rows, d);
}

}  // namespace dsmoe::dist
