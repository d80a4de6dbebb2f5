// What a rank's forward and backward need from the other ranks of a data-parallel batch, so that its losses and
// gradients are its exact share of one process's over the global batch: sums of batch statistics (the number of
// counted targets, the balance losses' per-expert counts and mean gate probabilities, per-sequence loss sums).
// The model knows no transport: dist/ implements this over MPI; without one (nullptr) the local batch is the
// global batch.
#pragma once
#include <cstdint>

namespace dsmoe {

struct BatchReduce {
  virtual ~BatchReduce() = default;
  // Element-wise sums over every rank's share of the batch, in place. Every rank calls it in the same order (the
  // model's layer order), with the same n.
  virtual void sum(double* values, int64_t n) const = 0;
};

// The trainer's side: the batch statistics above, plus the sum of every rank's gradient shares after backward.
struct DataParallel : BatchReduce {
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void barrier() const = 0;
  // grads [n] <- the sum over ranks, in place (after every rank's backward over its share of the batch).
  virtual void sum_gradients(float* grads, int64_t n) const = 0;
};

// values <- the sum over ranks when `reduce` is set (else unchanged: one process).
inline void batch_sum(const BatchReduce* reduce, double* values, int64_t n) {
  if (reduce != nullptr) reduce->sum(values, n);
}

}  // namespace dsmoe
