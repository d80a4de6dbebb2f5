// MPI for the CLI: `mpirun -np W dsmoe train ...` runs W data-parallel ranks. MPI starts only when the process was
// launched by mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE), so a plain `dsmoe ...` is one process as before.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "model/parallel.h"

namespace dsmoe::cli {

// Call first thing in main; MPI (when started) is finalised at exit. Ranks other than 0 print nothing on stdout.
void parallel_init(int* argc, char*** argv);
// The world's data parallelism when it has more than one rank, else nullptr.
const DataParallel* data_parallel();
// `--ep E`: a factory of the expert exchange over EP groups of E consecutive ranks (called once the model's routed
// expert count is known); empty for E = 1. Refuses E that does not divide the number of ranks.
std::function<const ExpertExchange*(int64_t n_routed_experts)> expert_parallel(int64_t ep);
// Refuses, with a one-line error, a command that does not run across ranks when there are several.
void require_single_process(const std::string& command);

}  // namespace dsmoe::cli
