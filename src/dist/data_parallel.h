// Data parallelism over an MPI communicator (model/parallel.h's DataParallel): batch statistics and gradients are
// summed over its ranks with MPI_Allreduce.
#pragma once
#include <utility>

#include "dist/comm.h"
#include "model/parallel.h"

namespace dsmoe::dist {

class MpiDataParallel final : public DataParallel {
 public:
  explicit MpiDataParallel(Comm comm) : comm_(std::move(comm)) {}
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }
  void barrier() const override { comm_.barrier(); }
  void sum(double* values, int64_t n) const override { comm_.allreduce_sum(values, n); }
  void sum_before(double* values, int64_t n) const override { comm_.exscan_sum(values, n); }
  void sum_gradients(float* grads, int64_t n) const override { comm_.allreduce_sum(grads, n); }
  const Comm& comm() const { return comm_; }

 private:
  Comm comm_;
};

}  // namespace dsmoe::dist
