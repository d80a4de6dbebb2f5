#!/usr/bin/env bash
# Interop check with a locally built llama.cpp: a GGUF written by `dsmoe quantize` loads in llama.cpp and its greedy
# continuation is the same text dsmoe generates from the same file (F32 and Q8_0).
#   bench/llama_cpp_check.sh DSMOE LLAMA_BIN_DIR MODEL [PROMPT] [N]
# MODEL: an HF directory with tokenizer.json (e.g. a `dsmoe demo` checkpoint) or a .gguf file with tokenizer
# metadata. llama.cpp: fetch it, then cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
# && cmake --build build --target llama-simple llama-bench (never commit it).
set -u
DSMOE=$(realpath "$1"); LLAMA=$(realpath "$2"); MODEL=$(realpath "$3")
PROMPT=${4:-"The history of the"}; N=${5:-24}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fails=0
for type in f32 q8_0; do
  file="$work/model-$type.gguf"
  "$DSMOE" quantize --model "$MODEL" --type "$type" --out "$file" > "$work/q.log" 2>&1 \
    || { echo "FAIL quantize $type: $(tail -1 "$work/q.log")"; fails=$((fails + 1)); continue; }
  ours=$("$DSMOE" generate --model "$file" --prompt "$PROMPT" -n "$N" --temperature 0 --ignore-eos 2>/dev/null)
  # llama-simple prints the prompt's pieces (BOS included) and then the greedy continuation.
  theirs=$("$LLAMA/llama-simple" -m "$file" -n "$N" "$PROMPT" 2> "$work/llama.log")
  if [[ -n "$ours" && "$theirs" == *"$PROMPT$ours" ]]; then
    echo "PASS $type: llama.cpp and dsmoe generate the same $N greedy tokens: $(printf %q "$ours")"
  else
    echo "FAIL $type"; echo "  dsmoe:     $(printf %q "$ours")"; echo "  llama.cpp: $(printf %q "$theirs")"
    tail -3 "$work/llama.log"; fails=$((fails + 1))
  fi
done
# And the other way: files quantized by llama.cpp (llama-quantize from our F32 file) run in dsmoe with the same text.
if [ -x "$LLAMA/llama-quantize" ] && [ -f "$work/model-f32.gguf" ]; then
  for type in Q8_0 Q4_0; do
    file="$work/llama-$type.gguf"
    "$LLAMA/llama-quantize" "$work/model-f32.gguf" "$file" "$type" > "$work/lq.log" 2>&1 \
      || { echo "FAIL llama-quantize $type: $(tail -1 "$work/lq.log")"; fails=$((fails + 1)); continue; }
    ours=$("$DSMOE" generate --model "$file" --prompt "$PROMPT" -n "$N" --temperature 0 --ignore-eos 2>/dev/null)
    theirs=$("$LLAMA/llama-simple" -m "$file" -n "$N" "$PROMPT" 2> "$work/llama.log")
    if [[ -n "$ours" && "$theirs" == *"$PROMPT$ours" ]]; then
      echo "PASS llama.cpp-made $type: dsmoe runs it and generates llama.cpp's $N greedy tokens"
    else
      echo "FAIL llama.cpp-made $type"; echo "  dsmoe:     $(printf %q "$ours")"; echo "  llama.cpp: $(printf %q "$theirs")"
      fails=$((fails + 1))
    fi
  done
fi
exit $fails
