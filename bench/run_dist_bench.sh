#!/usr/bin/env bash
# Expert + data parallel training speed on this machine's cores (bench/bench_dist_train under mpiexec): one process
# with 2 threads against 2 ranks with 1 thread each, data-parallel (EP 1) and expert-parallel (EP 2), on
# bench-train-s (63 routed experts: EP 2 cannot split them, so EP runs on bench-train-s-e64, the same model with 64)
# — median step of 5 after a warm-up, rounds interleaved; phases from rank 0: compute, permute, all-to-all,
# all-reduce, optimizer. Every run --bind-to none: Open MPI otherwise pins a 1-rank job to one core, both threads on
# it.   bench/run_dist_bench.sh [ROUNDS]
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
B=build/bench_dist_train
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; $(nproc) cores"
for r in $(seq "$ROUNDS"); do
  for cfg in bench-train-s bench-train-s-e64; do
    c=bench/configs/$cfg.json
    echo "$cfg np1x2 $(mpiexec -np 1 --bind-to none $B --config $c --threads 2 --steps 5)"
    echo "$cfg np2x1-dp $(mpiexec -np 2 --bind-to none $B --config $c --threads 1 --ep 1 --steps 5)"
    [ $cfg = bench-train-s-e64 ] && echo "$cfg np2x1-ep2 $(mpiexec -np 2 --bind-to none $B --config $c --threads 1 --ep 2 --steps 5)"
  done
done
