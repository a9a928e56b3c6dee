#!/usr/bin/env bash
# The main job on the built-in default data, end to end under mpirun with 2
# ranks: the procedural shapes dataset, a tiny random Stable Diffusion, then
# the method's three stages (embed, generate, train on real and on real +
# generated images). Outputs go to $DINV_DEMO_DIR (default out/demo); a rerun
# resumes or reuses what is there.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/bootstrap.sh"
dinv="${BUILD_DIR:-$repo/build}/dinv"
out="${DINV_DEMO_DIR:-$repo/out/demo}"
ranks="${DINV_DEMO_RANKS:-2}"
config="$repo/configs/demo.ini"
mkdir -p "$out"
cd "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { mpirun --oversubscribe -np "$ranks" "$@"; }
step() { printf '\n== %s\n' "$*"; }

"$dinv" --version
step "data: procedural 10-class shapes (CIFAR-10 binary format)"
[[ -f data/test_batch.bin ]] || "$dinv" data shapes --out data --train 1000 --test 500 --seed 0
step "model: tiny random Stable Diffusion in the diffusers layout"
[[ -f model/model_index.json ]] || "$dinv" model init --preset tiny model
step "stage 1: embed"
mpi "$dinv" embed --config "$config" "$@"
step "stage 2: generate"
mpi "$dinv" generate --config "$config" "$@"
step "stage 3: train on real images only"
mpi "$dinv" train --config "$config" --syn.format=none --train.run_name=real "$@"
step "stage 3: train on real + generated images"
mpi "$dinv" train --config "$config" --data.real_bs=16 --syn.format=store --data.syn_bs=16 \
  --train.run_name=real_plus_generated "$@"

step "outputs"
"$dinv" info --store.path=store.h5 --run.log_level=warn | sed -n '/^store/,$p'
"${DINV_VENV:-/opt/dinv/venv}/bin/python" "$repo/analysis/sample_complexity.py" results --out results/curves.png
echo "demo outputs in $out: store.h5 (embeddings, samples), results/*.h5 (accuracies)"
