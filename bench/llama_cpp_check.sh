#!/usr/bin/env bash
# Interop check with a locally built llama.cpp, both directions, for every file type the two share:
#  1. dsmoe -> llama.cpp: `dsmoe quantize` writes F32, Q8_0 and each llama.cpp file type (q4_0, q4_1, q5_0, q5_1,
#     iq4_nl and the K mixes q2_k ... q6_k, per-tensor types chosen as llama-quantize does), each also with
#     --all-same-type; llama-simple runs every file and must print, after the prompt, the text dsmoe generates
#     greedily from the same file, for every prompt.
#  2. llama.cpp -> dsmoe: llama-quantize makes the same types from dsmoe's F32 file (its recipes, and --pure for
#     --all-same-type); dsmoe runs each and must generate llama.cpp's greedy text.
#  3. The two makers' files of one type: sha256, and per tensor (type, shape, data sha256) where the files differ.
#     (They differ only in layout: llama-quantize writes general.quantization_version/file_type last and orders
#     tensors by layer, then name.)
#  4. With --text (repeatable): quality per type on that text, as llama.cpp users judge it: mean KL divergence to
#     the F32 file's next-token distributions and the share of positions with the same top token (dsmoe perplexity
#     --kld-base), as a Markdown table beside the perplexity increase llama-quantize publishes per type.
# Greedy texts that differ are diagnosed (near_tie): a TIE when they part where dsmoe's token and the best other
# token are less than $tie_gap nats apart in exact arithmetic; else, or with --strict, a FAIL.
#
#   bench/llama_cpp_check.sh DSMOE LLAMA_BIN_DIR MODEL [PROMPT] [N] [--prompt P]... [--types "q4_0 q6_k ..."]
#                            [--tokenizer DIR] [--text FILE]... [--ctx N] [--keep DIR] [--strict]
# MODEL: an HF directory (e.g. a `dsmoe demo` checkpoint, or a run's RUN/latest with --tokenizer DIR) or a .gguf
# file with tokenizer metadata. Row widths (hidden size, dense and expert FFN widths) that are multiples of 256 give
# real K-quants everywhere; other widths take llama.cpp's fallbacks, and llama-quantize --pure then refuses them.
# Each --prompt adds a prompt (default: PROMPT, else "The history of the"); N greedy tokens (default 24), fewer where
# both stop at the end-of-sequence token; --ctx: KLD window (default 128); --keep DIR keeps the files there.
# llama.cpp: fetch it, then cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
# && cmake --build build --target llama-simple llama-quantize (never commit it).
# Prints PASS/TIE/FAIL lines, a table per type and the counts; the exit status is the number of failures.
set -u
DSMOE=$(realpath "$1"); LLAMA=$(realpath "$2"); MODEL=$(realpath "$3"); shift 3
prompts=(); N=24; positional=0; texts=(); ctx=128; keep=""; tokenizer=(); strict=0; tie_gap=0.05
types="q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k"
while [ $# -gt 0 ]; do
  case "$1" in
    --prompt) prompts+=("$2"); shift 2 ;;
    --types) types=$2; shift 2 ;;
    --text) texts+=("$(realpath "$2")"); shift 2 ;;
    --ctx) ctx=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --strict) strict=1; shift ;;
    --tokenizer) tokenizer=(--tokenizer "$(realpath "$2")"); shift 2 ;;
    *) if [ $positional -eq 0 ]; then prompts+=("$1"); else N=$1; fi; positional=$((positional + 1)); shift ;;
  esac
done
[ ${#prompts[@]} -gt 0 ] || prompts=("The history of the")
if [ -n "$keep" ]; then mkdir -p "$keep" && work=$(realpath "$keep"); else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
passes=0; fails=0; ties=0
pass() { echo "PASS $1"; passes=$((passes + 1)); }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }
upper() { tr '[:lower:]' '[:upper:]' <<< "$1"; }
declare -A tally  # "type,column" -> "passed/checked" or "passed/checked (T ties)"
count() {  # count TYPE COLUMN OK [tie]
  local p=0 n=0 t=0 cell=${tally[$1,$2]:-0/0}
  [[ "$cell" =~ ^([0-9]+)/([0-9]+)( \(([0-9]+) tie)? ]] && { p=${BASH_REMATCH[1]}; n=${BASH_REMATCH[2]}; t=${BASH_REMATCH[4]:-0}; }
  [ "${4:-}" = tie ] && t=$((t + 1))
  tally[$1,$2]="$((p + $3))/$((n + 1))"; [ $t -gt 0 ] && tally[$1,$2]+=" ($t tie$([ $t -gt 1 ] && echo s))"
}

# near_tie FILE PROMPT CONTINUATION: where dsmoe's greedy text leaves llama.cpp's continuation, how close the
# choice was in exact arithmetic. Both engines multiply the same 8-bit activations (ggml's Q8_0/Q8_K, which dsmoe
# reproduces bit for bit) against the same weights, but sum floats in different orders, and llama.cpp's attention
# on its F16 KV cache also rounds the query and the softmax weights to fp16: a token that wins by a few thousandths
# of a nat can go either way. The exact reference is FILE's weights dequantized to F32 (dsmoe and llama.cpp
# agree there to ~1e-5, measured). Prints "K TOKEN OTHER GAP": the first diverging generated token K, dsmoe's token
# there, the exact best other token (the best one, if dsmoe's is not) and how far apart they are (nats).
near_tie() {
  local file=$1 p=$2 cont=$3 lo hi mid n_prompt n_gen tok exact="$work/exact-$(basename "$1")"
  local all=($("$DSMOE" generate --kv-type f16 --model "$file" --prompt "$p" -n "$N" --temperature 0 --ids 2>/dev/null))
  n_prompt=$("$DSMOE" generate --kv-type f16 --model "$file" --prompt "$p" -n 0 --ids 2>/dev/null | wc -w)
  n_gen=$((${#all[@]} - n_prompt)); lo=0; hi=$((n_gen + 1))
  while [ $((hi - lo)) -gt 1 ]; do  # the longest run of dsmoe's tokens whose text starts llama.cpp's continuation
    mid=$(((lo + hi) / 2))
    if [[ "$cont" == "$("$DSMOE" generate --kv-type f16 --model "$file" --prompt "$p" -n $mid --temperature 0 2>/dev/null)"* ]]; then
      lo=$mid; else hi=$mid; fi
  done
  if [ $lo -lt $n_gen ]; then tok=${all[$((n_prompt + lo))]}; else  # dsmoe stopped: its token was end-of-sequence
    tok=$("$DSMOE" generate --kv-type f16 --model "$file" --prompt "$p" -n $((lo + 1)) --ignore-eos --temperature 0 --ids 2>/dev/null | awk '{print $NF}'); fi
  [ -f "$exact" ] || "$DSMOE" quantize --model "$file" --type f32 --out "$exact" > /dev/null 2>&1 || return 1
  perl -e 'print pack("V*", @ARGV)' "${all[@]:0:$((n_prompt + lo))}" "$tok" > "$work/seq.bin"
  "$DSMOE" perplexity -m "$exact" --data "$work/seq.bin" --ctx $((n_prompt + lo)) --save-logits "$work/exact.lp" \
    > /dev/null 2>&1 || return 1
  perl -e 'open(my $f, "<:raw", $ARGV[0]) or die; local $/; my $d = <$f>;
    my ($n, $v) = unpack("q< q<", substr($d, 8, 16));
    my @lp = unpack("f<*", substr($d, 24 + ($n - 1) * $v * 4, $v * 4));
    my @order = sort { $lp[$b] <=> $lp[$a] } 0 .. $#lp;
    my $runner_up = $order[0] == $ARGV[2] ? $order[1] : $order[0];
    printf "%d %d %d %.5f\n", $ARGV[1], $ARGV[2], $runner_up, abs($lp[$ARGV[2]] - $lp[$runner_up])' \
    "$work/exact.lp" "$lo" "$tok"
}

# same_text FILE TYPE COLUMN: for each prompt, llama-simple's output must end in the prompt followed by dsmoe's
# greedy continuation (llama-simple prints the prompt's pieces, BOS included, then the continuation; both stop at
# the end-of-sequence token). A difference is a TIE, not a failure, when it starts where dsmoe's token is within
# $tie_gap nats of the best other token in exact arithmetic (near_tie); --strict counts ties as failures.
same_text() {
  local file=$1 type=$2 column=$3 i=0 p ours theirs rc_ours rc_theirs k tok other gap where
  for p in "${prompts[@]}"; do
    i=$((i + 1))
    ours=$("$DSMOE" generate --kv-type f16 --model "$file" --prompt "$p" -n "$N" --temperature 0 2> "$work/dsmoe.log"); rc_ours=$?
    theirs=$("$LLAMA/llama-simple" -m "$file" -n "$N" "$p" 2> "$work/llama.log"); rc_theirs=$?
    if [ $rc_ours -eq 0 ] && [ $rc_theirs -eq 0 ] && [[ "$theirs" == *"$p$ours" ]]; then
      pass "$column $type, prompt $i: same greedy text: $(printf %q "$ours")"; count "$type" "$column" 1
      continue
    fi
    k=""; [ $rc_ours -eq 0 ] && [ $rc_theirs -eq 0 ] && read -r k tok other gap < <(near_tie "$file" "$p" "${theirs#*"$p"}")
    where=""; [ -n "$k" ] && where=": from generated token $k on; in exact arithmetic dsmoe's token $tok and token $other are $gap nats apart"
    if [ -n "$k" ] && [ $strict -eq 0 ] && perl -e "exit !($gap < $tie_gap)"; then
      echo "TIE  $column $type, prompt $i$where"; ties=$((ties + 1)); count "$type" "$column" 0 tie
    else
      fail "$column $type, prompt $i$where"; count "$type" "$column" 0
    fi
    echo "  dsmoe:     $(printf %q "$ours")"; [ $rc_ours -eq 0 ] || tail -1 "$work/dsmoe.log" | sed 's/^/  /'
    echo "  llama.cpp: $(printf %q "$theirs")"; [ $rc_theirs -eq 0 ] || tail -2 "$work/llama.log" | sed 's/^/  /'
  done
}

# 1. dsmoe -> llama.cpp
for type in f32 $types; do
  for mode in recipe pure; do
    [ $mode = pure ] && [ $type = f32 ] && continue
    file="$work/dsmoe-$type-$mode.gguf"; flag=(); [ $mode = pure ] && flag=(--all-same-type)
    "$DSMOE" quantize --model "$MODEL" "${tokenizer[@]}" --type "$type" "${flag[@]}" --out "$file" > "$work/dsmoe-$type-$mode.log" 2>&1 \
      || { fail "dsmoe quantize $type $mode: $(tail -1 "$work/dsmoe-$type-$mode.log")"; continue; }
    same_text "$file" "$type" "dsmoe-made-$mode"
  done
done
[ -f "$work/dsmoe-f32-recipe.gguf" ] || { echo "no F32 file: nothing more to check"; exit $((fails + 1)); }

# 2. llama.cpp -> dsmoe, from dsmoe's F32 file; 3. the two makers' files compared
gguf_diff() {  # gguf_diff A B: per tensor (type, shape, data sha256) and the metadata keys whose values differ
  /usr/bin/python3 - "$1" "$2" <<'EOF'
import hashlib, struct, sys
def read_gguf(path):
    d = open(path, 'rb').read(); p = 4
    def u(fmt):
        nonlocal p
        v = struct.unpack_from('<' + fmt, d, p)[0]; p += struct.calcsize('<' + fmt); return v
    def s():
        nonlocal p
        n = u('Q'); p += n; return d[p - n:p].decode('utf-8', 'replace')
    scalar = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
    def value(t):
        if t == 8: return s()
        if t == 9:
            et, n = u('I'), u('Q'); return [value(et) for _ in range(n)]
        return u(scalar[t])
    assert d[:4] == b'GGUF', path
    u('I'); n_tensors, n_kv = u('Q'), u('Q')
    kv = {}
    for _ in range(n_kv):
        k = s(); kv[k] = value(u('I'))
    infos = []
    for _ in range(n_tensors):
        name = s(); ne = [u('Q') for _ in range(u('I'))]; infos.append((name, ne, u('I'), u('Q')))
    align = kv.get('general.alignment', 32); base = (p + align - 1) // align * align
    ends = sorted(off for *_, off in infos)[1:] + [len(d) - base]
    starts = sorted(off for *_, off in infos)
    end_of = dict(zip(starts, ends))
    return kv, {name: (t, ne, hashlib.sha256(d[base + off:base + end_of[off]]).hexdigest()) for name, ne, t, off in infos}
(akv, at), (bkv, bt) = read_gguf(sys.argv[1]), read_gguf(sys.argv[2])
differ = sorted(n for n in set(at) | set(bt) if at.get(n) != bt.get(n))
keys = sorted(k for k in set(akv) | set(bkv) if akv.get(k) != bkv.get(k))
print(f"{len(at) - len(differ)}/{len(at)} tensors identical" + (f" (differ: {', '.join(differ[:8])})" if differ else "")
      + f"; metadata differs in: {', '.join(keys) if keys else 'nothing'}")
sys.exit(1 if differ else 0)
EOF
}
declare -A identical  # type -> yes/no: llama-quantize's recipe file has dsmoe's tensors
for type in $types; do
  for mode in recipe pure; do
    file="$work/llama-$type-$mode.gguf"; flag=(); [ $mode = pure ] && flag=(--pure)
    "$LLAMA/llama-quantize" "${flag[@]}" "$work/dsmoe-f32-recipe.gguf" "$file" "$(upper "$type")" > "$work/llama-$type-$mode.log" 2>&1 \
      || { fail "llama-quantize $type $mode: $(grep -i error "$work/llama-$type-$mode.log" | tail -1)"; continue; }
    same_text "$file" "$type" "llama.cpp-made-$mode"
    ours="$work/dsmoe-$type-$mode.gguf"; [ -f "$ours" ] || continue
    if cmp -s "$ours" "$file"; then
      pass "$type $mode: dsmoe's and llama-quantize's files are identical (sha256 $(sha256sum < "$file" | cut -c1-16))"
      count "$type" "same-tensors-$mode" 1; identical[$type,$mode]=yes
    elif diff=$(gguf_diff "$ours" "$file"); then
      pass "$type $mode: same tensors as llama-quantize's file ($diff; sha256 $(sha256sum < "$ours" | cut -c1-12) vs $(sha256sum < "$file" | cut -c1-12))"
      count "$type" "same-tensors-$mode" 1; identical[$type,$mode]=yes
    elif [ $type = q4_0 ] && [ $mode = recipe ]; then
      # dsmoe's q4_0 is its own policy (embeddings, lm_head and shared experts at Q8_0), not llama.cpp's Q4_0 mix.
      echo "NOTE $type $mode: dsmoe's own q4_0 policy, not llama.cpp's mix: $diff"; identical[$type,$mode]=no
    else
      fail "$type $mode: tensors differ from llama-quantize's: $diff"; count "$type" "same-tensors-$mode" 0
      identical[$type,$mode]=no
    fi
  done
done

echo
echo "| type | dsmoe → llama.cpp | llama.cpp → dsmoe | pure: dsmoe → llama.cpp | pure: llama.cpp → dsmoe | tensors = llama-quantize's (recipe, pure) |"
echo "|---|---|---|---|---|---|"
for type in f32 $types; do
  echo "| $type | ${tally[$type,dsmoe-made-recipe]:--} | ${tally[$type,llama.cpp-made-recipe]:--} | ${tally[$type,dsmoe-made-pure]:--} | ${tally[$type,llama.cpp-made-pure]:--} | ${tally[$type,same-tensors-recipe]:--}, ${tally[$type,same-tensors-pure]:--} |"
done

# 4. Quality per type (recipe files): KLD and same top token against the F32 file on each --text.
if [ ${#texts[@]} -gt 0 ]; then
  declare -A published  # llama-quantize's help: "15  or  Q4_K_M  :  4.58G, +0.1754 ppl @ Llama-3-8B"
  while read -r name delta; do published[$name]=$delta; done < <("$LLAMA/llama-quantize" 2>&1 |
    sed -n 's/^ *[0-9]* *or *\([A-Z0-9_]*\) *:.*, \(+[0-9.]*\) ppl @ Llama-3-8B.*/\1 \2/p')
fi
for text in "${texts[@]}"; do
  name=$(basename "$text")
  "$DSMOE" perplexity -m "$work/dsmoe-f32-recipe.gguf" --text "$text" --ctx "$ctx" --save-logits "$work/base.lp" \
    > "$work/ppl-$name-f32.log" 2>&1 || { fail "perplexity f32 on $name: $(tail -1 "$work/ppl-$name-f32.log")"; continue; }
  echo
  echo "KLD against F32 on $name (ctx $ctx, $(grep -o '[0-9]* tokens' "$work/ppl-$name-f32.log" | head -1);" \
       "F32 perplexity $(grep -o '^perplexity [0-9.]*' "$work/ppl-$name-f32.log" | cut -d' ' -f2)):"
  echo
  echo "| type | tensors | bits/weight | perplexity | mean KLD | same top token | llama.cpp: +ppl @ Llama-3-8B |"
  echo "|---|---|---|---|---|---|---|"
  declare -A kld=()
  for type in $types; do
    for maker in dsmoe llama; do
      # llama-quantize's file is only measured where its tensors are not dsmoe's (identical tensors, identical KLD).
      [ $maker = llama ] && [ "${identical[$type,recipe]:-no}" = yes ] && continue
      file="$work/$maker-$type-recipe.gguf"; [ -f "$file" ] || continue
      log="$work/ppl-$name-$maker-$type.log"
      "$DSMOE" perplexity -m "$file" --text "$text" --ctx "$ctx" --kld-base "$work/base.lp" > "$log" 2>&1 \
        || { fail "perplexity $maker $type on $name: $(tail -1 "$log")"; continue; }
      k=$(grep -o 'mean KLD [0-9.e+-]*' "$log" | awk '{print $3}'); top=$(grep -o 'same top token [0-9.]*' "$log" | awk '{print $4}')
      ppl=$(grep -o '^perplexity [0-9.]*' "$log" | awk '{print $2}')
      mix=$(grep -o 'tensors: [^)]*' "$work/dsmoe-$type-recipe.log" | cut -d' ' -f2-)
      bpw=$(grep -o '[0-9.]* bits per weight' "$work/dsmoe-$type-recipe.log" | cut -d' ' -f1)
      label=$type; [ $maker = dsmoe ] && kld[$type]=$k
      [ $maker = llama ] && { label="$type (llama-quantize)"; mix="llama.cpp's"; bpw="-"; }
      echo "| $label | $mix | $bpw | $ppl | $k | $top% | ${published[$(upper "$type")]:--} |"
    done
  done
  # llama.cpp's ordering of its K mixes: Q6_K < Q5_K_M < Q4_K_M < Q3_K_M < Q2_K (perplexity increase).
  order=""; prev=""; ok=1
  for type in q6_k q5_k_m q4_k_m q3_k_m q2_k; do
    [ -n "${kld[$type]:-}" ] || continue
    order+="${order:+ < }$type ${kld[$type]}"
    [ -n "$prev" ] && ! perl -e "exit !(${kld[$prev]} < ${kld[$type]})" && ok=0
    prev=$type
  done
  echo
  [ $ok -eq 1 ] && pass "KLD on $name follows llama.cpp's ordering: $order" || fail "KLD on $name: ordering differs from llama.cpp's: $order"
done
echo
echo "$passes PASS, $ties TIE, $fails FAIL"
exit $fails
