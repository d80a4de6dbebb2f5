// Data parallelism over an MPI communicator (model/parallel.h's DataParallel): batch statistics and gradients are
// summed over its ranks with MPI_Allreduce.
#pragma once
#include <memory>
#include <utility>

#include "dist/comm.h"
#include "model/parallel.h"

namespace dsmoe::dist {

class MpiDataParallel final : public DataParallel {
 public:
  explicit MpiDataParallel(Comm comm) : comm_(std::move(comm)) {}
  // Expert parallelism with sliced expert storage: `ep` = this rank's EP group, `edp` = the ranks holding the same
  // slice (one per EP group).
  void slice_experts(Comm ep, Comm edp) {
    ep_ = std::make_unique<Comm>(std::move(ep));
    edp_ = std::make_unique<Comm>(std::move(edp));
  }
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }
  void barrier() const override { comm_.barrier(); }
  void sum(double* values, int64_t n) const override { comm_.allreduce_sum(values, n); }
  void sum_before(double* values, int64_t n) const override { comm_.exscan_sum(values, n); }
  void sum_gradients(ParamSet& grads) const override;
  double expert_sq_norm(double local) const override {
    if (ep_ != nullptr) ep_->allreduce_sum(&local, 1);
    return local;
  }
  void gather_expert_slices(const float* local, int64_t n, float* whole) const override;
  bool experts_sliced() const override { return ep_ != nullptr; }
  const Comm& comm() const { return comm_; }

  // Gradient all-reduce traffic, counted as a ring all-reduce sends it: 2 (P - 1) / P times the payload bytes over a
  // group of P ranks (train/ep_plan.h's model), dense tensors and expert slices apart.
  struct Counters {
    double dense_bytes = 0, expert_bytes = 0;
    int64_t reductions = 0;
  };
  const Counters& counters() const { return counters_; }

 private:
  void count(bool expert, int64_t floats, int group) const;
  mutable Counters counters_;
  Comm comm_;
  std::unique_ptr<Comm> ep_, edp_;  // set by slice_experts
};

}  // namespace dsmoe::dist
