#!/usr/bin/env bash
# Checks that every tracked C++ file (*.cpp, *.h) is formatted by clang-format with the repository's .clang-format
# (Google style, 120 columns). ctest runs it as `format` (label lint).
#   tools/check_format.sh         list the files clang-format would change; exit 1 if any
#   tools/check_format.sh --fix   format those files in place
# Without clang-format on PATH: a failure under CI=true, else "SKIPPED" and exit 77 (ctest's SKIP_RETURN_CODE).
# Files: `git ls-files` in a git checkout, else every *.cpp/*.h under src apps tests bench tools.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

fix=0
case "${1:-}" in
  "") ;;
  --fix) fix=1 ;;
  *) echo "usage: tools/check_format.sh [--fix]" >&2; exit 2 ;;
esac

if ! command -v clang-format > /dev/null; then
  if [ "${CI:-}" = true ]; then
    echo "error: clang-format not installed (CI=true): apt-get install clang-format" >&2
    exit 1
  fi
  echo "SKIPPED: clang-format not installed (apt-get install clang-format)"
  exit 77
fi
[ -f .clang-format ] || { echo "error: no .clang-format in $(pwd)" >&2; exit 1; }

files=()
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  while IFS= read -r -d '' f; do [ -f "$f" ] && files+=("$f"); done < <(git ls-files -z -- '*.cpp' '*.h')
else
  while IFS= read -r -d '' f; do files+=("$f"); done < <(find src apps tests bench tools -type f \
    \( -name '*.cpp' -o -name '*.h' \) -print0 2> /dev/null | sort -z)
fi
[ ${#files[@]} -gt 0 ] || { echo "error: no *.cpp/*.h files found in $(pwd)" >&2; exit 1; }

bad=()
for f in "${files[@]}"; do
  if ! clang-format --style=file --dry-run --Werror "$f" > /dev/null 2>&1; then bad+=("$f"); fi
done

if [ $fix = 1 ]; then
  for f in "${bad[@]}"; do clang-format --style=file -i "$f" || { echo "error: clang-format -i $f failed" >&2; exit 1; }; done
  echo "format: formatted ${#bad[@]} of ${#files[@]} files in place"
  exit 0
fi
if [ ${#bad[@]} -gt 0 ]; then
  printf '%s\n' "${bad[@]}"
  echo "format: ${#bad[@]} of ${#files[@]} files are not formatted ($(clang-format --version | head -1))."
  echo "Fix one with 'clang-format -i FILE', all with 'tools/check_format.sh --fix';"
  echo "see what would change with 'clang-format --dry-run FILE'."
  exit 1
fi
echo "format: ${#files[@]} files, OK"
