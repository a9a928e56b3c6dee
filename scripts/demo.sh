#!/usr/bin/env bash
# The main job on the built-in default data, end to end under mpirun with 2
# ranks (1 on a single-GPU machine): the procedural shapes dataset, a tiny random Stable Diffusion, then
# the method's three stages (embed, generate, train on real and on real +
# generated images). Outputs go to $DINV_DEMO_DIR (default out/demo); a rerun
# resumes or reuses what is there. Where dinv is already built (a cluster
# module, a container), DINV_SKIP_BOOTSTRAP=1 skips the set-up, BUILD_DIR
# names the build and DINV_PYTHON a Python with pandas and matplotlib.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Each step is timed for the summary at the end.
summary=()
step_name="" step_start=0
step() {
  finish_step
  step_name="$*" step_start=$SECONDS
  printf '\n== %s\n' "$*"
}
finish_step() {
  if [[ -n $step_name ]]; then summary+=("$(printf '%6d s  %s' $((SECONDS - step_start)) "$step_name")"); fi
  step_name=""
}

if [[ -z "${DINV_SKIP_BOOTSTRAP:-}" ]]; then
  step "set-up: Debian packages, Python environment, build (scripts/bootstrap.sh)"
  "$repo/scripts/bootstrap.sh"
fi
dinv="${BUILD_DIR:-$repo/build}/dinv"
out="${DINV_DEMO_DIR:-$repo/out/demo}"
# Two ranks, except on a machine with a single GPU: ranks on GPUs train through
# NCCL, which needs a GPU of its own per rank.
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
ranks="${DINV_DEMO_RANKS:-$(( ${gpus:-0} == 1 ? 1 : 2 ))}"
config="$repo/configs/demo.ini"
mkdir -p "$out"
cd "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Unbound ranks: mpirun would pin each of 1 or 2 ranks to a single core, and
# dinv gives a rank as many threads as the CPUs it may run on.
mpi() { mpirun --oversubscribe --bind-to none -np "$ranks" "$@"; }
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
mpi "$dinv" train --config "$config" --syn.format=none --train.run_name=real --train.save_model=true "$@"
step "stage 3: train on real + generated images"
mpi "$dinv" train --config "$config" --data.real_bs=16 --syn.format=store --data.syn_bs=16 \
  --train.run_name=real_plus_generated "$@"
step "measure the generated images with the real-data classifier (dinv evaluate)"
if [[ -f results/real.model/config.json ]]; then
  mpi "$dinv" evaluate --config "$config" --evaluate.classifier=results/real.model "$@"
else
  echo "results/real.model is missing (the real run was made before train.save_model): skipped"
fi

step "outputs"
"$dinv" info --store.path=store.h5 --run.log_level=warn | sed -n '/^store/,$p'
python="${DINV_PYTHON:-${DINV_VENV:-/opt/dinv/venv}/bin/python}"
"$python" "$repo/analysis/sample_complexity.py" results --out results/curves.png
"$python" "$repo/analysis/report.py" results --store store.h5 --out report
finish_step

printf '\n== summary: %d s in all\n' "$SECONDS"
printf '%s\n' "${summary[@]}"
cat <<EOF
outputs in $out:
  data/                          the real images (CIFAR-10 binary format)
  model/                         the Stable Diffusion folder (diffusers layout)
  store.h5                       /embeddings (stage 1), /samples/demo (stage 2)
  results/real.h5                the classifier trained on real images
  results/real_plus_generated.h5 the classifier trained on real + generated images
  results/curves.png             test accuracy per source
  report/report.html             the report: curves, tables, Stage 1 losses, image grids
EOF
