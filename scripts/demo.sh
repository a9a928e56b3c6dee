#!/usr/bin/env bash
# The main job on the built-in default data, end to end, under mpirun with 2
# ranks. Outputs go to $DINV_DEMO_DIR (default out/demo).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/bootstrap.sh"
dinv="${BUILD_DIR:-$repo/build}/dinv"
out="${DINV_DEMO_DIR:-$repo/out/demo}"
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { mpirun --oversubscribe -np 2 "$@"; }

"$dinv" --version
mpi "$dinv" info --config "$repo/configs/demo.ini"
echo "demo outputs in $out"
