#include "parallel.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "core/error.h"
#if defined(DSMOE_HAVE_MPI)
#include "dist/comm.h"
#include "dist/data_parallel.h"
#endif

namespace dsmoe::cli {

namespace {
#if defined(DSMOE_HAVE_MPI)
std::unique_ptr<dist::Runtime> g_runtime;
std::unique_ptr<dist::MpiDataParallel> g_data_parallel;
#endif

int launched_world_size() {
  const char* w = std::getenv("OMPI_COMM_WORLD_SIZE");
  return w != nullptr ? std::atoi(w) : 0;
}
}  // namespace

void parallel_init(int* argc, char*** argv) {
  if (launched_world_size() == 0) return;  // not under mpirun: one process, no MPI
#if defined(DSMOE_HAVE_MPI)
  g_runtime = std::make_unique<dist::Runtime>(argc, argv);
  std::atexit([] { g_data_parallel.reset(); g_runtime.reset(); });
  dist::Comm world = dist::Comm::world();
  if (world.size() > 1) {
    if (world.rank() != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) std::perror("stdout");
    g_data_parallel = std::make_unique<dist::MpiDataParallel>(std::move(world));
  }
#else
  (void)argc;
  (void)argv;
  check(launched_world_size() <= 1, "this dsmoe was built without Open MPI (apt-get install libopenmpi-dev, then "
        "rebuild): it cannot run as {} ranks", launched_world_size());
#endif
}

const DataParallel* data_parallel() {
#if defined(DSMOE_HAVE_MPI)
  return g_data_parallel.get();
#else
  return nullptr;
#endif
}

void require_single_process(const std::string& command) {
  check(data_parallel() == nullptr, "`dsmoe {}` runs in one process; only `train`, `sft` and `demo` run across MPI "
        "ranks", command);
}

}  // namespace dsmoe::cli
