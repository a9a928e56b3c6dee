#!/usr/bin/env bash
# Formats the project's C++ with the checked-in .clang-format.
#   scripts/format.sh           rewrite every tracked .cpp/.h in place
#   scripts/format.sh --check   list the files that differ and exit 1 (the style test)
# Fuzz regression inputs are data, not code, and are left alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
clang_format="${CLANG_FORMAT:-clang-format}"
command -v "$clang_format" >/dev/null || { echo "format.sh: $clang_format not found (apt-get install clang-format)" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.h.in' ':!:tests/fuzz/regressions/**')
if [[ "${1:-}" == "--check" ]]; then
  bad=()
  for f in "${files[@]}"; do
    "$clang_format" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if ((${#bad[@]})); then
    printf 'not formatted (run scripts/format.sh):\n' >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
  fi
  echo "format.sh: ${#files[@]} files formatted"
else
  "$clang_format" -i "${files[@]}"
fi
