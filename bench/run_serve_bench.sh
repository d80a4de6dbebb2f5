#!/usr/bin/env bash
# Serving beside llama-server, same machine, same GGUF files, runs interleaved: 1, 2 and 4 concurrent streaming
# clients (bench/serve_client.py: a 128-token prompt each, 128 generated tokens, ignore_eos), aggregate generated
# tokens/s and median time to first token; with 4 clients also the TTFT of a request sent while 3 streams are
# generating, beside its TTFT on an idle server (chunked prefill at work). Both servers: 2 threads, the number of
# clients as slots (--parallel), 1,024 positions per slot, F16 KV cache.
#   bench/run_serve_bench.sh LLAMA_BIN_DIR [--16b] [--rounds N]
# Models: bench-infer Q8_0 (written by dsmoe synth as in run_infer_bench.sh) and, with --16b, the 16B config in
# Q4_0 (9.7 GB). Build llama.cpp first (fetch it; never commit it): cmake -B build -DCMAKE_BUILD_TYPE=Release
#   -DGGML_NATIVE=ON -DLLAMA_CURL=OFF && cmake --build build --target llama-server
set -eu
LLAMA=$(realpath "$1"); shift
BIG=0; ROUNDS=1
while [ $# -gt 0 ]; do
  case "$1" in --16b) BIG=1;; --rounds) ROUNDS=$2; shift;; *) echo "unknown flag $1"; exit 1;; esac
  shift
done
source "$(dirname "$0")/lib.sh"
files=("$WORK/bench-infer-q8_0.gguf")
synth_file bench-infer q8_0 "${files[0]}"
if [ $BIG = 1 ]; then
  files+=("$WORK/deepseek-moe-16b-q4_0.gguf")
  synth_file deepseek-moe-16b-base q4_0 "${files[1]}"
fi
VOCAB=102400  # the DeepSeek tokenizer's, which both models carry
CTX=1024
PORT=18080

wait_ready() {  # until /health answers 200 (both servers answer 503 while loading)
  for _ in $(seq 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 200 ] && return 0
    sleep 0.25
  done
  echo "server on port $PORT did not become ready"; return 1
}
run() {  # run ENGINE FILE CLIENTS: start the server, measure, stop it; prints the client's JSON
  local engine=$1 f=$2 n=$3 pid extra=""
  [ "$n" = 4 ] && extra="--busy-ttft"
  if [ "$engine" = llama ]; then
    "$LLAMA/llama-server" -m "$f" --parallel "$n" -c $((n * CTX)) -t 2 --host 127.0.0.1 --port $PORT \
      -ctk f16 -ctv f16 > "$WORK/server.log" 2>&1 &
  else
    "$DSMOE" -t 2 serve --model "$f" --parallel "$n" --ctx $CTX --kv-type f16 --port $PORT > "$WORK/server.log" 2>&1 &
  fi
  pid=$!
  wait_ready
  $PY "$ROOT/bench/serve_client.py" --port $PORT --clients "$n" --vocab $VOCAB --seed "$n" $extra
  kill -INT $pid; wait $pid 2> /dev/null || true
}

echo "llama.cpp $(cd "$LLAMA" && ./llama-server --version 2>&1 | grep -o 'version: .*' | head -1); $(nproc) cores; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
for f in "${files[@]}"; do
  cat "$f" > /dev/null  # page cache warm
  echo
  echo "## $(basename "$f"), 2 threads, ${CTX} positions per slot, 128-token prompts, 128 generated tokens, median of $ROUNDS rounds"
  echo "| clients | llama-server t/s | dsmoe t/s | ratio | llama-server TTFT ms | dsmoe TTFT ms |"
  echo "|---:|---:|---:|---:|---:|---:|"
  busy=""; declare -A LM=() DM=()
  for n in 1 2 4; do
    L=""; D=""; LT=""; DT=""
    for r in $(seq "$ROUNDS"); do
      l=$(run llama "$f" $n); d=$(run dsmoe "$f" $n)
      L+=" $(echo "$l" | $PY -c 'import json,sys; print(json.load(sys.stdin)["aggregate_tps"])')"
      D+=" $(echo "$d" | $PY -c 'import json,sys; print(json.load(sys.stdin)["aggregate_tps"])')"
      LT+=" $(echo "$l" | $PY -c 'import json,sys; print(json.load(sys.stdin)["ttft_ms"])')"
      DT+=" $(echo "$d" | $PY -c 'import json,sys; print(json.load(sys.stdin)["ttft_ms"])')"
      [ "$n" = 4 ] && busy+="$($PY -c 'import json,sys; l, d = json.loads(sys.argv[1]), json.loads(sys.argv[2]); print("llama-server idle %.0f ms, with 3 busy %.0f ms (%.2fx); dsmoe idle %.0f ms, with 3 busy %.0f ms (%.2fx)" % (l["idle_ttft_ms"], l["busy_ttft_ms"], l["busy_ttft_ms"] / l["idle_ttft_ms"], d["idle_ttft_ms"], d["busy_ttft_ms"], d["busy_ttft_ms"] / d["idle_ttft_ms"]))' "$l" "$d")"$'\n'
    done
    $PY -c '
import statistics as st, sys
L, D, LT, DT = [[float(v) for v in a.split()] for a in sys.argv[2:6]]
l, d = st.median(L), st.median(D)
print("| %s | %.1f | %.1f | %.2f× | %.0f | %.0f |" % (sys.argv[1], l, d, d / l, st.median(LT), st.median(DT)))' $n "$L" "$D" "$LT" "$DT"
    # shellcheck disable=SC2086
    LM[$n]=$($PY -c 'import statistics as st, sys; print(st.median(float(v) for v in sys.argv[1:]))' $L)
    # shellcheck disable=SC2086
    DM[$n]=$($PY -c 'import statistics as st, sys; print(st.median(float(v) for v in sys.argv[1:]))' $D)
  done
  $PY -c 'import sys; l1, l4, d1, d4 = map(float, sys.argv[1:]); print("4 clients / 1 client, aggregate: dsmoe %.2fx, llama-server %.2fx" % (d4 / d1, l4 / l1))' \
    "${LM[1]}" "${LM[4]}" "${DM[1]}" "${DM[4]}"
  echo "TTFT of a 128-token prompt: $busy"
done
