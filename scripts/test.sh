#!/usr/bin/env bash
# Set up (scripts/bootstrap.sh: packages, Python environment, build), then run
# every test: unit, MPI (1, 2, 4 ranks), parity with diffusers/transformers,
# the CLI and end-to-end. Extra arguments go to ctest (e.g. -R store).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DINV_VENV:-/opt/dinv/venv}"
build="${BUILD_DIR:-$repo/build}"
"$repo/scripts/bootstrap.sh"
exec "$venv/bin/ctest" --test-dir "$build" --output-on-failure --no-tests=error -j "$(nproc)" "$@"
