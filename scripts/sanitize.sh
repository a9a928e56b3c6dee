#!/usr/bin/env bash
# Build dinv with sanitizers in its own folder and run the unit and MPI tests
# under them (docs/reliability.md: run before every release).
#
#   scripts/sanitize.sh [address|thread]    (default: address = ASan + UBSan)
#
#   BUILD_DIR  build folder (default build-asan/ or build-tsan/ in the checkout)
#   JOBS       parallel compile jobs (default 2)
#   DINV_VENV  the Python environment with torch and CMake (default /opt/dinv/venv)
#   TESTS      ctest -R pattern of further tests (default: the MPI tests on 1, 2 and 4 ranks)
#
# The unit tests run as one process (dinv_unit_tests: ctest lists each of its
# cases under its own name, so a pattern on the binary's name finds none).
set -euo pipefail

kind="${1:-address}"
case "$kind" in
  address) default_dir=build-asan ;;
  thread) default_dir=build-tsan ;;
  *) echo "usage: scripts/sanitize.sh [address|thread]" >&2; exit 2 ;;
esac
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DINV_VENV:-/opt/dinv/venv}"
build="${BUILD_DIR:-$repo/$default_dir}"
jobs="${JOBS:-2}"
tests="${TESTS:-^dinv_mpi_tests}"
start=$(date +%s)

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  "$venv/bin/cmake" -S "$repo" -B "$build" -G Ninja -DCMAKE_MAKE_PROGRAM="$venv/bin/ninja" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDINV_SANITIZE="$kind" -DDINV_BUILD_BENCH=OFF \
    -DDINV_PYTHON="$venv/bin/python"
fi
"$venv/bin/cmake" --build "$build" --parallel "$jobs" --target dinv_unit_tests dinv_mpi_tests dinv
built=$(date +%s)

# Leaks are not checked: MPI and HDF5 keep their allocations until exit by
# design, and LibTorch's static state is never freed. Everything else stops
# the test at the first report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1}"
rc=0
"$build/tests/dinv_unit_tests" --gtest_brief=1 || rc=$?
"$venv/bin/ctest" --test-dir "$build" -R "$tests" --output-on-failure -j "$jobs" || rc=$?
echo "sanitize.sh $kind: build $((built - start)) s, tests $(( $(date +%s) - built )) s, ctest exit $rc"
exit $rc
