#!/usr/bin/env bash
# Build the libFuzzer targets of dinv's readers (tests/fuzz/) with clang in
# build-fuzz/ and run each for SECONDS (default 60) from its seed corpus.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     targets: json ini safetensors npz image cifar tokenizer captioned webdataset image_folder store
#   (SECONDS = 0 only builds)
#
#   BUILD_DIR  build folder (default build-fuzz/ in the checkout)
#   CLANG      clang version suffix (default 14: clang-14 / clang++-14 from Debian)
#   DINV_VENV  Python environment with torch (default /opt/dinv/venv)
#   DINV_FUZZ_TOKENIZER  a tokenizer/ folder for prompt fuzzing (optional)
#
# The corpus a run grows is kept in BUILD_DIR/corpus/<target> (the seeds in
# tests/fuzz/seeds/ and the inputs that once failed, tests/fuzz/regressions/,
# are read, never changed); crashes, timeouts and allocations over
# the limit go to BUILD_DIR/crashes/<target>/, and the script exits 1 if any
# target found one. Limits: 10 s per input, one allocation at most 2 GiB,
# 6 GiB of memory in all.
set -euo pipefail

seconds="${1:-60}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(json ini safetensors npz image cifar tokenizer captioned webdataset image_folder store)
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DINV_VENV:-/opt/dinv/venv}"
build="${BUILD_DIR:-$repo/build-fuzz}"
v="${CLANG:-14}"

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  CC="clang-$v" CXX="clang++-$v" "$venv/bin/cmake" -S "$repo/tests/fuzz" -B "$build" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$venv/bin/ninja" -DDINV_PYTHON="$venv/bin/python"
fi
"$venv/bin/cmake" --build "$build" --parallel "${JOBS:-2}" --target $(printf 'fuzz_%s ' "${targets[@]}")

# The tokenizer target fuzzes prompt text only with a real CLIP tokenizer
# folder (DINV_FUZZ_TOKENIZER=DIR/tokenizer); without one it fuzzes vocab.json.
if [[ -n "${DINV_FUZZ_TOKENIZER:-}" && ! -f "$DINV_FUZZ_TOKENIZER/vocab.json" ]]; then
  echo "fuzz.sh: DINV_FUZZ_TOKENIZER=$DINV_FUZZ_TOKENIZER has no vocab.json" >&2
  exit 2
fi

if [[ "$seconds" == 0 ]]; then
  echo "fuzz.sh: built ${targets[*]} in $build (0 seconds: no runs)"
  exit 0
fi

status=0
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t" "$build/crashes/$t"
  start=$(date +%s)
  rc=0
  # Inputs that once crashed (tests/fuzz/regressions/) run first, every time.
  regress=()
  [[ -d "$repo/tests/fuzz/regressions/$t" ]] && regress=("$repo/tests/fuzz/regressions/$t")
  "$build/fuzz_$t" "$build/corpus/$t" "$repo/tests/fuzz/seeds/$t" "${regress[@]}" -max_total_time="$seconds" -timeout=10 \
    -malloc_limit_mb=2048 -rss_limit_mb=6144 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$build/crashes/$t/" >"$build/crashes/$t.log" 2>&1 || rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/crashes/$t.log" | grep -o '[0-9]*$' || echo "?")
  found=$(find "$build/crashes/$t" -type f | wc -l)
  echo "fuzz_$t: $(( $(date +%s) - start )) s, $runs inputs, exit $rc, $found finding(s) in $build/crashes/$t/"
  if ((rc != 0 || found > 0)); then status=1; tail -30 "$build/crashes/$t.log"; fi
done
exit $status
