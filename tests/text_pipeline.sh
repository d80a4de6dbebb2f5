#!/usr/bin/env bash
# The text pipeline end to end through the CLI, on the built-in synthetic corpus (no downloads):
# data synth -> tokenizer train -> data prepare -> init/train/eval, plus tokenize/detokenize/chat-template and the
# malformed-tokenizer errors.
source "$(dirname "$0")/lib.sh" "$1"
run() { "$@" > last.log 2>&1 || { echo "command failed: $*"; cat last.log; return 1; }; }

run "$DSMOE" data synth --out syn.txt --bytes 600000 --seed 3 && [ -s syn.txt.json ] && pass "data synth" || failed "data synth"
run "$DSMOE" tokenizer train --input syn.txt --vocab-size 1024 --out tok && [ -s tok/tokenizer.json ] \
  && [ -s tok/tokenizer_config.json ] && pass "tokenizer train" || failed "tokenizer train"
run "$DSMOE" tokenizer train --input syn.txt --vocab-size 1024 --out tok2 && cmp -s tok/tokenizer.json tok2/tokenizer.json \
  && pass "tokenizer train is deterministic" || failed "tokenizer train differs between runs"
run "$DSMOE" data prepare --tokenizer tok --input syn.txt --out data/syn --val-fraction 0.02 \
  && [ -s data/syn.train.bin ] && [ -s data/syn.val.bin ] && [ -s data/syn.json ] && pass "data prepare" || failed "data prepare"

text='Hello, world! 37 + 48 = 85; Ünïcödé 😀'
ids=$("$DSMOE" tokenize --tokenizer tok --ids "$text")
back=$("$DSMOE" detokenize --tokenizer tok $ids)
[ "$back" = "$text" ] && pass "tokenize/detokenize round trip ($(echo $ids | wc -w) tokens)" || failed "round trip: '$back'"
bos=$("$DSMOE" tokenize --tokenizer tok --ids --bos "hi" | cut -d' ' -f1)
[ "$bos" = 1022 ] && pass "--bos prepends BOS (id $bos)" || failed "--bos gave $bos"
"$DSMOE" tokenize --tokenizer tok "a b" | grep -q $'\t' && pass "id<TAB>piece lines" || failed "piece lines"

cat > conv.json <<'JSON'
[{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3 + 3?"}]
JSON
rendered=$("$DSMOE" chat-template --tokenizer tok --messages conv.json --add-generation-prompt)
want=$(printf '<｜begin▁of▁sentence｜>User: What is 2 + 2?\n\nAssistant: 4<｜end▁of▁sentence｜>User: And 3 + 3?\n\nAssistant:')
[ "$rendered" = "$want" ] && pass "chat template (DeepSeek format)" || failed "chat template: $rendered"

cat > cfg.json <<'JSON'
{"model_type": "deepseek", "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128,
 "moe_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "n_shared_experts": 1,
 "n_routed_experts": 8, "num_experts_per_tok": 2, "first_k_dense_replace": 1, "max_position_embeddings": 128,
 "initializer_range": 0.02, "bos_token_id": 1022, "eos_token_id": 1023}
JSON
run "$DSMOE" init --config cfg.json --seed 1 --out m0 || failed "init"
before=$("$DSMOE" eval --model m0 --data data/syn.val.bin --seq-len 64 --json | sed 's/.*"nll":\([0-9.]*\).*/\1/')
run "$DSMOE" train --model m0 --data data/syn.train.bin --seq-len 64 --batch 8 --steps 60 --lr 3e-3 --warmup 5 --out m1 \
  || failed "train"
after=$("$DSMOE" eval --model m1 --data data/syn.val.bin --seq-len 64 --json | sed 's/.*"nll":\([0-9.]*\).*/\1/')
perl -e "exit !($after < $before - 1.0)" && pass "train + eval on the prepared corpus: val nll $before -> $after" \
  || failed "val nll did not fall enough: $before -> $after"

# Text generation: sampling with a seed is reproducible; greedy is deterministic; a stop string ends the text.
s1=$("$DSMOE" generate --model m1 --tokenizer tok --prompt "37 + 48 =" -n 24 --temperature 0.9 --top-k 50 --top-p 0.95 --seed 11 2>/dev/null)
s2=$("$DSMOE" generate --model m1 --tokenizer tok --prompt "37 + 48 =" -n 24 --temperature 0.9 --top-k 50 --top-p 0.95 --seed 11 2>/dev/null)
s3=$("$DSMOE" generate --model m1 --tokenizer tok --prompt "37 + 48 =" -n 24 --temperature 0.9 --top-k 50 --top-p 0.95 --seed 12 2>/dev/null)
[ -n "$s1" ] && [ "$s1" = "$s2" ] && pass "seeded sampling reproduces the text" || failed "seeded sampling: '$s1' vs '$s2'"
[ "$s1" != "$s3" ] && pass "another seed gives other text" || failed "seeds 11 and 12 gave the same text"
g=$("$DSMOE" generate --model m1 --tokenizer tok --prompt "name:" -n 30 2>/dev/null)
first_word=$(echo "$g" | awk '{print $1}')
if [ -n "$first_word" ]; then
  st=$("$DSMOE" generate --model m1 --tokenizer tok --prompt "name:" -n 30 --stop "$first_word" 2>/dev/null)
  [ "$(echo "$st" | grep -c -- "$first_word")" = 0 ] && pass "stop string ends the text before it ('$first_word')" \
    || failed "stop string: '$st'"
fi
expect_error "generate: --prompt without tokenizer" "needs a tokenizer" "$DSMOE" generate --model m1 --prompt "hi"

# Malformed tokenizers: one error line, exit != 0.
mkdir -p bad1 bad2 bad3
echo '{"model": {"type": "BPE", ' > bad1/tokenizer.json
expect_error "tokenizer: bad JSON" "JSON" "$DSMOE" tokenize --tokenizer bad1 --ids hi
sed 's/"type":"BPE"/"type":"WordPiece"/; s/"type": "BPE"/"type": "WordPiece"/' tok/tokenizer.json > bad2/tokenizer.json
expect_error "tokenizer: unknown model type" "WordPiece" "$DSMOE" tokenize --tokenizer bad2 --ids hi
/usr/bin/env python3 - tok/tokenizer.json bad3/tokenizer.json <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
m = t["model"]["merges"]
m[5] = ("zzzq zzzr" if isinstance(m[5], str) else ["zzzq", "zzzr"])
json.dump(t, open(sys.argv[2], "w"))
PY
expect_error "tokenizer: merge of a missing token" "zzzq" "$DSMOE" tokenize --tokenizer bad3 --ids hi
expect_error "tokenize: neither text nor file" "exactly one" "$DSMOE" tokenize --tokenizer tok
expect_error "data prepare: missing input" "does not exist" "$DSMOE" data prepare --tokenizer tok --input nope.txt --out x
expect_error "detokenize: id out of range" "vocabulary" "$DSMOE" detokenize --tokenizer tok 5 99999

finish
