#!/usr/bin/env bash
# `mpirun -np W dsmoe train ... [--ep E]` (tests/CMakeLists.txt passes MPIEXEC): W = 2 and 4 ranks, data-parallel
# and with expert parallelism (E = 2, 4), follow the 1-process loss sequence (<= 1e-5 relative: the ranks' gradient
# shares are summed in another order); stop + resume at 2 ranks is bit-identical to an uninterrupted 2-rank run; a
# run saved at EP 4 resumes at EP 2 and in one process with the same next losses; under EP each rank holds only its
# experts and a stop + resume is byte-identical; only rank 0 prints and writes; a
# batch that does not split over the ranks, an --ep that does not divide the ranks and a one-process command under
# mpirun are refused with one line; token dropping at 2 ranks (EP 2) follows one process.
source "$(dirname "$0")/lib.sh" "$1"
MPIEXEC=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
COMMON=(--preset tiny --steps 12 --batch 4 --checkpoint-every 4 --eval-every 6)
losses() { grep '"type":"train"' "$1/metrics.jsonl" | sed 's/.*"loss":\([^,]*\).*"step":\([0-9]*\).*/\2 \1/'; }
close() {  # close A B: the loss sequences agree to 1e-5 relative, step by step
  paste <(losses "$1") <(losses "$2") | awk 'BEGIN { bad = 0; n = 0 }
    { n++; d = $2 - $4; if (d < 0) d = -d; if ($1 != $3 || d > 1e-5 * ($2 > 0 ? $2 : -$2)) bad = 1 }
    END { exit (bad || n != 12) }'
}

"$DSMOE" train "${COMMON[@]}" --threads 2 --run-dir one > one.log 2>&1 || { failed "1-process run"; cat one.log; }
for np in 2 4; do
  "$MPIEXEC" -np $np "$DSMOE" -t 1 train "${COMMON[@]}" --run-dir np$np > np$np.log 2>&1 || { failed "np $np run"; cat np$np.log; }
  close one np$np && pass "np $np: 12 step losses equal the 1-process run (<= 1e-5 relative)" \
    || { failed "np $np losses differ"; paste <(losses one) <(losses np$np) | head -12; }
  # Open MPI forwards rank 0's stdout through a pseudo-terminal, so step lines may be redrawn in place: count step 1.
  [ "$(grep -o 'step  *1/12 ' np$np.log | wc -l)" = 1 ] && pass "np $np: step 1 printed once (rank 0 only)" \
    || failed "np $np printed step 1 $(grep -o 'step  *1/12 ' np$np.log | wc -l) times"
done
for layout in "2 2" "4 2" "4 4"; do
  set -- $layout
  "$MPIEXEC" -np $1 "$DSMOE" -t 1 train "${COMMON[@]}" --ep $2 --run-dir ep$1x$2 > ep$1x$2.log 2>&1 \
    || { failed "np $1 ep $2 run"; cat ep$1x$2.log; }
  close one ep$1x$2 && pass "np $1, --ep $2: 12 step losses equal the 1-process run (<= 1e-5 relative)" \
    || { failed "np $1 ep $2 losses differ"; paste <(losses one) <(losses ep$1x$2) | head -12; }
done
grep -q "each holds 2 of the 8 routed experts" ep4x4.log && pass "EP 4: each rank holds 2 of the 8 routed experts" \
  || failed "EP 4 did not slice the experts: $(grep -m1 'expert parallelism' ep4x4.log)"
"$MPIEXEC" -np 2 "$DSMOE" -t 1 train "${COMMON[@]}" --ep 2 --run-dir E2 --stop-after 5 > E21.log 2>&1 || failed "ep 2 stop-after"
"$MPIEXEC" -np 2 "$DSMOE" -t 1 train --resume E2 --ep 2 > E22.log 2>&1 || { failed "ep 2 resume"; cat E22.log; }
cmp -s ep2x2/latest/model.safetensors E2/latest/model.safetensors && cmp -s ep2x2/latest/optimizer.safetensors E2/latest/optimizer.safetensors \
  && [ "$(losses ep2x2)" = "$(losses E2)" ] && pass "EP 2: stop at 5 + resume is byte-identical to the uninterrupted run (gathered checkpoints)" \
  || failed "EP 2 resume differs"
# Reshard: stopped at step 5 under EP 4, resumed under EP 2 and in one process.
"$MPIEXEC" -np 4 "$DSMOE" -t 1 train "${COMMON[@]}" --ep 4 --run-dir S4 --stop-after 5 > S4.log 2>&1 || failed "ep 4 stop-after"
cp -r S4 S2
cp -r S4 S1
"$MPIEXEC" -np 2 "$DSMOE" -t 1 train --resume S2 --ep 2 > S2.log 2>&1 || { failed "resume at ep 2"; cat S2.log; }
"$DSMOE" train --resume S1 --threads 2 > S1.log 2>&1 || { failed "resume in one process"; cat S1.log; }
close ep4x4 S2 && pass "EP 4 checkpoint resumed at EP 2: losses of steps 6-12 equal (<= 1e-5)" || failed "EP 4 -> 2 resume differs"
close ep4x4 S1 && pass "EP 4 checkpoint resumed in one process: losses of steps 6-12 equal (<= 1e-5)" || failed "EP 4 -> 1 resume differs"
"$MPIEXEC" -np 2 "$DSMOE" -t 1 train "${COMMON[@]}" --run-dir R --stop-after 5 > R1.log 2>&1 || failed "np 2 stop-after"
"$MPIEXEC" -np 2 "$DSMOE" -t 1 train --resume R > R2.log 2>&1 || { failed "np 2 resume"; cat R2.log; }
cmp -s np2/latest/model.safetensors R/latest/model.safetensors && cmp -s np2/latest/optimizer.safetensors R/latest/optimizer.safetensors \
  && [ "$(losses np2)" = "$(losses R)" ] && pass "np 2: stop at 5 + resume is byte-identical to the uninterrupted run" \
  || failed "np 2 resume differs"
expect_error "batch 3 over 2 ranks" "does not split evenly" "$MPIEXEC" -np 2 "$DSMOE" -t 1 train --preset tiny --steps 2 --batch 3 --run-dir bad1
expect_error "--ep 4 over 2 ranks" "needs mpirun with a multiple of 4 ranks" "$MPIEXEC" -np 2 "$DSMOE" -t 1 train --preset tiny --steps 2 --ep 4 --run-dir bad2
expect_error "--ep 2 without mpirun" "needs mpirun" "$DSMOE" train --preset tiny --steps 2 --ep 2 --run-dir bad4
expect_error "info under mpirun" "runs in one process" "$MPIEXEC" -np 2 "$DSMOE" info np2/latest
# Token dropping (capacity factor 1.0: some tokens are dropped every step) at 2 ranks follows one process.
sed 's/"capacity_factor": 0.0/"capacity_factor": 1.0/' np2/latest/config.json > cap.json
"$DSMOE" train "${COMMON[@]}" --model cap.json --threads 2 --run-dir cap1 > cap1.log 2>&1 || { failed "capacity run, 1 process"; cat cap1.log; }
"$MPIEXEC" -np 2 "$DSMOE" -t 1 train "${COMMON[@]}" --model cap.json --ep 2 --run-dir cap2 > cap2.log 2>&1 || { failed "capacity run, np 2 ep 2"; cat cap2.log; }
grep -q "dropped [1-9]" cap1.log && close cap1 cap2 && pass "capacity factor 1.0 (tokens dropped) at np 2, EP 2: losses equal one process" \
  || { failed "capacity run differs (or dropped nothing)"; grep dropped cap1.log | head -2; paste <(losses cap1) <(losses cap2) | head; }
finish
