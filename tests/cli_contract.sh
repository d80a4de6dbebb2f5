#!/usr/bin/env bash
# The dsmoe CLI scripting contract: init -> train -> eval -> generate on a tiny model, and every bad input ends
# in one "error:" line with a non-zero exit (never a crash, hang or silent success).
source "$(dirname "$0")/lib.sh" "$1"

cat > tiny.json <<'JSON'
{"model_type": "deepseek", "architectures": ["DeepseekForCausalLM"], "vocab_size": 64, "hidden_size": 32,
 "intermediate_size": 48, "moe_intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2, "n_shared_experts": 1, "n_routed_experts": 8, "num_experts_per_tok": 2,
 "first_k_dense_replace": 1, "moe_layer_freq": 1, "aux_loss_alpha": 0.01, "max_position_embeddings": 64,
 "initializer_range": 0.05}
JSON
# A learnable stream: t[i+1] = (t[i] * 5 + 3) % 64.
perl -e 'my $x = 1; my @a; for (1..4000) { push @a, $x; $x = ($x * 5 + 3) % 64 } print pack("V*", @a)' > tokens.bin
perl -e 'print pack("V*", 1, 2, 3, 99)' > badvocab.bin
printf 'abc' > odd.bin
perl -e 'print pack("V*", 1, 2, 3, 4, 5)' > short.bin

# --- the happy path ---
"$DSMOE" init --config tiny.json --seed 3 --out m0 > init.log 2>&1 && pass "init" || failed "init: $(cat init.log)"
"$DSMOE" -t 2 train --model m0 --data tokens.bin --seq-len 16 --batch 4 --steps 40 --lr 1e-2 --warmup 4 \
  --schedule cosine --no-shuffle --out m1 --save-dtype bf16 > train.log 2>&1 && pass "train" || failed "train: $(tail -3 train.log)"
first=$(grep -m1 '^step' train.log | sed 's/.*loss \([0-9.]*\).*/\1/')
last=$(grep '^step' train.log | tail -1 | sed 's/.*loss \([0-9.]*\).*/\1/')
[ "$(grep -c '^step' train.log)" = 40 ] && pass "one line per step" || failed "step lines"
perl -e "exit !($last < $first * 0.7)" && pass "loss falls ($first -> $last)" || failed "loss did not fall ($first -> $last)"
out=$("$DSMOE" eval --model m1 --data tokens.bin --seq-len 16 --batch 3 --json 2>&1)
echo "$out" | grep -q '"nll"' && echo "$out" | grep -q '"ppl"' && echo "$out" | grep -q '"tokens":3984' \
  && pass "eval --json ($out)" || failed "eval json: $out"
gen=$("$DSMOE" generate --model m1 --prompt-ids 1,8,43 --max-new-tokens 5 --temperature 0 --ids 2>&1)
[ "$(echo "$gen" | wc -w)" = 8 ] && [ "$(echo "$gen" | cut -d' ' -f1-3)" = "1 8 43" ] \
  && pass "generate --ids ($gen)" || failed "generate: $gen"
gen2=$("$DSMOE" generate --model m1 --prompt-ids 1,8,43 --max-new-tokens 5 --temperature 0 --ids 2>&1)
[ "$gen" = "$gen2" ] && pass "greedy is deterministic" || failed "greedy differs: $gen vs $gen2"

# --- GGUF export: the same model through a GGUF file gives the same results ---
"$DSMOE" quantize --model m1 --type f32 --out m1.gguf > q.log 2>&1 && "$DSMOE" quantize --model m1 --type q8_0 --out m1-q8.gguf >> q.log 2>&1 \
  && pass "quantize f32 and q8_0" || failed "quantize: $(cat q.log)"
hf=$("$DSMOE" eval --model m1 --data tokens.bin --seq-len 16 --json 2>&1)
gg=$("$DSMOE" eval --model m1.gguf --data tokens.bin --seq-len 16 --json 2>&1)
[ "$hf" = "$gg" ] && pass "eval on the F32 GGUF == eval on the HF dir" || failed "gguf eval: $gg vs $hf"
g8=$("$DSMOE" generate --model m1-q8.gguf --prompt-ids 1,8,43 --max-new-tokens 5 --temperature 0 --ids 2>&1)
[ "$g8" = "$gen" ] && pass "greedy on Q8_0 GGUF == HF ($g8)" || failed "q8_0 greedy: $g8 vs $gen"
"$DSMOE" perplexity -m m1 --data tokens.bin --ctx 16 --save-logits base.lp > p0.log 2>&1 \
  && "$DSMOE" perplexity -m m1.gguf --data tokens.bin --ctx 16 --kld-base base.lp > p1.log 2>&1 \
  && "$DSMOE" perplexity -m m1-q8.gguf --data tokens.bin --ctx 16 --kld-base base.lp > p2.log 2>&1 \
  && grep -q "mean KLD 0.000000, same top token 100.00%" p1.log && grep -q "mean KLD" p2.log \
  && pass "perplexity + KLD: F32 GGUF identical to HF; Q8_0 $(grep -o 'mean KLD [0-9.]*' p2.log)" \
  || failed "perplexity/KLD: $(cat p0.log p1.log p2.log | tail -3)"
printf 'GGUF\x03\x00\x00\x00' > trunc.gguf
expect_error "truncated GGUF" "trunc.gguf" "$DSMOE" eval --model trunc.gguf --data tokens.bin --seq-len 8

# --- bad inputs: exit != 0 and one "error:" line ---
expect_error "missing model dir" "does not exist" "$DSMOE" eval --model nope --data tokens.bin --seq-len 8
expect_error "token id >= vocab" "vocab_size" "$DSMOE" eval --model m1 --data badvocab.bin --seq-len 2
expect_error "token file not uint32" "multiple of 4" "$DSMOE" eval --model m1 --data odd.bin --seq-len 2
expect_error "data too short" "too short" "$DSMOE" train --model m1 --data short.bin --seq-len 16 --steps 1 --lr 1 --out x
expect_error "bad flag" "bogus" "$DSMOE" eval --model m1 --data tokens.bin --seq-len 8 --bogus
expect_error "bad schedule" "schedule" "$DSMOE" train --model m1 --data tokens.bin --seq-len 8 --steps 1 --lr 1 --out x --schedule linear
expect_error "bad prompt ids" "bad token id" "$DSMOE" generate --model m1 --prompt-ids 1,x,3
expect_error "prompt id >= vocab" "vocab_size" "$DSMOE" generate --model m1 --prompt-ids 1,64
cp -r m1 badjson && echo '{"vocab_size": ' > badjson/config.json
expect_error "bad config JSON" "invalid JSON" "$DSMOE" eval --model badjson --data tokens.bin --seq-len 8
cp -r m1 unknownkey && sed -i 's/"rope_theta"/"rope_theat"/' unknownkey/config.json
expect_error "unknown config key" "unknown config key" "$DSMOE" eval --model unknownkey --data tokens.bin --seq-len 8
cp -r m1 trunc && truncate -s -64 trunc/model.safetensors
expect_error "truncated weights" "truncated" "$DSMOE" eval --model trunc --data tokens.bin --seq-len 8
cp -r m1 badhdr && printf '\xff\xff\xff\xff\xff\xff\xff\x7f' | dd of=badhdr/model.safetensors conv=notrunc 2>/dev/null
expect_error "bad safetensors header" "header" "$DSMOE" eval --model badhdr --data tokens.bin --seq-len 8
expect_error "seq longer than max positions" "max_position_embeddings" "$DSMOE" eval --model m1 --data tokens.bin --seq-len 200

# ep-plan: the reference's 16B figures (expert-parallel.md: ~685 GB all-to-all, ~5.6 GB dense and ~6.5 GB expert
# all-reduce per rank per step at EP 8 x DP 8, 4.5K x 4K tokens, bf16), and its argument errors.
"$DSMOE" ep-plan --config deepseek-moe-16b-base --ep 8 --dp 8 --tokens-per-step 18874368 --dtype bf16 > plan.txt 2>&1 \
  && grep -q "all-to-all.*| 684.913 |" plan.txt && grep -q "dense all-reduce | 5.620 |" plan.txt \
  && grep -q "expert all-reduce | 6.540 |" plan.txt && pass "ep-plan 16B EP 8 x DP 8 matches the reference" \
  || failed "ep-plan 16B: $(cat plan.txt)"
expect_error "ep-plan --ep not dividing the experts" "does not divide" "$DSMOE" ep-plan --config deepseek-moe-16b-base --ep 3 --tokens-per-step 300
expect_error "ep-plan tokens not splitting over ranks" "do not split evenly" "$DSMOE" ep-plan --config deepseek-moe-16b-base --ep 8 --dp 2 --tokens-per-step 100
expect_error "ep-plan without --tokens-per-step" "tokens-per-step" "$DSMOE" ep-plan --config deepseek-moe-16b-base --ep 8


# ---- dsmoe flops (begin): parameter counts and training FLOPs by the paper's count and exactly ----
# 16B (reference §4): 16,375,728,128 params, 2,828,650,496 activated with the embedding table, paper count
# 18,169,724,928 FLOPs per token x 4096 tokens; exact: 6 x 2,618,818,560 activated matmul weights + 12·28·2048·4096.
fl=$("$DSMOE" flops --preset deepseek-moe-16b --seq-len 4096 --json 2>&1)
missing=""
for field in '"total_params":16375728128' '"activated_params":2828650496' '"total_params_no_embedding":16166012928' \
  '"activated_params_no_embedding":2618935296' '"paper_flops":74423193305088' '"exact_flops":75904957022208' \
  '"exact_flops_causal":70132520976384' '"seq_len":4096' '"tokens":4096' '"nominal_expert":0.25' \
  '"nominal_activated_ffn":2.0'; do
  echo "$fl" | grep -q -- "$field" || missing="$missing $field"
done
[ -z "$missing" ] && [ "$(echo "$fl" | wc -l)" = 1 ] \
  && pass "flops --preset deepseek-moe-16b --json (one object, reference values)" || failed "flops json lacks$missing: $fl"
fl=$("$DSMOE" flops --spec '{"vocab_size": 16, "hidden_size": 8, "intermediate_size": 21, "num_hidden_layers": 2, "num_attention_heads": 2}' \
  --seq-len 4 --tokens 10 --set intermediate-size=42 --json 2>&1)
echo "$fl" | grep -q '"tokens":10' && echo "$fl" | grep -q '"nominal_dense_ffn":2.0' \
  && pass "flops --spec with --set and --tokens" || failed "flops --spec/--set: $fl"
"$DSMOE" flops --paper > paper.txt 2>&1 && grep -q '| 3 | DeepSeekMoE 16B | deepseek-moe-16b-base | FLOPs per 4K tokens | 74.4T | 74.4T |.*| yes |' paper.txt \
  && grep -q 'DeepSeekMoE 145B.*FLOPs per 4K tokens | 585.6T | 585.5T .*NOT REPRODUCED' paper.txt \
  && pass "flops --paper: 16B reproduced, 145B's documented gap shown" || failed "flops --paper: $(head -20 paper.txt)"
"$DSMOE" flops --paper --json > paper.json 2>&1 && perl -MJSON::PP -e 'local $/; my $r = decode_json(<STDIN>);
  exit !(@$r >= 40 && grep { $_->{preset} eq "llama2-7b" && $_->{match} } @$r)' < paper.json \
  && pass "flops --paper --json (array of rows)" || failed "flops --paper --json: $(head -c 300 paper.json)"
expect_error "flops missing config" "cannot open config" "$DSMOE" flops --config nope.json --seq-len 8
expect_error "flops unknown preset" "unknown model preset 'nope'" "$DSMOE" flops --preset nope --seq-len 8
expect_error "flops bad --set key" "unknown config field 'bogus'" "$DSMOE" flops --preset tiny --set bogus=1
expect_error "flops bad --set value" "must be an integer" "$DSMOE" flops --preset tiny --set hidden_size=wide
expect_error "flops zero seq-len" "seq-len must be > 0" "$DSMOE" flops --preset tiny --seq-len 0
expect_error "flops negative seq-len" "seq-len must be > 0" "$DSMOE" flops --preset tiny --seq-len -5
expect_error "flops bad --spec" "invalid JSON" "$DSMOE" flops --spec '{"vocab_size": '
expect_error "flops without a model" "exactly one of" "$DSMOE" flops --seq-len 8
# ---- dsmoe flops (end) ----

finish
