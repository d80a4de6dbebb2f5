#!/usr/bin/env bash
# GGUF through the CLI on a small trained model: quantize (HF dir -> GGUF with tokenizer metadata; GGUF -> GGUF),
# the tokenizer read back from the file, greedy text identical to the HF directory's, --no-mmap, the F16 KV cache,
# the >= 8-bit default for every-token tensors, synth from a config, bench JSON fields, perplexity on a GGUF, chat on
# a GGUF, llama.cpp's K-quant mixes (q4_k_m, q2_k: per-tensor types), and clear errors (memory limit, bad arguments).
source "$(dirname "$0")/lib.sh" "$1"

"$DSMOE" train --preset tiny --run-dir R --steps 40 > train.log 2>&1 || { failed "train tiny: $(tail -3 train.log)"; finish; exit 1; }
mkdir -p M && cp R/latest/config.json R/latest/model.safetensors R/data/tokenizer/* M/ || failed "model dir"
P="The number"
gen() { "$DSMOE" generate --temperature 0 -n 12 --ignore-eos --prompt "$P" "$@" 2>/dev/null; }
hf=$(gen --model M)
[ -n "$hf" ] && pass "generate on the HF dir: $(printf %q "$hf")" || failed "generate on HF dir"

"$DSMOE" quantize --model M --type f32 --out f32.gguf > q.log 2>&1 && "$DSMOE" quantize --model M --type q8_0 --out q8.gguf >> q.log 2>&1 \
  && pass "quantize f32 and q8_0" || failed "quantize: $(tail -2 q.log)"
[ "$(gen --model f32.gguf)" = "$hf" ] && pass "F32 GGUF (tokenizer from its metadata) generates the HF dir's text" \
  || failed "f32 gguf text: $(gen --model f32.gguf) vs $hf"
[ "$(gen --model q8.gguf)" = "$hf" ] && pass "Q8_0 GGUF generates the same greedy text" || failed "q8 gguf text: $(gen --model q8.gguf)"
[ "$(gen --model q8.gguf --no-mmap)" = "$(gen --model q8.gguf)" ] && pass "--no-mmap: same text" || failed "--no-mmap differs"
[ -n "$(gen --model q8.gguf --kv-type f16)" ] && pass "F16 KV cache generates" || failed "kv f16"
"$DSMOE" quantize --model q8.gguf --type f16 --out f16.gguf > q2.log 2>&1 && [ "$(gen --model f16.gguf)" = "$hf" ] \
  && pass "GGUF -> GGUF keeps the tokenizer and the text" || failed "gguf->gguf: $(tail -2 q2.log)"

"$DSMOE" quantize --model M --type q4_0 --out q4.gguf > q4.log 2>&1
"$DSMOE" quantize --model M --type q4_0 --all-same-type --out q4all.gguf > q4all.log 2>&1
grep -q "Q8_0 x" q4.log && ! grep -q "Q8_0 x" q4all.log && [ -n "$(gen --model q4.gguf)" ] \
  && pass "q4_0 keeps embeddings/lm_head/shared experts at Q8_0 unless --all-same-type ($(grep -o 'tensors:.*' q4.log))" \
  || failed "type policy: $(cat q4.log q4all.log)"

# synth from a config: random weights straight into the target type, with the tokenizer embedded.
cp M/config.json small.json
"$DSMOE" synth --config small.json --type q4_0 --tokenizer M --out syn.gguf > syn.log 2>&1 && [ -n "$(gen --model syn.gguf)" ] \
  && pass "synth --config (q4_0, tokenizer metadata) generates" || failed "synth: $(tail -2 syn.log)"
"$DSMOE" bench -m q8.gguf -p 16 -n 4 -r 2 -o json > bench.json 2> bench.err
for f in model_filename model_type n_threads n_prompt n_gen avg_ns stddev_ns avg_ts stddev_ts samples_ts; do
  grep -q "\"$f\"" bench.json || { failed "bench json lacks $f"; break; }
done && pass "bench -o json has llama-bench's fields ($(grep -o 'read per decoded token [0-9.]* MB' bench.err))"

"$DSMOE" data synth --out text.txt --bytes 20000 --seed 2 > /dev/null
"$DSMOE" perplexity -m f32.gguf --text text.txt --ctx 32 > ppl.log 2>&1 && grep -q "^perplexity" ppl.log \
  && pass "perplexity --text on a GGUF (its tokenizer): $(grep -o 'perplexity [0-9.]*' ppl.log)" || failed "ppl: $(tail -2 ppl.log)"
# Quantization quality on the trained model, judged as llama.cpp users do: mean KL divergence to the F32 model's
# next-token distributions and the share of positions with the same top token (bounds ~8x the measured KLD:
# 6e-6 for Q8_0, 2.7e-4 for Q4_0; same top token 99.4% and 97.3%).
"$DSMOE" perplexity -m M --text text.txt --ctx 32 --save-logits base.lp > p0.log 2>&1
for spec in "q8:0.00005:97" "q4:0.002:92"; do
  IFS=: read -r name max_kld min_top <<< "$spec"
  "$DSMOE" perplexity -m $name.gguf --text text.txt --ctx 32 --kld-base base.lp > p_$name.log 2>&1
  kld=$(grep -o 'mean KLD [0-9.]*' p_$name.log | grep -o '[0-9.]*$'); top=$(grep -o 'same top token [0-9.]*' p_$name.log | grep -o '[0-9.]*$')
  [ -n "$kld" ] && perl -e "exit !($kld <= $max_kld && $top >= $min_top)" \
    && pass "$name KLD vs F32 on the trained model: $kld (<= $max_kld), same top token $top% (>= $min_top%)" \
    || failed "$name KLD: $(cat p_$name.log p0.log | tail -3)"
done
printf 'hello\n' | "$DSMOE" chat --model q8.gguf --temperature 0 -n 4 > chat.out 2> chat.err \
  && pass "chat on a GGUF with its tokenizer" || failed "chat gguf: $(cat chat.err)"

# llama.cpp's K-quant mixes: per-tensor types as llama-quantize chooses them for a deepseek model (counts worked out
# by hand from llama_tensor_get_type). The tiny model (width 64, 8 experts) exercises the fallbacks and the 8-expert
# rules: rows are never whole 256-weight super-blocks, attn_k/attn_v get Q8_0, the dense ffn_down (width 176, not a
# multiple of 32) F16.
for spec in "q4_k_m:F32 x9, F16 x1, Q5_0 x16, Q5_1 x3, Q8_0 x9" "q2_k:F32 x9, F16 x1, Q5_1 x3, Q8_0 x7, IQ4_NL x18"; do
  IFS=: read -r type mix <<< "$spec"
  "$DSMOE" quantize --model M --type $type --out $type.gguf > $type.log 2>&1
  got=$(grep -o 'tensors: [^)]*' $type.log)
  [ "$got" = "tensors: $mix" ] && grep -q "type $type (general.file_type [0-9]*): .* bits per weight" $type.log \
    && [ -n "$(gen --model $type.gguf)" ] \
    && pass "quantize --type $type: $got, $(grep -o '[0-9.]* bits per weight' $type.log); generate runs" \
    || failed "quantize $type: $got vs $mix: $(tail -3 $type.log)"
done
# A 256-wide model (synth, random weights) gets real K-quants: Q4_K_M = Q4_K with Q6_K for output and the
# use_more_bits layer's attn_v; expert rows of 96 fall back (Q4_K -> Q5_0, Q6_K -> Q8_0); --all-same-type keeps only
# the fallback. Q2_K: Q3_K for attn_v, attn_output and ffn_down (IQ4_NL where rows are 96).
cat > w256.json <<'EOF2'
{"vocab_size": 300, "hidden_size": 256, "intermediate_size": 512, "moe_intermediate_size": 96, "num_hidden_layers": 3,
 "num_attention_heads": 4, "num_key_value_heads": 4, "n_shared_experts": 1, "n_routed_experts": 4,
 "num_experts_per_tok": 2, "first_k_dense_replace": 1, "max_position_embeddings": 128, "bos_token_id": 0,
 "eos_token_id": 1}
EOF2
for spec in "q4_k_m::F32 x9, Q5_0 x2, Q8_0 x2, Q4_K x23, Q6_K x2" "q4_k_m:--all-same-type:F32 x9, Q5_0 x4, Q4_K x25" \
            "q2_k::F32 x9, Q2_K x17, Q3_K x7, Q6_K x1, IQ4_NL x4"; do
  IFS=: read -r type flag mix <<< "$spec"
  "$DSMOE" synth --config w256.json --type $type $flag --out w256.gguf > w256.log 2>&1
  got=$(grep -o 'tensors: [^)]*' w256.log)
  [ "$got" = "tensors: $mix" ] && "$DSMOE" generate --model w256.gguf --prompt-ids 1,2,3 -n 4 --ids > /dev/null 2>&1 \
    && pass "synth --type $type${flag:+ $flag} (256 wide): $got; generate runs" \
    || failed "synth $type $flag: $got vs $mix: $(tail -3 w256.log)"
done
expect_error "unknown --type names the choices" "q4_k_m" "$DSMOE" quantize --model M --type q4_k_x --out x.gguf

# errors
# (a sparse 8 GiB file under a 4 GiB address-space limit: refused before it is mapped; OpenBLAS itself needs a few
# hundred MB of address space to start, so the limit cannot be much smaller)
truncate -s 8G big.gguf
(ulimit -v 4000000; exec "$DSMOE" generate --model big.gguf --prompt x -n 1) > out.log 2> err.log
[ $? -eq 1 ] && grep -q "only .* GiB of memory is usable" err.log && pass "a model larger than usable memory: clear error" \
  || failed "memory error: $(cat err.log)"
expect_error "synth needs a preset or config" "exactly one of" "$DSMOE" synth --out x.gguf
expect_error "unknown preset" "unknown model preset" "$DSMOE" synth --preset nope --out x.gguf
expect_error "quantize --out must be .gguf" "should end in .gguf" "$DSMOE" quantize --model M --type q8_0 --out x.bin
expect_error "kv type" "kv-type" "$DSMOE" generate --model q8.gguf --prompt x --kv-type q8_0
head -c 100000 q8.gguf > cut.gguf
expect_error "truncated GGUF" "cut.gguf" "$DSMOE" generate --model cut.gguf --prompt x
finish
