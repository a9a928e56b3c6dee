#!/usr/bin/env bash
# The main job on the built-in default data, end to end under mpirun with 2
# ranks (1 on a single-GPU machine): the paper in miniature. The procedural
# shapes dataset and a captioned corpus of the same shape world; stage 0
# trains a small Stable Diffusion on the corpus; then the method's three
# stages (embed the labelled images, generate from their perturbed embeddings
# and from class-name prompts, a sample-complexity sweep of classifiers on
# real, generated and mixed data) and what the sweep says about the method.
# Outputs go to $DINV_DEMO_DIR (default out/demo); a rerun resumes or reuses
# what is there (a finished generator, embeddings, samples and sweep points).
# Where dinv is already built (a cluster module, a container),
# DINV_SKIP_BOOTSTRAP=1 skips the set-up, BUILD_DIR names the build and
# DINV_PYTHON a Python with pandas and matplotlib.
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
step "data: procedural 10-class shapes at 16 px (200 labelled training images) and a captioned corpus"
[[ -d data/test ]] || "$dinv" data shapes --out data --train 200 --test 500 --resolution 16 --seed 0
[[ -f corpus/metadata.jsonl ]] || "$dinv" data shapes --captioned --out corpus --count 20000 --resolution 16 --seed 0
step "stage 0: pretrain a small Stable Diffusion on the corpus (skipped once generator/ is trained)"
mpi "$dinv" pretrain --config "$config" --data.format=captioned --data.root=corpus "$@"
step "stage 1: embed the labelled images"
mpi "$dinv" embed --config "$config" "$@"
step "stage 2: generate from perturbed embeddings (the method)"
mpi "$dinv" generate --config "$config" "$@"
step "stage 2: generate from class-name prompts (the baseline)"
mpi "$dinv" generate --config "$config" --generate.mode=prompt --generate.tag=prompt "$@"
step "stage 3: sample-complexity sweep (real subsets x sources x seeds)"
mpi "$dinv" sweep --config "$config" --train.save_model=true "$@"
step "measure the generated images (dinv evaluate) with a judge trained on 6,000 more labelled images"
# The judge is a measuring instrument, not part of the experiment: a
# classifier trained on a separate draw of 6,000 labelled training images
# (--seed 1; never the test split), so that its label agreement on generated
# images says how often the generator drew the class (the small subsets'
# classifiers are too weak to tell). Trained once; a rerun reuses it.
[[ -d judge_data/train ]] || "$dinv" data shapes --out judge_data --train 6000 --test 500 --resolution 16 --seed 1
if [[ ! -d judge/judge.model ]]; then
  mpi "$dinv" train --config "$config" --data.root=judge_data --data.num_data=0 --data.real_bs=128 --data.syn_bs=0 \
    --train.steps=2500 --train.lr=3e-3 --train.warmup_steps=100 --train.results_dir=judge --train.run_name=judge \
    --train.save_model=true "$@"
fi
mpi "$dinv" evaluate --config "$config" --evaluate.classifier=judge/judge.model --evaluate.tags=method,prompt "$@"

step "outputs"
"$dinv" info --store.path=store.h5 --run.log_level=warn | sed -n '/^store/,$p'
python="${DINV_PYTHON:-${DINV_VENV:-/opt/dinv/venv}/bin/python}"
"$python" "$repo/analysis/sample_complexity.py" results --out results/curves.png --table results/curves.csv >/dev/null
"$python" "$repo/analysis/report.py" results --store store.h5 --out report
printf '\n== the method against real data and against the prompt baseline (analysis/effect.py)\n'
"$python" "$repo/analysis/effect.py" results --csv results/effect.csv
finish_step

printf '\n== summary: %d s in all\n' "$SECONDS"
printf '%s\n' "${summary[@]}"
cat <<EOF
outputs in $out:
  data/                  the labelled images (one PNG folder per class)
  corpus/                the captioned pretraining corpus (metadata.jsonl + PNGs)
  generator/             the Stable Diffusion trained in stage 0 (diffusers layout)
  store.h5               /embeddings (stage 1), /samples/method and /samples/prompt (stage 2)
  results/*.h5           one classifier run per sweep point
  results/curves.png     test accuracy against real images, per source, mean +- std over seeds
  results/effect.csv     the method against real data and the prompt baseline, per real subset size
  judge/                 the classifier that measures the generated images (dinv evaluate: /metrics in store.h5)
  report/report.html     the report: curves, tables, Stage 1 losses, image grids
EOF
