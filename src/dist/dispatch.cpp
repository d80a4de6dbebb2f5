#include "dist/dispatch.h"

#include <cstring>
#include <utility>

#include "core/error.h"
#include "core/profile.h"

namespace dsmoe::dist {

namespace {
// Row offsets of the received buffer, source-major ([source][local expert]): src_offset[s * El + j].
std::vector<int64_t> source_major_offsets(const ExpertRows& x) {
  std::vector<int64_t> off(static_cast<size_t>(x.P * x.El) + 1, 0);
  for (int64_t i = 0; i < x.P * x.El; ++i) off[i + 1] = off[i] + x.recv_counts[i];
  return off;
}

// Copies every (source, expert) chunk between the source-major and the expert-major layouts.
template <typename Copy>
void for_each_chunk(const ExpertRows& x, Copy&& copy) {
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

ExpertRows dispatch_plan(const Comm& ep, const int64_t* rows_per_expert, int64_t E) {
  ExpertRows x;
  x.P = ep.size();
  x.E = E;
  check(x.E % x.P == 0, "expert parallelism: {} routed experts do not split evenly over {} ranks", x.E, x.P);
  x.El = x.E / x.P;
  // Per destination rank, the counts of its experts' rows; the plan is sorted by expert, so each rank's rows are
  // one contiguous range.
  std::vector<int64_t> send_counts(rows_per_expert, rows_per_expert + E);
  x.send_rows.assign(static_cast<size_t>(x.P), 0);
  for (int64_t e = 0; e < x.E; ++e) x.send_rows[e / x.El] += send_counts[e];
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

void dispatch_rows(const Comm& ep, const ExpertRows& x, const float* rows, float* experts, int64_t d) {
  std::vector<float> received(static_cast<size_t>(x.received() * d));
  {
    PROFILE_SCOPE("ep.alltoall");
    ep.alltoallv_rows(rows, x.send_rows, received.data(), x.recv_rows, d);
  }
  PROFILE_SCOPE("ep.permute");
  for_each_chunk(x, [&](int64_t from, int64_t to, int64_t n) {
    std::memcpy(experts + to * d, received.data() + from * d, static_cast<size_t>(n * d) * sizeof(float));
  });
}

void combine_rows(const Comm& ep, const ExpertRows& x, const float* experts, float* rows, int64_t d) {
  std::vector<float> outgoing(static_cast<size_t>(x.received() * d));
  {
    PROFILE_SCOPE("ep.permute");
    for_each_chunk(x, [&](int64_t to, int64_t from, int64_t n) {
      std::memcpy(outgoing.data() + to * d, experts + from * d, static_cast<size_t>(n * d) * sizeof(float));
    });
  }
  PROFILE_SCOPE("ep.alltoall");
  ep.alltoallv_rows(outgoing.data(), x.recv_rows, rows, x.send_rows, d);
}

ExpertGroups expert_groups(const Comm& world, int ep_size) {
  check(ep_size >= 1 && world.size() % ep_size == 0, "expert parallelism: {} ranks do not form groups of {}",
        world.size(), ep_size);
  const int r = world.rank();
  return {world.split(r / ep_size, r % ep_size), world.split(r % ep_size, r / ep_size)};
}

MpiExpertExchange::MpiExpertExchange(Comm ep, int64_t n_routed_experts) : ep_(std::move(ep)) {
  check(n_routed_experts % ep_.size() == 0, "--ep {}: the model's {} routed experts do not split evenly over {} ranks",
        ep_.size(), n_routed_experts, ep_.size());
  count_ = n_routed_experts / ep_.size();
  first_ = ep_.rank() * count_;
}

ExpertRows MpiExpertExchange::exchange_counts(const int64_t* rows_per_expert, int64_t E) const {
  PROFILE_SCOPE("ep.alltoall");
  return dispatch_plan(ep_, rows_per_expert, E);
}

void MpiExpertExchange::count(const std::vector<int64_t>& sent_rows, int64_t d) const {
  for (int64_t r = 0; r < static_cast<int64_t>(sent_rows.size()); ++r)
    if (r != ep_.rank()) counters_.alltoall_bytes += sent_rows[r] * d * static_cast<int64_t>(sizeof(float));
  counters_.exchanges += 1;
}

void MpiExpertExchange::dispatch(const ExpertRows& x, const float* rows, float* received, int64_t d) const {
  count(x.send_rows, d);
  dispatch_rows(ep_, x, rows, received, d);
}

void MpiExpertExchange::combine(const ExpertRows& x, const float* received, float* rows, int64_t d) const {
  count(x.recv_rows, d);
  combine_rows(ep_, x, received, rows, d);
}

}  // namespace dsmoe::dist
