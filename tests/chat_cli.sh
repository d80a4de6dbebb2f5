#!/usr/bin/env bash
# dsmoe chat through the CLI on a tiny SFT'd model: replies per input line, KV-cache reuse that changes nothing
# (same text as re-evaluating the whole conversation, same as generate on the rendered prompt), /reset, context
# overflow, the system-prompt warning, the missing-tokenizer error, and Ctrl-C (stops a reply; twice at the prompt
# quits). Every wait on the background chat is for an observable event, with a generous upper bound.
source "$(dirname "$0")/lib.sh" "$1"

make_tokenizer_and_conversations
"$DSMOE" sft --model tiny --tokenizer tok --data conv.jsonl --run-dir S --seq-len 48 --batch 16 --steps 40 --lr 3e-3 \
  --warmup 5 > sft.log 2>&1 || { failed "sft run"; tail -5 sft.log; }
M=S/latest
chat() { "$DSMOE" chat --model $M --tokenizer tok "$@"; }

# (1) one reply per line; --stop '\n' keeps each reply on one line.
printf 'What is 12 + 30?\nWhat is 7 + 8?\n' > two.txt
chat --temperature 0 -n 8 --stop $'\n' -v < two.txt > two.out 2> two.err
rc=$?
[ $rc -eq 0 ] && [ "$(wc -l < two.out)" = 2 ] && [ "$(grep -c 'prompt eval time' two.err)" = 2 ] \
  && pass "two lines in, two replies out, timings with -v ($(paste -sd'|' two.out))" \
  || failed "two replies (rc $rc): $(cat two.out two.err | head -6)"
printf 'What is 12 + 30?\n' | chat --temperature 0 -n 8 > quiet.out 2> quiet.err
[ ! -s quiet.err ] && pass "quiet without -v" || failed "stderr without -v: $(head -3 quiet.err)"

# (2) KV-cache reuse: identical text with --no-kv-reuse (greedy, three turns), and each reply equals generate on the
# prompt `dsmoe chat-template --add-generation-prompt --ids` renders for the conversation so far.
printf 'What is 12 + 30?\nWhat is 7 + 8?\nAnd 40 + 2?\n' > three.txt
chat --temperature 0 -n 12 -v < three.txt > reuse.out 2> reuse.err
chat --temperature 0 -n 12 --no-kv-reuse < three.txt > noreuse.out 2>&1
grep -q "reused [1-9][0-9]* cached tokens" reuse.err && cmp -s reuse.out noreuse.out \
  && pass "KV-cache reuse gives the text of full re-evaluation ($(grep -o 'reused [0-9]* cached tokens of a [0-9]*' reuse.err | tail -1))" \
  || failed "KV reuse: $(paste -sd'|' reuse.out) vs $(paste -sd'|' noreuse.out)"
/usr/bin/env python3 - two.out conv1.json conv2.json <<'PY'
import json, sys
replies = open(sys.argv[1], "rb").read().decode("utf-8").split("\n")
u = [{"role": "user", "content": "What is 12 + 30?"}, {"role": "user", "content": "What is 7 + 8?"}]
json.dump([u[0]], open(sys.argv[2], "w"))
json.dump([u[0], {"role": "assistant", "content": replies[0]}, u[1]], open(sys.argv[3], "w"))
PY
if [ $? -ne 0 ]; then failed "first reply is not UTF-8: $(head -c 80 two.out | od -c | head -2)"; else
  for turn in 1 2; do
    ids=$("$DSMOE" chat-template --tokenizer tok --messages conv$turn.json --add-generation-prompt --ids)
    gen=$("$DSMOE" generate --model $M --tokenizer tok --prompt-ids "$ids" -n 8 --stop $'\n' 2>/dev/null)
    gen="${gen#"${gen%%[![:space:]]*}"}"  # chat does not show the reply's leading space
    got=$(sed -n ${turn}p two.out)
    [ -n "$got" ] && [ "$got" = "$gen" ] && pass "reply $turn == generate on the rendered conversation ('$got')" \
      || failed "reply $turn: chat '$got' vs generate '$gen'"
  done
fi

# /reset starts over: the sampler too (seeded sampling repeats the first reply).
printf 'What is 3 + 4?\n/reset\nWhat is 3 + 4?\n' | chat --temperature 0.9 --seed 7 -n 10 --stop $'\n' > reset.out 2> reset.err
[ "$(wc -l < reset.out)" = 2 ] && [ "$(sed -n 1p reset.out)" = "$(sed -n 2p reset.out)" ] && grep -q "cleared" reset.err \
  && pass "/reset clears conversation, cache and sampler" || failed "/reset: $(paste -sd'|' reset.out) $(cat reset.err)"

# Context overflow: old turns are dropped, a message too long for the context is refused; never a crash.
printf 'What is 1 + 2?\nWhat is 3 + 4?\nWhat is 5 + 6?\n%s\nWhat is 7 + 8?\n' "$(printf 'word %.0s' $(seq 60))" \
  | chat --temperature 0 -n 6 --ctx 48 > ctx.out 2> ctx.err
rc=$?
[ $rc -eq 0 ] && grep -q "dropped" ctx.err && grep -q "does not fit" ctx.err && [ "$(wc -l < ctx.out)" -ge 4 ] \
  && pass "context overflow: oldest turns dropped, oversized message refused" \
  || failed "context overflow (rc $rc): $(cat ctx.err | head -4)"

# (3) --system is allowed, with a warning.
printf 'What is 1 + 1?\n' | chat --system "You are a calculator." --temperature 0 -n 4 > sys.out 2> sys.err
[ $? -eq 0 ] && grep -q "warning: .*system prompt" sys.err && [ "$(grep -c warning sys.err)" = 1 ] \
  && pass "--system warns once" || failed "--system: $(cat sys.err)"

# (4) no tokenizer: a clear error before anything runs.
expect_error "chat without a tokenizer" "needs a tokenizer" "$DSMOE" chat --model $M
expect_error "chat: bad --ctx" "max_position_embeddings" "$DSMOE" chat --model $M --tokenizer tok --ctx 100000

# (5) Ctrl-C. A random model with a long context so that a reply cannot end by itself before the signal; stdin is a
# fifo kept open, so only Ctrl-C or /exit can end the session.
sed 's/"max_position_embeddings": [0-9]*/"max_position_embeddings": 32768/' S/latest/config.json > long.json
"$DSMOE" init --config long.json --seed 2 --out long > /dev/null || failed "init long-context model"
wait_for() {  # FILE PATTERN: until the pattern appears (60 s at most, and only while the chat runs)
  for _ in $(seq 600); do grep -q -- "$2" "$1" 2>/dev/null && return 0; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  grep -q -- "$2" "$1" 2>/dev/null
}
mkfifo in.fifo
"$DSMOE" chat --model long --tokenizer tok --ctx 32768 -n 100000 --ignore-eos < in.fifo > int.out 2> int.err &
pid=$!
exec 3> in.fifo
echo "Tell me a long story" >&3
if wait_for int.out . && sleep 0.3 && kill -INT $pid && wait_for int.err "reply interrupted"; then
  pass "Ctrl-C stops a reply ($(wc -c < int.out) bytes)"
else failed "Ctrl-C during a reply: $(head -c 300 int.err)"; fi
echo "/reset" >&3
wait_for int.err "cleared" && pass "after Ctrl-C the next line is read" || failed "no line read after Ctrl-C: $(cat int.err)"
kill -INT $pid && wait_for int.err "Ctrl-C again" && kill -INT $pid
for _ in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then kill -KILL $pid; failed "Ctrl-C twice at the prompt did not end the chat"; fi
wait $pid
rc=$?
exec 3>&-
[ $rc -eq 0 ] && pass "Ctrl-C twice at the prompt quits with status 0" || failed "exit status $rc after Ctrl-C: $(cat int.err)"

# /exit ends the session with status 0 while stdin stays open.
"$DSMOE" chat --model $M --tokenizer tok -n 4 < in.fifo > exit.out 2> exit.err &
pid=$!
exec 3> in.fifo
echo "/exit" >&3
for _ in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then kill -KILL $pid; fi
wait $pid
rc=$?
exec 3>&-
[ $rc -eq 0 ] && pass "/exit quits with status 0" || failed "/exit: status $rc $(cat exit.err)"

finish
