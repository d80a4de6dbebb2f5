#!/usr/bin/env bash
# Inference benchmark beside llama.cpp, same machine, same GGUF files, runs interleaved (this machine is noisy):
# bench-infer (bench/configs/bench-infer.json, random weights) in F32 and Q8_0: pp512 and tg128, plus the memory
# read bandwidth and the decode roofline (bytes of weights read per token / bandwidth). With --16b also the released
# 16B config (random weights) in Q4_0 (dsmoe synth, 9.7 GB) and Q4_K_M (llama-quantize from a dsmoe-synth Q8_0
# file, and dsmoe quantize from the same file): tg32, pp128 and pp512 of both engines, % of the roofline, GFLOP/s,
# and dsmoe's resident memory while generating.
#   bench/run_infer_bench.sh LLAMA_BIN_DIR [--16b [--skip-small] [--q4_0-only]] [--rounds N]
# Build llama.cpp first (fetch it; never commit it): cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON
#   -DLLAMA_CURL=OFF && cmake --build build --target llama-bench llama-simple llama-quantize
# OpenBLAS picks its kernels from OPENBLAS_CORETYPE when set (this environment pins Haswell = AVX2); llama.cpp is
# built for the native CPU (AVX-512 here). When the variable is set, dsmoe's prefill is also measured without it,
# i.e. with the kernels OpenBLAS selects for this CPU.
set -eu
LLAMA=$(realpath "$1"); shift
BIG=0; ROUNDS=3; SMALL=1; Q4_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in --16b) BIG=1;; --skip-small) SMALL=0;; --q4_0-only) Q4_ONLY=1;; --rounds) ROUNDS=$2; shift;; *) echo "unknown flag $1"; exit 1;; esac
  shift
done
source "$(dirname "$0")/lib.sh"
for t in f32 q8_0; do synth_file bench-infer $t "$WORK/bench-infer-$t.gguf"; done
# The read-bandwidth ceiling: the best of a plain summing loop (3 x best-of-5) and of the fastest streaming kernel
# (an F32 matrix-vector product over a 400 MB matrix): whichever reads faster on this machine at this moment.
bw=0
for i in 1 2 3; do b=$("$ROOT/build/bench_qmatmul" --bandwidth-only); bw=$($PY -c "print(max($bw, $b))"); done
k=$("$ROOT/build/bench_qmatmul" --rows 102400 --cols 1024 | grep '^F32 .*n=1:' | grep -o '[0-9.]* GB/s' | grep -o '^[0-9.]*')
echo "memory read bandwidth (2 threads): summing loop $bw GB/s, F32 matrix-vector kernel $k GB/s"
bw=$($PY -c "print(max($bw, $k))")

avg() { $PY -c "import json,sys; r=json.load(open(sys.argv[1])); print(' '.join('%.2f' % x['avg_ts'] for x in r))" "$1"; }
median() { $PY -c "import statistics,sys; print('%.1f' % statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
for t in f32 q8_0; do
  [ $SMALL = 1 ] || break
  f="$WORK/bench-infer-$t.gguf"
  L_pp=(); L_tg=(); D_pp=(); D_tg=(); N_pp=()
  for r in $(seq "$ROUNDS"); do
    "$LLAMA/llama-bench" -m "$f" -p 512 -n 128 -r 3 -t 2 -o json > "$WORK/l.json" 2> /dev/null
    read -r lp lt < <(avg "$WORK/l.json"); L_pp+=("$lp"); L_tg+=("$lt")
    "$DSMOE" bench -m "$f" -p 512 -n 128 -r 3 -t 2 -o json > "$WORK/d.json" 2> "$WORK/d.err"
    read -r dp dt < <(avg "$WORK/d.json"); D_pp+=("$dp"); D_tg+=("$dt")
    if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
      env -u OPENBLAS_CORETYPE "$DSMOE" bench -m "$f" -p 512 -n 0 -r 3 -t 2 -o json > "$WORK/n.json" 2> /dev/null
      N_pp+=("$(avg "$WORK/n.json")")
    fi
  done
  mb=$(grep -o 'read per decoded token [0-9.]*' "$WORK/d.err" | grep -o '[0-9.]*$')
  lpp=$(median "${L_pp[@]}"); ltg=$(median "${L_tg[@]}"); dpp=$(median "${D_pp[@]}"); dtg=$(median "${D_tg[@]}")
  roof=$($PY -c "print('%.1f' % ($bw * 1000 / $mb))")
  echo
  echo "## bench-infer $t (2 threads; median of $ROUNDS interleaved rounds, each the mean of 3 repetitions)"
  echo "| test | llama.cpp t/s | dsmoe t/s | ratio |"
  echo "|---|---:|---:|---:|"
  echo "| pp512 | $lpp | $dpp | $($PY -c "print('%.2f' % ($dpp / $lpp))")× |"
  if [ ${#N_pp[@]} -gt 0 ]; then
    npp=$(median "${N_pp[@]}")
    echo "| pp512, OpenBLAS kernels for this CPU (OPENBLAS_CORETYPE unset) | $lpp | $npp | $($PY -c "print('%.2f' % ($npp / $lpp))")× |"
  fi
  echo "| tg128 | $ltg | $dtg | $($PY -c "print('%.2f' % ($dtg / $ltg))")× |"
  echo "decode reads $mb MB of weights per token: roofline $roof t/s at $bw GB/s; dsmoe at $($PY -c "print('%.0f' % (100 * $dtg / $roof))")%, llama.cpp at $($PY -c "print('%.0f' % (100 * $ltg / $roof))")%"
  echo "raw: llama pp ${L_pp[*]} | dsmoe pp ${D_pp[*]} | llama tg ${L_tg[*]} | dsmoe tg ${D_tg[*]}"
done

if [ $BIG = 1 ]; then
  q4="$WORK/deepseek-moe-16b-q4_0.gguf"; q8="$WORK/deepseek-moe-16b-q8_0.gguf"
  km_llama="$WORK/deepseek-moe-16b-q4_k_m-llama.gguf"; km_dsmoe="$WORK/deepseek-moe-16b-q4_k_m-dsmoe.gguf"
  synth_file deepseek-moe-16b-base q4_0 "$q4"
  # SKIP_DSMOE_QUANT=1: measure only llama-quantize's Q4_K_M (dsmoe quantize of the 16B takes ~30 min on 2 cores)
  files=("$q4" "$km_llama")
  [ $Q4_ONLY = 0 ] || files=("$q4")
  if [ $Q4_ONLY = 0 ] && { [ ! -f "$km_llama" ] || { [ "${SKIP_DSMOE_QUANT:-0}" != 1 ] && [ ! -f "$km_dsmoe" ]; }; }; then
    synth_file deepseek-moe-16b-base q8_0 "$q8"
    [ -f "$km_llama" ] || "$LLAMA/llama-quantize" --allow-requantize "$q8" "$km_llama" Q4_K_M > "$WORK/lq.log" 2>&1
    [ "${SKIP_DSMOE_QUANT:-0}" = 1 ] || [ -f "$km_dsmoe" ] || "$DSMOE" quantize --model "$q8" --type q4_k_m --out "$km_dsmoe" > /dev/null 2>&1
  fi
  if [ $Q4_ONLY = 0 ] && [ -f "$km_dsmoe" ]; then
    files+=("$km_dsmoe")
    if cmp -s "$km_llama" "$km_dsmoe"; then echo "Q4_K_M files of llama-quantize and dsmoe quantize: identical bytes"
    else echo "Q4_K_M files of llama-quantize and dsmoe quantize differ (both are measured)"; fi
  fi
  # Per round: llama-bench and dsmoe bench each run tg32, pp128 and pp512 in one process (one model load). llama.cpp
  # reads the weights into memory (-mmp 0) as dsmoe does, so that neither engine's speed depends on the page cache
  # keeping a 10 GB mapping resident beside the other's.
  tests="-p 128,512 -n 32"
  field() { $PY -c "import json,sys; r=json.load(open(sys.argv[1])); print(' '.join('%.2f' % x.get(sys.argv[2], 0) for x in r))" "$1" "$2"; }
  for f in "${files[@]}"; do
    cat "$f" > /dev/null  # page cache warm: measure the engine, not the disk
    /usr/bin/time -f "%M" -o "$WORK/rss" "$DSMOE" generate --model "$f" --prompt-ids 100000,500,600,700 -n 32 \
      --temperature 0 > /dev/null 2> "$WORK/gen.err"
    declare -A L=() D=() N=() G=()
    B=""
    for r in $(seq "$ROUNDS"); do
      # The bandwidth of this moment (it drifts by +-15% on a shared machine): each round's decode is also
      # compared with the summing loop measured right before it.
      B+=" $("$ROOT/build/bench_qmatmul" --bandwidth-only)"
      "$LLAMA/llama-bench" -m "$f" $tests -r 2 -t 2 -mmp 0 -o json > "$WORK/l.json" 2> /dev/null
      read -r lpp128 lpp512 ltg < <(avg "$WORK/l.json")
      "$DSMOE" bench -m "$f" $tests -r 2 -t 2 -o json --no-ceiling > "$WORK/d.json" 2> /dev/null
      read -r dpp128 dpp512 dtg < <(avg "$WORK/d.json")
      read -r gpp128 gpp512 _ < <(field "$WORK/d.json" gflops)
      L[pp128]+=" $lpp128"; L[pp512]+=" $lpp512"; L[tg32]+=" $ltg"
      D[pp128]+=" $dpp128"; D[pp512]+=" $dpp512"; D[tg32]+=" $dtg"
      G[pp128]+=" $gpp128"; G[pp512]+=" $gpp512"
      if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
        env -u OPENBLAS_CORETYPE "$DSMOE" bench -m "$f" -p 128,512 -n 0 -r 1 -t 2 -o json --no-ceiling > "$WORK/n.json" 2> /dev/null
        read -r npp128 npp512 < <(avg "$WORK/n.json")
        N[pp128]+=" $npp128"; N[pp512]+=" $npp512"
      fi
    done
    mb=$($PY -c "import json; print([x for x in json.load(open('$WORK/d.json')) if x['n_gen'] > 0][0]['bytes_per_token'] / 1e6)")
    echo
    echo "## $(basename "$f") ($(du -hL "$f" | cut -f1)), 2 threads, median of $ROUNDS interleaved rounds (each the mean of 2 repetitions)"
    echo "dsmoe generate (4-token prompt, 32 new tokens): peak RSS $($PY -c "print('%.2f' % ($(cat "$WORK/rss") / 1048576))") GiB"
    echo "| test | llama.cpp t/s | dsmoe t/s | ratio | dsmoe throughput |"
    echo "|---|---:|---:|---:|---|"
    for name in tg32 pp128 pp512; do
      # shellcheck disable=SC2086
      l=$(median ${L[$name]}); d=$(median ${D[$name]})
      if [[ "$name" == tg* ]]; then
        # shellcheck disable=SC2086
        per_round=$($PY -c "
import statistics as st, sys
b, l, d = [[float(v) for v in a.split()] for a in sys.argv[1:4]]
m = $mb / 1000
print('%.0f%% (llama.cpp %.0f%%) of the bandwidth measured before each round (%s GB/s)' % (
    100 * st.median(x * m / y for x, y in zip(d, b)), 100 * st.median(x * m / y for x, y in zip(l, b)), ' '.join(sys.argv[1].split())))" "$B" "${L[$name]}" "${D[$name]}")
        extra="$mb MB/token: $($PY -c "print('%.1f GB/s = %.0f%% of %.1f GB/s; llama.cpp %.0f%%' % ($d * $mb / 1000, 100 * $d * $mb / 1000 / $bw, $bw, 100 * $l * $mb / 1000 / $bw))"); $per_round"
      else
        # shellcheck disable=SC2086
        extra="$(median ${G[$name]}) GFLOP/s"
      fi
      echo "| $name | $l | $d | $($PY -c "print('%.2f' % ($d / $l))")× | $extra |"
      if [ -n "${N[$name]:-}" ]; then
        # shellcheck disable=SC2086
        n=$(median ${N[$name]})
        echo "| $name, OPENBLAS_CORETYPE unset | $l | $n | $($PY -c "print('%.2f' % ($n / $l))")× | |"
      fi
      echo "raw $name: llama${L[$name]} | dsmoe${D[$name]}${N[$name]:+ | unset${N[$name]}}" >&2
    done
    unset L D N G
  done
fi
