// Expert-parallel dispatch under mpiexec (np 1, 2, 4; ctest runs each): dispatch then combine returns the plan's
// rows byte for byte; every received row sits in the block of the expert it was routed to, in source-rank order;
// the rows per local expert equal what one process routing every rank's tokens would give. Scenarios: random
// routing with uneven token counts and one rank without tokens, every token to expert 0 (every rank sends to rank 0
// only), every token to the last rank's experts. Exit status 0 only when every rank passed.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "dist/dispatch.h"
#include "model/routing.h"

using namespace dsmoe;

namespace {

constexpr int64_t kE = 8, kK = 2, kD = 6;

enum class Scenario { random, all_to_expert0, all_to_last_rank };

// Tokens of `rank` in a world of `world` ranks: deterministic, so every rank can rebuild every other rank's.
int64_t tokens_of(int rank, int world) { return world > 1 && rank == 1 ? 0 : 5 + 7 * rank; }

std::vector<float> probs_of(Scenario sc, int rank, int world) {
  const int64_t T = tokens_of(rank, world);
  std::mt19937 rng(1000 * static_cast<int>(sc) + rank);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> p(static_cast<size_t>(T * kE));
  for (int64_t t = 0; t < T; ++t) {
    float* row = p.data() + t * kE;
    for (int64_t e = 0; e < kE; ++e) row[e] = nd(rng);
    if (sc == Scenario::all_to_expert0) {
      row[0] = 100.0f;
      row[1] = 90.0f;  // k = 2: the second choice is expert 1, also on rank 0 when El >= 2
    } else if (sc == Scenario::all_to_last_rank) {
      row[kE - 1] = 100.0f;
      row[kE - 2] = 90.0f;
    }
    float mx = row[0], sum = 0.0f;
    for (int64_t e = 1; e < kE; ++e) mx = std::max(mx, row[e]);
    for (int64_t e = 0; e < kE; ++e) sum += (row[e] = std::exp(row[e] - mx));
    for (int64_t e = 0; e < kE; ++e) row[e] /= sum;
  }
  return p;
}

int64_t expert_of_row(const RoutingPlan& plan, int64_t a) {
  int64_t e = 0;
  while (plan.expert_offsets[e + 1] <= a) ++e;
  return e;
}

bool run(const dist::Comm& world, Scenario sc, const char* name) {
  const int rank = world.rank(), P = world.size();
  const int64_t T = tokens_of(rank, P);
  const std::vector<float> probs = probs_of(sc, rank, P);
  const RoutingPlan plan = routing_plan_build(probs.data(), T, kE, kK, false, 0.0);
  const int64_t A = plan.rows();
  // Row a carries its source rank, token, expert, and random payload.
  std::vector<float> rows(static_cast<size_t>(A * kD));
  std::mt19937 rng(77 + rank);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
  for (int64_t a = 0; a < A; ++a) {
    float* r = rows.data() + a * kD;
    r[0] = static_cast<float>(rank);
    r[1] = static_cast<float>(plan.row_token[a]);
    r[2] = static_cast<float>(expert_of_row(plan, a));
    for (int64_t j = 3; j < kD; ++j) r[j] = ud(rng);
  }
  const ExpertRows x = dist::dispatch_plan(world, plan);
  std::vector<float> experts(static_cast<size_t>(x.received() * kD));
  dist::dispatch_rows(world, x, rows.data(), experts.data(), kD);

  bool good = true;
  auto fail = [&](const std::string& what) {
    std::fprintf(stderr, "rank %d, %s: %s\n", rank, name, what.c_str());
    good = false;
  };
  // Every row in its expert's block, sources in rank order.
  for (int64_t j = 0; j < x.El; ++j) {
    float last_source = -1.0f;
    for (int64_t a = x.local_offsets[j]; a < x.local_offsets[j + 1]; ++a) {
      const float* r = experts.data() + a * kD;
      if (r[2] != static_cast<float>(rank * x.El + j))
        fail("a row of expert " + std::to_string(r[2]) + " in the block of expert " + std::to_string(rank * x.El + j));
      if (r[0] < last_source) fail("sources out of order");
      last_source = r[0];
    }
  }
  // Rows per local expert == one process routing every rank's tokens.
  std::vector<float> all;
  int64_t T_all = 0;
  for (int r = 0; r < P; ++r) {
    const std::vector<float> p = probs_of(sc, r, P);
    all.insert(all.end(), p.begin(), p.end());
    T_all += tokens_of(r, P);
  }
  const RoutingPlan global = routing_plan_build(all.data(), T_all, kE, kK, false, 0.0);
  for (int64_t j = 0; j < x.El; ++j)
    if (x.rows_of(j) != global.rows_of(rank * x.El + j))
      fail("expert " + std::to_string(rank * x.El + j) + ": " + std::to_string(x.rows_of(j)) +
           " rows, one process routes " + std::to_string(global.rows_of(rank * x.El + j)));
  // Combine is the inverse, byte for byte.
  std::vector<float> back(static_cast<size_t>(A * kD), -7.0f);
  dist::combine_rows(world, x, experts.data(), back.data(), kD);
  if (A > 0 && std::memcmp(back.data(), rows.data(), static_cast<size_t>(A * kD) * sizeof(float)) != 0)
    fail("combine(dispatch(rows)) != rows");
  return good;
}

}  // namespace

int main(int argc, char** argv) {
  dist::Runtime runtime(&argc, &argv);
  const dist::Comm world = dist::Comm::world();
  if (kE % world.size() != 0) {
    if (world.rank() == 0)
      std::fprintf(stderr, "test_dispatch: %lld experts need a world size dividing them\n", static_cast<long long>(kE));
    return 2;
  }
  double failures = 0;
  try {
    failures += run(world, Scenario::random, "random routing") ? 0 : 1;
    failures += run(world, Scenario::all_to_expert0, "every token to expert 0") ? 0 : 1;
    failures += run(world, Scenario::all_to_last_rank, "every token to the last rank") ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", world.rank(), e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  world.allreduce_sum(&failures, 1);
  if (world.rank() == 0)
    std::printf("test_dispatch np=%d: %s (%g failed scenario-ranks)\n", world.size(), failures == 0 ? "PASS" : "FAIL",
                failures);
  return failures == 0 ? 0 : 1;
}
