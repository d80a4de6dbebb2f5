#!/usr/bin/env bash
# The two commands of README.md's "Start here", on a fresh Debian 12 machine:
#   ./start.sh demo   installs the Debian packages the build and the demo need (if missing), builds only the dsmoe
#                     binary and runs `dsmoe demo` (extra arguments go to the demo)
#   ./start.sh test   installs everything the tests need (if missing), builds everything and runs every test
# .ci/run calls `./start.sh test` verbatim. Packages are installed with apt-get, through sudo when not run as root
# (said before it happens); nothing is installed when everything is already there.
set -euo pipefail
cd "$(dirname "$0")"

usage() { echo "usage: ./start.sh demo [demo flags] | ./start.sh test" >&2; exit 2; }
[ $# -ge 1 ] || usage
job=$1
shift
case "$job" in
  demo) ;;
  test) [ $# -eq 0 ] || usage ;;
  *) usage ;;
esac

# What the build and `dsmoe demo` need (gnuplot draws the demo's plots).
build_packages=(cmake ninja-build g++ pkg-config libopenblas-openmp-dev nlohmann-json3-dev libcli11-dev libfmt-dev
                libgtest-dev libpcre2-dev libutf8proc-dev libcpp-httplib-dev gnuplot-nox)
# What the tests add: the PyTorch reference and fixtures, the Jinja2 comparison, perl for the GGUF byte checks,
# a browser for the chat page, Open MPI for distributed training, clang-format for the format check.
test_packages=(python3 python3-torch python3-numpy python3-jinja2 perl chromium openmpi-bin libopenmpi-dev
               clang-format)
packages=("${build_packages[@]}")
[ "$job" = test ] && packages+=("${test_packages[@]}")

missing=()
if command -v dpkg-query > /dev/null; then
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q "install ok installed" || missing+=("$p")
  done
else
  echo "start.sh: no dpkg here (not Debian): install the equivalents of these yourself: ${packages[*]}" >&2
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo > /dev/null; then
      echo "start.sh: missing Debian packages (${missing[*]}); run this as root or install sudo" >&2
      exit 1
    fi
    sudo="sudo"
    echo "start.sh: installing with sudo apt-get (you may be asked for your password): ${missing[*]}"
  else
    echo "start.sh: installing with apt-get: ${missing[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
if [ "$job" = demo ]; then
  cmake --build build --target dsmoe
  exec ./build/dsmoe demo "$@"
fi
cmake --build build
ctest --test-dir build --output-on-failure
