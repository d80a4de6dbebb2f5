#!/usr/bin/env bash
# ./start.sh, the README's two commands, run against stand-ins: a copy of the script in a temporary tree whose PATH
# holds fake dpkg-query / apt-get / sudo / id / cmake / ctest that log their arguments, and a fake build/dsmoe.
# Checked: which packages each job asks for, that nothing is installed when nothing is missing, sudo (announced)
# when not root, a clear error without sudo, that `demo` builds only the dsmoe target and runs `dsmoe demo` with
# the extra flags, that `test` builds everything and runs ctest, and the usage errors.
# usage: start_sh.sh SOURCE_DIR
set -u
SRC="$(realpath "$1")"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fails=0
passes=0
pass() { echo "ok   $1"; passes=$((passes + 1)); }
failed() { echo "FAIL $1"; fails=$((fails + 1)); }

mkdir -p "$WORK/tree/build" "$WORK/bin"
cp "$SRC/start.sh" "$WORK/tree/"
LOG="$WORK/calls.log"
fake() {  # fake NAME BODY: a command that logs "NAME args" and then runs BODY
  printf '#!/usr/bin/env bash\necho "%s $*" >> "%s"\n%s\n' "$1" "$LOG" "$2" > "$WORK/bin/$1"
  chmod +x "$WORK/bin/$1"
}
# dpkg-query: a package is installed unless its name is listed in $FAKE_MISSING.
fake dpkg-query 'pkg="${@: -1}"; for m in ${FAKE_MISSING:-}; do [ "$m" = "$pkg" ] && exit 1; done; printf "install ok installed"'
fake id 'echo "${FAKE_UID:-0}"'
fake apt-get ''
fake sudo '"$@"'
fake cmake ''
fake ctest ''
printf '#!/usr/bin/env bash\necho "dsmoe $*" >> "%s"\n' "$LOG" > "$WORK/tree/build/dsmoe"
chmod +x "$WORK/tree/build/dsmoe"

# The only real tools on PATH: what start.sh and the fakes use (no real apt-get, sudo, cmake or ctest is reachable).
mkdir -p "$WORK/basic"
for tool in bash env dirname grep cat; do ln -s "$(command -v $tool)" "$WORK/basic/$tool"; done

# run [ENV=VALUE ...]: runs the copied start.sh with ${args[@]}, the fakes and the basic tools as its PATH.
run() {
  : > "$LOG"
  (cd "$WORK" && env PATH="$WORK/bin:$WORK/basic" "$@" bash "$WORK/tree/start.sh" "${args[@]}" > out.log 2> err.log)
}

args=(demo --steps 3)
run FAKE_MISSING=""
if [ $? -eq 0 ] && ! grep -q "apt-get" "$LOG" && grep -q "^cmake --build build --target dsmoe$" "$LOG" &&
  grep -q "^dsmoe demo --steps 3$" "$LOG" && ! grep -q "^ctest" "$LOG"; then
  pass "demo with everything installed: no apt-get, builds only dsmoe, runs dsmoe demo with the extra flags"
else failed "demo, nothing missing: $(cat "$LOG" "$WORK/err.log")"; fi

run FAKE_MISSING="gnuplot-nox python3-torch" FAKE_UID=0
if grep -q "^apt-get install -y -q --no-install-recommends gnuplot-nox$" "$LOG" && ! grep -q "^sudo" "$LOG" &&
  grep -q "installing with apt-get: gnuplot-nox" "$WORK/out.log"; then
  pass "demo as root installs only the demo's missing package (not python3-torch), without sudo"
else failed "demo as root: $(cat "$LOG" "$WORK/out.log")"; fi

run FAKE_MISSING="libfmt-dev" FAKE_UID=1000
if grep -q "^sudo apt-get update -q$" "$LOG" && grep -q "^sudo apt-get install .* libfmt-dev$" "$LOG" &&
  grep -q "installing with sudo apt-get" "$WORK/out.log"; then
  pass "not root: sudo apt-get, announced before it runs"
else failed "sudo path: $(cat "$LOG" "$WORK/out.log")"; fi

rm "$WORK/bin/sudo"
run FAKE_MISSING="libfmt-dev" FAKE_UID=1000
rc=$?
if [ $rc -eq 1 ] && grep -q "run this as root or install sudo" "$WORK/err.log" && ! grep -q "^cmake" "$LOG"; then
  pass "not root and no sudo: one clear error, nothing built"
else failed "no sudo (rc $rc): $(cat "$LOG" "$WORK/err.log")"; fi
fake sudo '"$@"'

args=(test)
run FAKE_MISSING="python3-torch clang-format" FAKE_UID=0
if grep -q "^apt-get install -y -q --no-install-recommends python3-torch clang-format$" "$LOG" &&
  grep -q "^cmake --build build$" "$LOG" && grep -q "^ctest --test-dir build --output-on-failure$" "$LOG" &&
  ! grep -q "^dsmoe" "$LOG"; then
  pass "test installs the test packages, builds everything and runs ctest"
else failed "test job: $(cat "$LOG")"; fi

for bad in "" "bogus" "test extra"; do
  args=($bad)
  run
  rc=$?
  if [ $rc -eq 2 ] && grep -q "usage: ./start.sh demo" "$WORK/err.log" && ! grep -q "^cmake" "$LOG"; then
    pass "usage error for '${bad}'"
  else failed "args '${bad}' (rc $rc)"; fi
done

# .ci/run calls the README's test command verbatim.
if grep -qx "./start.sh test" "$SRC/.ci/run" && grep -qx "./start.sh test" "$SRC/README.md" &&
  grep -qx "./start.sh demo" "$SRC/README.md"; then
  pass ".ci/run runs the README's test command verbatim"
else failed ".ci/run / README commands disagree"; fi

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
