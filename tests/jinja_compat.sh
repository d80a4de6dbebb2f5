#!/usr/bin/env bash
# The chat-template interpreter against Jinja2 itself. Regenerates the cases with Debian's python3-jinja2, set up as
# transformers sets it up (tools/reference/jinja_cases.py), then
#   (1) checks the committed tests/data/jinja_cases.jsonl (what the plain unit test reads) equals the fresh run, and
#   (2) runs test_chat_template's Jinja2Cases test on the fresh cases: the same text wherever Jinja2 renders, an error
#       wherever it raises (or the case is outside our subset).
# Without python3-jinja2 this test fails under CI=true and is skipped (exit 77) elsewhere.
#   jinja_compat.sh TEST_CHAT_TEMPLATE_BIN SOURCE_DIR
source "$(dirname "$0")/lib.sh" "$1"
TEST_BIN="$DSMOE"
SRC="$2"
PY=/usr/bin/python3
COMMITTED="$SRC/tests/data/jinja_cases.jsonl"

if ! $PY -c 'import jinja2' 2> /dev/null; then
  if [ "${CI:-}" = true ]; then
    failed "python3-jinja2 is required (CI=true): apt-get install python3-jinja2"; finish; exit 1
  fi
  echo "SKIPPED: the Jinja2 comparison needs Debian's python3-jinja2 (apt-get install python3-jinja2)"; exit 77
fi

if $PY "$SRC/tools/reference/jinja_cases.py" --out fresh.jsonl 2> gen.log; then
  pass "generate: $(tail -1 gen.log)"
else
  failed "generate: $(tail -3 gen.log)"; finish; exit 1
fi

# The Jinja2 error messages (jinja_error) are for readers; another Jinja2 release may word them differently.
if $PY - fresh.jsonl "$COMMITTED" > cmp.log 2>&1 <<'PYEOF'
import json, sys
def load(path):
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    for r in rows:
        r.pop("jinja_error", None)
    return rows
fresh, committed = load(sys.argv[1]), load(sys.argv[2])
differ = [f["name"] for f, c in zip(fresh, committed) if f != c]
if differ or len(fresh) != len(committed):
    print(f"{len(differ)} cases differ ({len(fresh)} fresh, {len(committed)} committed), first: {differ[:5]}")
    sys.exit(1)
PYEOF
then
  pass "tests/data/jinja_cases.jsonl matches a fresh run"
else
  failed "tests/data/jinja_cases.jsonl is stale: $(tail -2 cmp.log); regenerate it with
     /usr/bin/python3 tools/reference/jinja_cases.py --out tests/data/jinja_cases.jsonl"
fi

if DSMOE_JINJA_CASES="$WORK/fresh.jsonl" "$TEST_BIN" --gtest_filter='Jinja2Cases.*' > run.log 2>&1; then
  pass "ours renders like Jinja2: $(grep -m1 ' cases from ' run.log)"
else
  failed "ours differs from Jinja2 (below: each case, Jinja2's output and ours)"
  grep -v '^\[ ' run.log | head -200
fi
finish
