#include "dist/comm.h"

#include <algorithm>
#include <climits>
#include <vector>

#include "core/error.h"

namespace dsmoe::dist {

namespace {
void ok(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("MPI {} failed: {}", what, std::string(text, static_cast<size_t>(len)));
}

int as_int(int64_t v, const char* what) {
  check(v >= 0 && v <= INT_MAX, "{} = {} does not fit MPI's int counts", what, v);
  return static_cast<int>(v);
}
}  // namespace

Runtime::Runtime(int* argc, char*** argv) {
  int provided = 0;
  ok(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "init");
  check(provided >= MPI_THREAD_FUNNELED, "the MPI library does not support MPI_THREAD_FUNNELED");
  // Errors come back as codes (then a dsmoe::Error naming the call) instead of aborting inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

Runtime::~Runtime() { MPI_Finalize(); }

struct Comm::Owner {
  MPI_Comm comm;
  ~Owner() { MPI_Comm_free(&comm); }
};

Comm::Comm(MPI_Comm comm, bool owned) : comm_(comm) {
  ok(MPI_Comm_rank(comm, &rank_), "comm_rank");
  ok(MPI_Comm_size(comm, &size_), "comm_size");
  if (owned) owner_ = std::shared_ptr<Owner>(new Owner{comm});  // not make_shared: a temporary Owner would free it
}

Comm Comm::world() { return Comm(MPI_COMM_WORLD, false); }

Comm Comm::split(int color, int key) const {
  MPI_Comm out;
  ok(MPI_Comm_split(comm_, color, key, &out), "comm_split");
  MPI_Comm_set_errhandler(out, MPI_ERRORS_RETURN);
  return Comm(out, true);
}

void Comm::barrier() const { ok(MPI_Barrier(comm_), "barrier"); }

void Comm::allreduce_sum(float* data, int64_t n) const {
  for (int64_t i = 0; i < n; i += INT_MAX) {
    const int m = static_cast<int>(std::min<int64_t>(INT_MAX, n - i));
    ok(MPI_Allreduce(MPI_IN_PLACE, data + i, m, MPI_FLOAT, MPI_SUM, comm_), "allreduce");
  }
}

void Comm::allreduce_sum(double* data, int64_t n) const {
  for (int64_t i = 0; i < n; i += INT_MAX) {
    const int m = static_cast<int>(std::min<int64_t>(INT_MAX, n - i));
    ok(MPI_Allreduce(MPI_IN_PLACE, data + i, m, MPI_DOUBLE, MPI_SUM, comm_), "allreduce");
  }
}

void Comm::exscan_sum(double* data, int64_t n) const {
  const int m = as_int(n, "exscan count");
  std::vector<double> out(static_cast<size_t>(n), 0.0);
  ok(MPI_Exscan(data, out.data(), m, MPI_DOUBLE, MPI_SUM, comm_), "exscan");
  if (rank_ == 0) std::fill(out.begin(), out.end(), 0.0);  // MPI leaves rank 0's result undefined
  std::copy(out.begin(), out.end(), data);
}

void Comm::allgather(const int64_t* send, int64_t n, int64_t* recv) const {
  const int m = as_int(n, "allgather count");
  ok(MPI_Allgather(send, m, MPI_INT64_T, recv, m, MPI_INT64_T, comm_), "allgather");
}

void Comm::gather_to_first(const float* send, int64_t n, float* recv) const {
  const int m = as_int(n, "gather count");
  ok(MPI_Gather(send, m, MPI_FLOAT, recv, m, MPI_FLOAT, 0, comm_), "gather");
}

void Comm::alltoall(const int64_t* send, int64_t n, int64_t* recv) const {
  const int m = as_int(n, "alltoall count");
  ok(MPI_Alltoall(send, m, MPI_INT64_T, recv, m, MPI_INT64_T, comm_), "alltoall");
}

void Comm::alltoallv_rows(const float* send, const std::vector<int64_t>& send_rows, float* recv,
                          const std::vector<int64_t>& recv_rows, int64_t d) const {
  check(static_cast<int>(send_rows.size()) == size_ && static_cast<int>(recv_rows.size()) == size_,
        "alltoallv: {} send and {} receive splits for {} ranks", send_rows.size(), recv_rows.size(), size_);
  // Counts and displacements in rows of d floats: a row datatype keeps them far below INT_MAX.
  MPI_Datatype row;
  ok(MPI_Type_contiguous(as_int(d, "row width"), MPI_FLOAT, &row), "type_contiguous");
  ok(MPI_Type_commit(&row), "type_commit");
  std::vector<int> sc(size_), sd(size_), rc(size_), rd(size_);
  int64_t so = 0, ro = 0;
  for (int r = 0; r < size_; ++r) {
    sc[r] = as_int(send_rows[r], "rows sent to one rank");
    rc[r] = as_int(recv_rows[r], "rows received from one rank");
    sd[r] = as_int(so, "send displacement");
    rd[r] = as_int(ro, "receive displacement");
    so += send_rows[r];
    ro += recv_rows[r];
  }
  const int rc_all = MPI_Alltoallv(send, sc.data(), sd.data(), row, recv, rc.data(), rd.data(), row, comm_);
  MPI_Type_free(&row);
  ok(rc_all, "alltoallv");
}

}  // namespace dsmoe::dist
