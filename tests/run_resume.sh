#!/usr/bin/env bash
# Runs you can trust: an interrupted and resumed run is bit-identical to an uninterrupted one (weights compared
# byte for byte, loss sequence equal), also when it is killed with SIGKILL at random moments; RUN/latest always
# loads; eval works on RUN/latest; config override errors are clear.
source "$(dirname "$0")/lib.sh" "$1"
COMMON=(--preset tiny --steps 150 --checkpoint-every 7 --eval-every 20 --threads 2)
losses() { grep '"type":"train"' "$1/metrics.jsonl" | sed 's/.*"grad_norm":\([^,]*\).*"loss":\([^,]*\).*"step":\([0-9]*\).*/\3 \2 \1/'; }

"$DSMOE" train "${COMMON[@]}" --run-dir A > A.log 2>&1 || { failed "uninterrupted run"; cat A.log; }
"$DSMOE" train "${COMMON[@]}" --run-dir B --stop-after 23 > B1.log 2>&1 || failed "interrupted run"
"$DSMOE" train --resume B > B2.log 2>&1 || { failed "resume"; cat B2.log; }
cmp -s A/latest/model.safetensors B/latest/model.safetensors && cmp -s A/latest/optimizer.safetensors B/latest/optimizer.safetensors \
  && pass "stop at 23 + resume: weights and AdamW state byte-identical" || failed "resumed weights differ"
[ "$(losses A)" = "$(losses B)" ] && [ "$(losses A | wc -l)" = 150 ] && pass "same loss sequence (150 steps)" || failed "loss sequences differ"
"$DSMOE" eval --model B/latest --data B/data/corpus.val.bin --seq-len 64 --json > ev.json 2>&1 && grep -q nll ev.json \
  && pass "dsmoe eval --model RUN/latest" || failed "eval on latest: $(cat ev.json)"

# SIGKILL at random moments, resume each time until the run completes.
kills=0; restarts=0
for attempt in $(seq 1 60); do
  if [ -e C/latest ]; then cmd=("$DSMOE" train --resume C); else cmd=("$DSMOE" train "${COMMON[@]}" --run-dir C); fi
  "${cmd[@]}" > C.log 2>&1 &
  pid=$!
  # random moments; the window widens with each attempt so the run always gets to finish
  sleep "$(awk -v r=$RANDOM -v a=$attempt 'BEGIN { printf "%.3f", 0.05 + (r % 600) / 1000 + 0.05 * a }')"
  if kill -9 $pid 2>/dev/null; then kills=$((kills + 1)); wait $pid 2>/dev/null; else
    wait $pid 2>/dev/null || { failed "a start failed on its own: $(tail -2 C.log)"; break; }
  fi
  restarts=$((restarts + 1))
  if [ -e C/latest ]; then
    "$DSMOE" eval --model C/latest --data A/data/corpus.val.bin --seq-len 64 > /dev/null 2>&1 \
      || { failed "RUN/latest does not load after kill $kills"; break; }
  fi
  grep -q "\"step\": 150" C/latest/state.json 2>/dev/null && break
done
# On a loaded machine (ctest -j) the run may outlast every kill window: finish it with one last, unkilled resume.
if ! grep -q "\"step\": 150" C/latest/state.json 2>/dev/null; then
  "$DSMOE" train --resume C > C.log 2>&1 || failed "final resume: $(tail -2 C.log)"
  restarts=$((restarts + 1))
fi
[ $kills -ge 2 ] && pass "$kills random SIGKILLs during the run" || failed "only $kills kills happened"
cmp -s A/latest/model.safetensors C/latest/model.safetensors \
  && pass "killed and resumed ($restarts starts): final weights byte-identical" \
  || failed "after $kills kills the weights differ"
[ "$(losses A)" = "$(losses C)" ] && pass "killed run: same loss sequence" || failed "killed run: loss sequence differs"

expect_error "unknown key lists close matches" "did you mean.*seq_len" "$DSMOE" train --preset tiny --run-dir X --seq-lenn=32
expect_error "type-checked override" "expected a integer" "$DSMOE" train --preset tiny --run-dir X --batch=abc
expect_error "unknown preset" "unknown preset" "$DSMOE" train --preset huge --run-dir X
expect_error "existing run is not overwritten" "already holds a run" "$DSMOE" train --preset tiny --run-dir A
expect_error "resume of a non-run" "not a run directory" "$DSMOE" train --resume nothing-here
echo '{"steps": "ten"}' > bad.json
expect_error "config file type error" "must be a integer" "$DSMOE" train --config bad.json --run-dir Y

finish
