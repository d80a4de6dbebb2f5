#!/usr/bin/env bash
# tools/check_layering.py on small fake trees: a clean tree passes; a forbidden include, a missing header, a src/
# file including apps/, a CMake link against the layering and a cycle in the table each fail naming the cause.
set -u
SCRIPT="$(cd "$(dirname "$0")/.." && pwd)/tools/check_layering.py"
PY=/usr/bin/python3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fails=0; passes=0
pass() { echo "ok   $1"; passes=$((passes + 1)); }
failed() { echo "FAIL $1"; fails=$((fails + 1)); }

# fake_tree DIR: core <- model, an app including both; clean.
fake_tree() {
  mkdir -p "$1/src/core" "$1/src/model" "$1/apps/dsmoe"
  printf '#pragma once\n#include <vector>\nint x();\n' > "$1/src/core/x.h"
  printf '#pragma once\n#include "core/x.h"\nint y();\n' > "$1/src/model/y.h"
  printf '#include "commands.h"\n#include "model/y.h"\n#include "core/x.h"\nint main() {}\n' > "$1/apps/dsmoe/main.cpp"
  printf '#pragma once\n' > "$1/apps/dsmoe/commands.h"
}
# expect NAME RC PATTERN ROOT [SCRIPT]: the script on ROOT exits RC and its output matches PATTERN.
expect() {
  local name="$1" want_rc="$2" pattern="$3" root="$4" script="${5:-$SCRIPT}"
  "$PY" "$script" --root "$root" > "$WORK/out.log" 2>&1
  local rc=$?
  if [ $rc -eq "$want_rc" ] && grep -q -- "$pattern" "$WORK/out.log"; then pass "$name"; else
    failed "$name (rc $rc, wanted $want_rc and /$pattern/): $(head -5 "$WORK/out.log")"; fi
}

fake_tree "$WORK/clean"
expect "clean tree passes" 0 "layering: 4 files, 4 includes, OK" "$WORK/clean"

fake_tree "$WORK/up"
printf '#pragma once\n#include "model/y.h"\n' > "$WORK/up/src/core/x.h"
expect "core including model fails" 1 'src/core/x.h:2: layer core may not include layer model' "$WORK/up"

fake_tree "$WORK/typo"
printf '#pragma once\n#include "core/x.h"\n#include "core/xx.h"\n' > "$WORK/typo/src/model/y.h"
expect "missing header fails" 1 'src/model/y.h:3: include "core/xx.h" names no file' "$WORK/typo"

fake_tree "$WORK/angle"
printf '#pragma once\n#include <model/y.h>\n' > "$WORK/angle/src/core/x.h"
expect "<layer/...> includes are checked too" 1 'src/core/x.h:2: layer core may not include layer model' \
  "$WORK/angle"

fake_tree "$WORK/apps"
printf '#pragma once\n#include "../../apps/dsmoe/commands.h"\n' > "$WORK/apps/src/model/y.h"
expect "src including apps/ fails" 1 'src/model/y.h:2: layer model may not include apps/ files' "$WORK/apps"

fake_tree "$WORK/unknown"
mkdir -p "$WORK/unknown/src/misc" && printf '#pragma once\n' > "$WORK/unknown/src/misc/z.h"
expect "a folder outside the table fails" 1 'layer misc (src/misc/) is not in the table' "$WORK/unknown"

fake_tree "$WORK/cmake"
printf 'add_library(dsmoe_core STATIC a.cpp)\ntarget_link_libraries(dsmoe_core PUBLIC dsmoe_model)\n' > \
  "$WORK/cmake/CMakeLists.txt"
expect "a link against the layering fails" 1 'CMakeLists.txt: core links model, against the layering' \
  "$WORK/cmake"

# A cycle in the table itself: a copy of the script whose core may include model.
sed 's/^    "core": \[\],/    "core": ["model"],/' "$SCRIPT" > "$WORK/cyclic.py"
if grep -q '"core": \["model"\]' "$WORK/cyclic.py"; then
  expect "a cycle in the table fails" 1 'table: the allowed graph has a cycle: core -> model -> core' \
    "$WORK/clean" "$WORK/cyclic.py"
else
  failed "could not make the cyclic copy of the table (its \"core\" line changed?)"
fi

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
