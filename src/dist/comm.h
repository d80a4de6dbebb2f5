// Process groups over MPI (Open MPI from Debian): a thin, checked layer over the collectives the expert-parallel
// trainer needs. Counts are int64 at this interface and sent in rows of a contiguous row datatype, so no count
// reaches MPI's `int` limit unnoticed (Open MPI 4.1 has no large-count API).
//
// Dimension legend: P = ranks in the communicator, d = elements per row.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include <mpi.h>

namespace dsmoe::dist {

// MPI_Init_thread (funneled: only the thread that calls MPI uses it; OpenMP threads compute) / MPI_Finalize.
class Runtime {
 public:
  Runtime(int* argc, char*** argv);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
};

class Comm {
 public:
  static Comm world();
  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm handle() const { return comm_; }
  // Ranks with the same colour form a group, ordered by key.
  Comm split(int color, int key) const;

  void barrier() const;
  void allreduce_sum(float* data, int64_t n) const;   // in place
  void allreduce_sum(double* data, int64_t n) const;  // in place
  void exscan_sum(double* data, int64_t n) const;     // in place: the sum over lower ranks (zeros on rank 0)
  void allgather(const int64_t* send, int64_t n, int64_t* recv) const;    // recv [P, n]
  void gather_to_first(const float* send, int64_t n, float* recv) const;  // recv [P, n] on rank 0
  // send [P, n] (n values for each rank) -> recv [P, n] (n values from each rank).
  void alltoall(const int64_t* send, int64_t n, int64_t* recv) const;
  // Rows of d floats: send_rows[r] consecutive rows of `send` go to rank r (in rank order), recv_rows[s] rows from
  // rank s land consecutively in `recv`. Every rank takes part, also with zero rows both ways.
  void alltoallv_rows(const float* send, const std::vector<int64_t>& send_rows, float* recv,
                      const std::vector<int64_t>& recv_rows, int64_t d) const;

 private:
  Comm(MPI_Comm comm, bool owned);
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  struct Owner;  // split communicators are freed with the last copy
  std::shared_ptr<Owner> owner_;
};

}  // namespace dsmoe::dist
