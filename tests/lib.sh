# Shared by the CLI test scripts: `source lib.sh "$1"` sets DSMOE (absolute path of the binary), works in a fresh
# temporary directory removed on exit, and provides pass/failed/expect_error/finish.
set -u
DSMOE="$(realpath "$1")"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
fails=0; passes=0
pass() { echo "ok   $1"; passes=$((passes + 1)); }
failed() { echo "FAIL $1"; fails=$((fails + 1)); }
# expect_error NAME PATTERN COMMAND...: the command must fail (exit 1..127, no crash) and stderr match PATTERN.
expect_error() {
  local name="$1" want="$2"; shift 2
  "$@" > out.log 2> err.log
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q -- "$want" err.log; then pass "$name"; else
    failed "$name (rc $rc): $(cat err.log out.log | head -3)"; fi
}
# make_tokenizer_and_conversations: tok/ (a 512-token BPE trained on the built-in synthetic corpus) and conv.jsonl
# (400 "What is a + b?" conversations with correct answers), for the SFT and chat scripts.
make_tokenizer_and_conversations() {
  "$DSMOE" data synth --out syn.txt --bytes 300000 --seed 5 > /dev/null && \
  "$DSMOE" tokenizer train --input syn.txt --vocab-size 512 --out tok > /dev/null || failed "tokenizer"
  perl -e 'srand(3); for (1..400) { my ($a, $b) = (int(rand(50)), int(rand(50)));
    printf "{\"messages\": [{\"role\": \"user\", \"content\": \"What is %d + %d?\"}, {\"role\": \"assistant\", \"content\": \"%d + %d = %d\"}]}\n", $a, $b, $a, $b, $a + $b }' > conv.jsonl
}
finish() {
  echo "$passes passed, $fails failed"
  [ $fails -eq 0 ]
}
