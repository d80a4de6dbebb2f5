# Shared by the benchmark scripts beside llama.cpp: `source bench/lib.sh` sets ROOT, DSMOE, WORK (BENCH_DIR or
# build/bench-infer), PY, TOKENIZER (the DeepSeek tokenizer the GGUF files embed: llama.cpp loads none without one),
# and provides synth_file PRESET TYPE OUT (writes the file with dsmoe synth unless it exists).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DSMOE=$ROOT/build/dsmoe
WORK=${BENCH_DIR:-$ROOT/build/bench-infer}
mkdir -p "$WORK"
PY=/usr/bin/python3
TOKENIZER=${TOKENIZER:-$ROOT/../shared/tokenizers/deepseek-llm}
[ -f "$TOKENIZER/tokenizer.json" ] || { echo "no tokenizer at $TOKENIZER (set TOKENIZER=DIR)"; exit 1; }
synth_file() {
  [ -f "$3" ] || "$DSMOE" synth --preset "$1" --type "$2" --tokenizer "$TOKENIZER" --out "$3" > /dev/null 2>&1
}
