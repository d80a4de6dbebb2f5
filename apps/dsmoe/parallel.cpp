#include "parallel.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "core/error.h"
#if defined(DSMOE_HAVE_MPI)
#include "dist/comm.h"
#include "dist/data_parallel.h"
#include "dist/dispatch.h"
#endif

namespace dsmoe::cli {

namespace {
#if defined(DSMOE_HAVE_MPI)
std::unique_ptr<dist::Runtime> g_runtime;
std::unique_ptr<dist::MpiDataParallel> g_data_parallel;
std::unique_ptr<dist::MpiExpertExchange> g_experts;
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
  std::atexit([] {
    g_experts.reset();
    g_data_parallel.reset();
    g_runtime.reset();
  });
  dist::Comm world = dist::Comm::world();
  if (world.size() > 1) {
    if (world.rank() != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) std::perror("stdout");
    g_data_parallel = std::make_unique<dist::MpiDataParallel>(std::move(world));
  }
#else
  (void)argc;
  (void)argv;
  check(launched_world_size() <= 1,
        "this dsmoe was built without Open MPI (apt-get install libopenmpi-dev, then "
        "rebuild): it cannot run as {} ranks",
        launched_world_size());
#endif
}

const DataParallel* data_parallel() {
#if defined(DSMOE_HAVE_MPI)
  return g_data_parallel.get();
#else
  return nullptr;
#endif
}

std::function<const ExpertExchange*(int64_t)> expert_parallel(int64_t ep) {
  if (ep == 1) return {};
  const int64_t world = data_parallel() == nullptr ? 1 : data_parallel()->size();
  check(world > 1 && world % ep == 0, "--ep {} needs mpirun with a multiple of {} ranks (this is {} process{})", ep, ep,
        world, world == 1 ? "" : "es");
#if defined(DSMOE_HAVE_MPI)
  return [ep](int64_t n_routed) -> const ExpertExchange* {
    check(n_routed > 0, "--ep {}: the model has no routed experts to split", ep);
    dist::ExpertGroups groups = dist::expert_groups(g_data_parallel->comm(), static_cast<int>(ep));
    g_experts = std::make_unique<dist::MpiExpertExchange>(groups.ep, n_routed);
    // Each rank holds only its slice of the experts; a slice's gradients are summed over the ranks holding it.
    g_data_parallel->slice_experts(std::move(groups.ep), std::move(groups.edp));
    return g_experts.get();
  };
#else
  return {};
#endif
}

void require_single_process(const std::string& command) {
  check(data_parallel() == nullptr,
        "`dsmoe {}` runs in one process; only `train`, `sft` and `demo` run across MPI "
        "ranks",
        command);
}

}  // namespace dsmoe::cli
