#!/usr/bin/env bash
# llama.cpp's K-quant file types through the CLI, on a briefly trained model whose row widths are multiples of 256
# (hidden, dense FFN and expert widths), so every recipe gets real K-quant super-blocks rather than fallbacks:
# per-tensor types as llama-quantize chooses them (the mixes below were checked against llama-quantize's files for
# this config: same tensors byte for byte), generate on each file, quality ordered as llama.cpp's (mean KLD to the
# F32 model: Q6_K < Q5_K_M < Q4_K_M < Q3_K_M < Q2_K, each under a bound), --all-same-type, and a corrupt super-block
# scale refused at load with one line naming the tensor, row and block. No llama.cpp needed
# (bench/llama_cpp_check.sh runs the files in llama.cpp).
source "$(dirname "$0")/lib.sh" "$1"

"$DSMOE" data synth --out syn.txt --bytes 400000 --seed 5 > /dev/null && \
"$DSMOE" tokenizer train --input syn.txt --vocab-size 512 --out tok > /dev/null || failed "tokenizer"
# 3 layers (1 dense, 2 MoE), 16 routed experts top-4 + 1 shared, all widths multiples of 256.
cat > k256.json <<'EOF'
{"architectures": ["DeepseekForCausalLM"], "model_type": "deepseek", "vocab_size": 512, "hidden_size": 256,
 "intermediate_size": 768, "moe_intermediate_size": 256, "num_hidden_layers": 3, "first_k_dense_replace": 1,
 "num_attention_heads": 4, "num_key_value_heads": 4, "n_shared_experts": 1, "n_routed_experts": 16,
 "num_experts_per_tok": 4, "max_position_embeddings": 256, "bos_token_id": 510, "eos_token_id": 511,
 "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "scoring_func": "softmax", "norm_topk_prob": false,
 "aux_loss_alpha": 0.01, "seq_aux": true, "tie_word_embeddings": false}
EOF
"$DSMOE" train --run-dir R --model=k256.json --data=syn.txt --tokenizer=tok --steps=30 --seq-len=64 --lr=0.003 \
  --warmup=5 --schedule=cosine --log-every=40 > train.log 2>&1 || { failed "train: $(tail -3 train.log)"; finish; exit 1; }
"$DSMOE" quantize --model R/latest --tokenizer tok --type f32 --out f32.gguf > f32.log 2>&1 \
  && pass "F32 GGUF of the trained model" || failed "quantize f32: $(tail -2 f32.log)"

P="name: Ines"
gen() { "$DSMOE" generate --temperature 0 -n 12 --ignore-eos --prompt "$P" "$@" 2>/dev/null; }
"$DSMOE" data synth --out text.txt --bytes 6000 --seed 9 > /dev/null
"$DSMOE" perplexity -m f32.gguf --text text.txt --ctx 64 --save-logits base.lp > p_f32.log 2>&1 \
  || failed "perplexity f32: $(tail -2 p_f32.log)"

# type : tensors per type (the same tensors llama-quantize writes from f32.gguf, checked byte for byte) : max mean
# KLD : min same top token %. Measured (2 threads): KLD 4.9e-5, 1.2e-4, 3.2e-4, 3.1e-4, 9.7e-4, 3.9e-3; same top
# token 98.5, 98.5, 96.9, 97.0, 96.7, 93.9%. Bounds: 3-5x the KLD, 2.5-5 points under the share.
declare -A kld
for spec in "q6_k:F32 x9, Q6_K x29:0.0002:96" \
            "q5_k_m:F32 x9, Q5_K x25, Q6_K x4:0.0004:95" \
            "q4_k_m:F32 x9, Q4_K x25, Q6_K x4:0.0015:94" \
            "q4_k_s:F32 x9, Q4_K x25, Q5_K x3, Q6_K x1:0.0015:94" \
            "q3_k_m:F32 x9, Q3_K x17, Q4_K x9, Q5_K x2, Q6_K x1:0.003:93" \
            "q2_k:F32 x9, Q2_K x17, Q3_K x11, Q6_K x1:0.015:89"; do
  IFS=: read -r type mix max_kld min_top <<< "$spec"
  "$DSMOE" quantize --model f32.gguf --type $type --out $type.gguf > q_$type.log 2>&1
  got=$(grep -o 'tensors: [^)]*' q_$type.log); bpw=$(grep -o '[0-9.]* bits per weight' q_$type.log); text=$(gen --model $type.gguf)
  [ "$got" = "tensors: $mix" ] && [ -n "$bpw" ] && [ -n "$text" ] \
    && pass "quantize --type $type: $got, $bpw; generate: $(printf %q "$text")" \
    || failed "quantize $type: '$got' vs '$mix': $(tail -2 q_$type.log)"
  "$DSMOE" perplexity -m $type.gguf --text text.txt --ctx 64 --kld-base base.lp > p_$type.log 2>&1
  k=$(grep -o 'mean KLD [0-9.]*' p_$type.log | grep -o '[0-9.]*$'); top=$(grep -o 'same top token [0-9.]*' p_$type.log | grep -o '[0-9.]*$')
  kld[$type]=${k:-9}
  [ -n "$k" ] && perl -e "exit !($k <= $max_kld && $top >= $min_top)" \
    && pass "$type vs F32: mean KLD $k (<= $max_kld), same top token $top% (>= $min_top%)" \
    || failed "$type KLD: $(tail -3 p_$type.log)"
done
# llama.cpp's ordering of its mixes (perplexity increase published by llama-quantize).
perl -e "exit !(${kld[q6_k]} < ${kld[q5_k_m]} && ${kld[q5_k_m]} < ${kld[q4_k_m]} && ${kld[q4_k_m]} < ${kld[q3_k_m]} && ${kld[q3_k_m]} < ${kld[q2_k]})" \
  && pass "KLD ordered as llama.cpp's mixes: q6_k ${kld[q6_k]} < q5_k_m ${kld[q5_k_m]} < q4_k_m ${kld[q4_k_m]} < q3_k_m ${kld[q3_k_m]} < q2_k ${kld[q2_k]}" \
  || failed "KLD order: q6_k ${kld[q6_k]} q5_k_m ${kld[q5_k_m]} q4_k_m ${kld[q4_k_m]} q3_k_m ${kld[q3_k_m]} q2_k ${kld[q2_k]}"

# --all-same-type: every matrix the base type (llama-quantize --pure), embeddings and output included.
"$DSMOE" quantize --model f32.gguf --type q4_k_m --all-same-type --out pure.gguf > pure.log 2>&1
[ "$(grep -o 'tensors: [^)]*' pure.log)" = "tensors: F32 x9, Q4_K x29" ] && [ -n "$(gen --model pure.gguf)" ] \
  && pass "--all-same-type q4_k_m: $(grep -o 'tensors: [^)]*' pure.log); generate runs" \
  || failed "--all-same-type: $(cat pure.log | tail -2)"
# gguf_offset FILE [TENSOR]: absolute offset of the tensor's data in the file (no TENSOR: of the data section).
gguf_offset() {
  perl -e '
    open(my $f, "<:raw", $ARGV[0]) or die "$ARGV[0]: $!"; local $/; my $d = <$f>; my $p = 4;
    sub u32 { $p += 4; unpack("V", substr($d, $p - 4, 4)) }
    sub u64 { $p += 8; unpack("Q<", substr($d, $p - 8, 8)) }
    sub str { my $n = u64(); $p += $n; substr($d, $p - $n, $n) }
    my %size = (0, 1, 1, 1, 2, 2, 3, 2, 4, 4, 5, 4, 6, 4, 7, 1, 10, 8, 11, 8, 12, 8);
    sub skip { my $t = shift; if ($t == 8) { str() } elsif ($t == 9) { my $et = u32(); skip($et) for 1 .. u64() }
               else { $p += $size{$t} } }
    u32(); my ($nt, $nkv, $align) = (u64(), u64(), 32);
    for (1 .. $nkv) { my $k = str(); my $t = u32(); $align = unpack("V", substr($d, $p, 4)) if $k eq "general.alignment"; skip($t) }
    my %off;
    for (1 .. $nt) { my $name = str(); u64() for 1 .. u32(); u32(); $off{$name} = u64() }
    my $name = $ARGV[1] // ""; die "no tensor $name\n" if $name ne "" && !defined $off{$name};
    print int(($p + $align - 1) / $align) * $align + ($name eq "" ? 0 : $off{$name}), "\n";' "$@"
}
# general.name of a GGUF source is kept, as llama-quantize keeps it (the key: u32 type, u64 length, bytes).
name_of() { perl -e 'read STDIN, $d, 1 << 16; $i = index($d, "general.name"); exit 1 if $i < 0;
  $n = unpack("Q<", substr($d, $i + 16, 8)); print substr($d, $i + 24, $n)' < "$1"; }
[ -n "$(name_of f32.gguf)" ] && [ "$(name_of q4_k_m.gguf)" = "$(name_of f32.gguf)" ] \
  && pass "quantize keeps the source's general.name ($(name_of q4_k_m.gguf))" \
  || failed "general.name: f32.gguf '$(name_of f32.gguf)', q4_k_m.gguf '$(name_of q4_k_m.gguf)'"
# From the HF directory and from the F32 GGUF: the same tensors (the file differs only in general.name).
"$DSMOE" quantize --model R/latest --tokenizer tok --type q4_k_m --out hf.gguf > hf.log 2>&1
data_sha() { tail -c +$(($(gguf_offset "$1") + 1)) "$1" | sha256sum; }
[ "$(data_sha hf.gguf)" = "$(data_sha q4_k_m.gguf)" ] \
  && pass "q4_k_m from the HF directory = from the F32 GGUF (tensor data)" || failed "HF vs GGUF source: tensor data differ"

# A Q6_K super-block (210 bytes, fp16 d last) of an expert down projection with d = 0x7c00 (+inf): refused at load.
cp q6_k.gguf bad.gguf
off=$(gguf_offset bad.gguf blk.2.ffn_down_exps.weight)
[ -n "$off" ] && printf '\x00\x7c' | dd of=bad.gguf bs=1 seek=$((off + 1000 * 210 + 208)) conv=notrunc status=none
"$DSMOE" generate --model bad.gguf --prompt "$P" -n 2 > bad.out 2> bad.err; rc=$?
# (stderr: the "loading ..." memory line, then exactly one error line)
[ $rc -eq 1 ] && [ "$(grep -c '^error:' bad.err)" -eq 1 ] && ! grep -v -e '^error:' -e '^loading ' bad.err | grep -q . \
  && grep -q "^error: bad.gguf: tensor blk.2.ffn_down_exps.weight (Q6_K) row 1000 of 4096: Q6_K block 0: scale d is inf" bad.err \
  && pass "corrupt Q6_K scale: one error line: $(grep '^error:' bad.err)" || failed "corrupt scale (rc $rc): $(head -3 bad.err)"
# A Q4_K super-block's dmin (bytes 2-3 of 144) in the token embeddings, NaN this time.
cp q4_k_m.gguf bad2.gguf
off=$(gguf_offset bad2.gguf token_embd.weight)
[ -n "$off" ] && printf '\x01\x7e' | dd of=bad2.gguf bs=1 seek=$((off + 7 * 144 + 2)) conv=notrunc status=none
expect_error "corrupt Q4_K dmin (NaN) names tensor, row and scale" "token_embd.weight (Q4_K) row 7 of 512: .*dmin is NaN" \
  "$DSMOE" perplexity -m bad2.gguf --text text.txt --ctx 64
finish
