#!/usr/bin/env bash
# dsmoe serve from the client side (tests/serve/*.test.mjs, run by Node's test runner): the official openai SDK,
# raw HTTP (every error status, 1,000 malformed requests, client disconnects), and the chat page in Debian's
# chromium (playwright-core; a screenshot is kept in ARTIFACT_DIR). Models: a tiny trained model as Q8_0 GGUF with
# its tokenizer, and the same config stretched to 8,192 positions with random weights (a generation long enough
# to hang up in the middle of). The npm packages come from tests/serve/package-lock.json (npm ci).
#   serve_cli.sh DSMOE_BIN ARTIFACT_DIR
source "$(dirname "$0")/lib.sh" "$1"
# Node.js >= 20 and npm run the clients: missing, this test fails under CI=true and is skipped (exit 77) elsewhere.
if ! command -v npm > /dev/null || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2> /dev/null; then
  [ "${CI:-}" = true ] && { failed "Node.js >= 20 with npm is required (CI=true)"; finish; exit 1; }
  echo "SKIPPED: the server's client tests need Node.js >= 20 with npm"; exit 77
fi
SRC=$(cd "$(dirname "$0")" && pwd)/serve
ARTIFACT_DIR=$(mkdir -p "$2" && cd "$2" && pwd)

"$DSMOE" train --preset tiny --run-dir R --steps 40 > train.log 2>&1 || { failed "train tiny: $(tail -3 train.log)"; finish; exit 1; }
mkdir -p M && cp R/latest/config.json R/latest/model.safetensors R/data/tokenizer/* M/
"$DSMOE" quantize --model M --type q8_0 --out q8.gguf > q.log 2>&1 || { failed "quantize: $(tail -2 q.log)"; finish; exit 1; }
perl -pe 's/"max_position_embeddings": \d+/"max_position_embeddings": 8192/' M/config.json > long.json
"$DSMOE" synth --config long.json --type q8_0 --tokenizer M --out long.gguf > synth.log 2>&1 \
  || { failed "synth: $(tail -2 synth.log)"; finish; exit 1; }

mkdir -p js && cp "$SRC"/package.json "$SRC"/package-lock.json "$SRC"/*.mjs js/
(cd js && npm ci --no-audit --no-fund --loglevel=error > ../npm.log 2>&1) || { failed "npm ci: $(tail -3 npm.log)"; finish; exit 1; }
pass "npm ci ($(cd js && node -e 'console.log("openai " + require("./node_modules/openai/package.json").version + ", playwright-core " + require("./node_modules/playwright-core/package.json").version)'))"

export DSMOE_BIN="$DSMOE" MODEL="$WORK/q8.gguf" LONG_MODEL="$WORK/long.gguf" TOKENIZER_JSON="$WORK/M/tokenizer.json" ARTIFACT_DIR
if node --test --test-reporter=spec --test-concurrency=1 js/*.test.mjs > node.log 2>&1; then
  pass "node tests: $(grep -E '^ℹ (tests|pass|fail|skipped)' node.log | tr '\n' ' ')"
else
  failed "node tests"
fi
cat node.log
finish
