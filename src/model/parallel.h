// What a rank's forward and backward need from the other ranks of a data-parallel batch, so that its losses and
// gradients are its exact share of one process's over the global batch: sums of batch statistics (the number of
// counted targets, the balance losses' per-expert counts and mean gate probabilities, per-sequence loss sums).
// The model knows no transport: dist/ implements this over MPI; without one (nullptr) the local batch is the
// global batch.
#pragma once
#include <cstdint>
#include <vector>

namespace dsmoe {

struct ParamSet;

struct BatchReduce {
  virtual ~BatchReduce() = default;
  // Element-wise sums over every rank's share of the batch, in place. Every rank calls it in the same order (the
  // model's layer order), with the same n.
  virtual void sum(double* values, int64_t n) const = 0;
  // values <- the sum over the ranks before this one (their tokens come first in the batch); zeros on rank 0.
  virtual void sum_before(double* values, int64_t n) const = 0;
};

// The trainer's side: the batch statistics above, plus the sum of every rank's gradient shares after backward.
struct DataParallel : BatchReduce {
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void barrier() const = 0;
  // grads <- the sum over the ranks holding each tensor, in place, after every rank's backward over its share of the
  // batch: dense tensors over all ranks; a slice of routed experts (expert parallelism) over the ranks holding the
  // same slice, since the other ranks of its EP group sent their rows' gradients to it already.
  virtual void sum_gradients(ParamSet& grads) const = 0;
  // The routed experts' part of the squared gradient norm: summed over the EP group when each rank holds a slice
  // (so every expert counts once), unchanged when every rank holds every expert.
  virtual double expert_sq_norm(double local) const = 0;
  // Sliced experts: every rank of the EP group sends its slice (n floats) and the group's first rank receives the
  // whole tensor in expert order (checkpoints are written whole). Without slices, a copy.
  virtual void gather_expert_slices(const float* local, int64_t n, float* whole) const = 0;
  virtual bool experts_sliced() const = 0;
};

// Expert parallelism: the routed experts of every MoE layer are split over the P ranks of an expert-parallel (EP)
// group, contiguously (rank q computes experts [q El, (q+1) El), El = E / P); each rank routes its own tokens and
// sends each row to the rank that computes its expert (dropless, Megatron-Core's all-to-all dispatcher).
//
// How the rows of one exchange are laid out. Dimension legend: P = EP ranks, El = experts per rank, A = this rank's
// routed rows (plan order, sorted by expert), R = rows this rank receives.
struct ExpertRows {
  int64_t P = 1, E = 0, El = 0;
  std::vector<int64_t> send_rows;      // [P] plan rows for each rank (contiguous in plan order)
  std::vector<int64_t> recv_counts;    // [P, El] rows from source s for local expert j
  std::vector<int64_t> recv_rows;      // [P] rows from each source
  std::vector<int64_t> local_offsets;  // [El + 1] rows of local expert j in the received, expert-major layout
  int64_t received() const { return local_offsets.empty() ? 0 : local_offsets.back(); }
  int64_t rows_of(int64_t j) const { return local_offsets[j + 1] - local_offsets[j]; }
};

struct ExpertExchange {
  virtual ~ExpertExchange() = default;
  virtual int64_t first_expert() const = 0;  // this rank computes experts [first, first + count)
  virtual int64_t expert_count() const = 0;
  // From this rank's rows per expert [E] (every rank calls it, once per MoE layer forward, in layer order).
  virtual ExpertRows exchange_counts(const int64_t* rows_per_expert, int64_t E) const = 0;
  // rows [A, d] in plan order -> received [R, d], expert-major ([local expert][source rank]).
  virtual void dispatch(const ExpertRows& x, const float* rows, float* received, int64_t d) const = 0;
  // The inverse: received-layout rows [R, d] -> rows [A, d] in plan order.
  virtual void combine(const ExpertRows& x, const float* received, float* rows, int64_t d) const = 0;
};

// What the model's forward and backward are told about the other ranks (both nullptr: one process).
struct Parallelism {
  const BatchReduce* reduce = nullptr;
  const ExpertExchange* experts = nullptr;
};

// values <- the sum over ranks when `reduce` is set (else unchanged: one process).
inline void batch_sum(const BatchReduce* reduce, double* values, int64_t n) {
  if (reduce != nullptr) reduce->sum(values, n);
}

}  // namespace dsmoe
