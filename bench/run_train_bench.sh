#!/usr/bin/env bash
# Training benchmark with its peer in the same run: dsmoe's bench_train, then PyTorch (HF-style expert loop, fp32)
# on the same config, batch, sequence length and thread count. Prints both and the ratio.
#   bench/run_train_bench.sh [BUILD_DIR] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=${2:-2}
CONFIG=bench/configs/bench-train-s.json
ours=$("$BUILD/bench_train" --config $CONFIG --batch 8 --seq 512 --steps 3 --threads "$THREADS" --json)
echo "dsmoe:   $ours"
peer=$(/usr/bin/python3 bench/pytorch_train_peer.py --config $CONFIG --batch 8 --seq 512 --steps 2 \
       --threads "$THREADS" --json | tail -1)
echo "pytorch: $peer"
/usr/bin/python3 - "$ours" "$peer" <<'PY'
import json, sys
ours, peer = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"dsmoe {ours['tokens_per_s']:.1f} tokens/s ({100 * ours['sgemm_fraction']:.1f}% of sgemm "
      f"{ours['sgemm_gflops']:.0f} GFLOP/s, peak RSS {ours['peak_rss_gb']:.2f} GB) vs PyTorch "
      f"{peer['tokens_per_s']:.1f} tokens/s -> {ours['tokens_per_s'] / peer['tokens_per_s']:.2f}x")
PY
