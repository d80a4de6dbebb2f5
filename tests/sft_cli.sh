#!/usr/bin/env bash
# SFT through the CLI: conversations rendered with the chat template, loss on assistant tokens only, the run
# machinery (checkpoints, resume, metrics) shared with pre-training, --freeze-router honoured.
source "$(dirname "$0")/lib.sh" "$1"

make_tokenizer_and_conversations
"$DSMOE" sft --model tiny --tokenizer tok --data conv.jsonl --run-dir S --seq-len 48 --batch 16 --steps 60 --lr 3e-3 \
  --warmup 5 --eval-every 30 --checkpoint-every 30 --freeze-router > sft.log 2>&1 || { failed "sft run"; tail -5 sft.log; }
first=$(grep -m1 '^step' sft.log | sed 's/.*loss \([0-9.]*\).*/\1/')
val=$(grep '^eval' sft.log | tail -1 | sed 's/.*val loss \([0-9.]*\).*/\1/')
perl -e "exit !($val < $first * 0.6)" && pass "SFT loss on assistant tokens falls ($first -> val $val)" || failed "SFT loss: $first -> $val"
[ -e S/latest/model.safetensors ] && grep -q '"sft": true' S/config.json && pass "SFT run directory with checkpoint" || failed "SFT run dir"
"$DSMOE" train --resume S --steps 70 > resume.log 2>&1 && grep -q "step    70/70" resume.log && pass "SFT resume" || failed "SFT resume: $(tail -2 resume.log)"
echo '{"messages": [{"role": "user", "content": "hi"}]}' > noassistant.jsonl
"$DSMOE" sft --model tiny --tokenizer tok --data noassistant.jsonl --run-dir T --steps 1 > err.log 2>&1
[ $? -ne 0 ] && grep -q "noassistant.jsonl:1" err.log && pass "conversation without a reply is a clear error" || failed "no-assistant error: $(cat err.log)"
finish
