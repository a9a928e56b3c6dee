#!/usr/bin/env bash
# The checks of issue 18 (points 2 and 3) from the GPU bundle, on a machine with
# a torch wheel (2.11, CUDA 13) and nothing else of dinv's dependencies:
#   bash BUNDLE/run_checks.sh OUTDIR
# Environment:
#   DEVICE   cuda (default) or cpu: cpu runs the same steps on the CPU, small
#            (a check of the bundle and of this script; GPU-only rows SKIP)
#   PYTHON   a Python with torch (default python3); diffusers, h5py, numpy are
#            used where present (BUNDLE/wheels/*.whl are installed into a
#            folder under OUTDIR first when the image lacks them)
#   BUDGET_S seconds for all checks (default 480); a check that would start
#            after that SKIPs, and each check's timeout is cut to what is left
#   PRESET   the model of the component and speed checks (default sd15 on cuda,
#            tiny on cpu: random weights, `dinv model init`)
#   KEEP_WORK=1  keep the work folder (models, data, stores; under TMPDIR)
#   CHECKS   the checks to run (default all): any of mpi components sample
#            stages pretrain train evaluate retrieve throughput speed (evaluate
#            also runs the CPU references of stages and the fp32 run of train it
#            needs)
# Every check writes its log under OUTDIR/logs; OUTDIR/results.tsv and the
# table printed at the end hold one row per check: check, value,
# tolerance / goal, PASS / FAIL / SKIP. Exit status 0 when no row FAILs.
set -uo pipefail
B=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -eq 1 ]] || { sed -n 2,18p "$0" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-480}
[[ $DEVICE == cpu ]] && PRESET=${PRESET:-tiny} || PRESET=${PRESET:-sd15}
# Models (sd15: 4 GB), data and stores go to WORK, outside OUTDIR (whose files
# the GPU machine sends back): removed at the end unless KEEP_WORK=1.
LOGS=$OUT/logs RESULTS=$OUT/results.tsv
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dinv-checks.XXXXXX")
[[ ${KEEP_WORK:-0} == 1 ]] || trap 'rm -rf "$WORK"' EXIT
rm -rf "$LOGS"
mkdir -p "$LOGS"
: > "$RESULTS"
START=$SECONDS
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
THREADS=$(nproc)
((THREADS > 16)) && THREADS=16

# --- helpers -------------------------------------------------------------------
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" | tee -a "$RESULTS"; }
left() { echo $((BUDGET_S - (SECONDS - START))); }
# run NAME TIMEOUT CMD...: the command's output goes to logs/NAME.log; the
# timeout is cut to the time left; 124 when out of time.
run() {
  local name=$1 t=$2
  shift 2
  local l; l=$(left)
  ((l < 5)) && { echo "out of the time budget" > "$LOGS/$name.log"; return 124; }
  ((t > l)) && t=$l
  echo "+ $*" > "$LOGS/$name.log"
  timeout -k 5 "$t" "$@" >> "$LOGS/$name.log" 2>&1
}
why() {  # a short reason from a failed check's log
  local rc=$1 log=$2
  if [[ $rc == 124 || $rc == 137 ]]; then echo "timed out (logs/$(basename "$log"))"
  else
    local line; line=$(grep -iE "error|fail|what\(\)|not found|Traceback|exception|out of range" "$log" | grep -v '^+ ' | tail -1)
    [[ -n $line ]] || line=$(grep -v '^+ ' "$log" | tail -1)
    echo "exit $rc: $(cut -c1-100 <<< "$line") (logs/$(basename "$log"))"
  fi
}
py() { "$PYTHON" "$B/checks.py" "$@"; }
verdict() { (($1 == 0)) && echo PASS || echo FAIL; }  # a comparison's exit status
CHECKS=${CHECKS:-all}
want() { [[ $CHECKS == all || " $CHECKS " == *" $1 "* ]]; }
gpu_only() { [[ $DEVICE == cuda ]] || { row "$1" "-" "$2" "SKIP (GPU only)"; return 1; }; }

echo "== environment"
. "$B/env.sh"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"; echo "host: $(uname -srm)"; cat /etc/os-release 2>/dev/null | grep PRETTY
  echo "glibc: $(getconf GNU_LIBC_VERSION 2>/dev/null)"; cat "$B/BUNDLE.txt"
  echo "python: $PYTHON ($("$PYTHON" -V 2>&1)), torch lib: $TORCH_LIB"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; echo "glibc used by the bundle: $DINV_GLIBC"
  nvidia-smi 2>&1 | head -20
} > "$LOGS/environment.log" 2>&1
if [[ -n $DINV_ENV_ERROR ]]; then
  row "bundle: dinv starts" "$DINV_ENV_ERROR" "starts" "FAIL"
  py table "$RESULTS" 2>/dev/null || cat "$RESULTS"
  exit 1
fi
DINV=$DINV_BIN/dinv
"$DINV" --version > "$LOGS/version.log" 2>&1
row "bundle: dinv starts" "$(head -1 "$LOGS/version.log" | cut -c1-40); glibc: $DINV_GLIBC" "starts" "PASS"
if [[ $DEVICE == cuda ]]; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  cuda_ok=$("$PYTHON" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null)
  row "GPU visible (nvidia-smi, torch.cuda)" "${gpu:-none}, torch.cuda ${cuda_ok:-?}" "a GPU" "$([[ -n $gpu && $cuda_ok == True ]] && echo PASS || echo FAIL)"
fi
run mpirun_version 60 mpirun -np 1 "$DINV" --version
rc=$?
row "bundle: mpirun -np 1 dinv --version" "$([[ $rc == 0 ]] && echo ok || why $rc "$LOGS/mpirun_version.log")" "exit 0" "$([[ $rc == 0 ]] && echo PASS || echo FAIL)"

# Python packages the speed checks use: the image's, else the bundle's wheels.
if ls "$B"/wheels/*.whl > /dev/null 2>&1 && ! "$PYTHON" -c 'import diffusers, h5py, numpy' 2> /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --target "$WORK/site" "$B"/wheels/*.whl > "$LOGS/wheels.log" 2>&1 &&
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
has() { "$PYTHON" -c "import $1" 2> /dev/null; }

echo "== 1. MPI tests on 1 rank: NCCL all-reduce, NCCL training against one CPU rank (bf16 autocast)"
if want mpi; then
  run mpi_tests 180 mpirun -np 1 "$DINV_BIN/dinv_mpi_tests" --gtest_color=no \
    --gtest_filter='NcclCommunicator.*:ClassifyDataParallel.NcclOnGpuFollowsOneCpuRank:World.*:MpiCommunicator.AllReduceEqualsSerialSum'
  rc=$?
  summary=$(grep -E "^\[  (PASSED|FAILED)  \]|^\[  SKIPPED \] [0-9]" "$LOGS/mpi_tests.log" | tr -s ' ' | tr '\n' ' ')
  if [[ $rc != 0 ]]; then row "MPI tests np1 (NCCL)" "$(why $rc "$LOGS/mpi_tests.log") $summary" "all pass" "FAIL"
  elif grep -q "^\[  SKIPPED \] [0-9]" "$LOGS/mpi_tests.log"; then
    row "MPI tests np1 (NCCL)" "$summary" "all pass, none skipped" "$([[ $DEVICE == cuda ]] && echo FAIL || echo 'SKIP (NCCL tests need a GPU)')"
  else row "MPI tests np1 (NCCL)" "$summary" "all pass" "PASS"; fi
fi

echo "== 2. models: $PRESET (components, speed) and tiny (stages), random weights"
rc_model=1  # the $PRESET model only where a chosen check needs it (sd15: 4 GB)
if [[ $PRESET == tiny ]] || want components || want sample || want speed; then
  run model_init 300 "$DINV" model init --preset "$PRESET" "$WORK/model"
  rc_model=$?
  [[ $rc_model == 0 ]] || row "model init $PRESET" "$(why $rc_model "$LOGS/model_init.log")" "exit 0" "FAIL"
fi
if [[ $PRESET == tiny ]]; then ln -s model "$WORK/tiny"; rc_tiny=$rc_model
else run model_init_tiny 60 "$DINV" model init --preset tiny "$WORK/tiny"; rc_tiny=$?; fi

echo "== 3. components on $DEVICE against CPU fp32 ($PRESET)"
# tolerances: relative L2 error of the output against the CPU fp32 output
declare -A OUTPUT=([unet]=sample [vae-encode]=mean [vae-decode]=sample [text-encoder]=last_hidden_state)
TOL_FP32=1e-4 TOL_TF32=5e-3 TOL_FP16=1e-2 TOL_BF16=5e-2
for comp in unet vae-encode vae-decode text-encoder; do
  want components || break
  [[ $rc_model == 0 ]] || { row "$comp" "-" "-" "SKIP (no model)"; continue; }
  d=$WORK/$comp
  mkdir -p "$d"
  py inputs "$comp" "$WORK/model" "$d/in.safetensors" --batch 2 --latent 16 --tokens 77 > "$LOGS/$comp.inputs.log" 2>&1
  run "$comp.cpu" 180 "$DINV" model run "$WORK/model" --component "$comp" --inputs "$d/in.safetensors" \
    --output "$d/cpu.safetensors" --device cpu --threads "$THREADS"
  rc=$?
  [[ $rc == 0 ]] || { row "$comp CPU fp32 reference" "$(why $rc "$LOGS/$comp.cpu.log")" "exit 0" "FAIL"; continue; }
  # label, dtype, NVIDIA_TF32_OVERRIDE, tolerance
  for v in "fp32 TF32 off|fp32|0|$TOL_FP32" "fp32 as dinv runs (cuDNN TF32)|fp32||$TOL_TF32" \
           "fp16|fp16||$TOL_FP16" "bf16|bf16||$TOL_BF16"; do
    IFS='|' read -r label dtype tf32 tol <<< "$v"
    name="$comp $DEVICE $label vs CPU fp32 (rel. L2)"
    if [[ $DEVICE == cpu && $label != "fp32 TF32 off" ]]; then row "$name" "-" "≤ $tol" "SKIP (GPU only)"; continue; fi
    tag=${label%% *}${tf32:+_notf32}
    run "$comp.$tag" 180 env ${tf32:+NVIDIA_TF32_OVERRIDE=$tf32} "$DINV" model run "$WORK/model" --component "$comp" \
      --inputs "$d/in.safetensors" --output "$d/$tag.safetensors" --device "$DEVICE" --dtype "$dtype" --threads "$THREADS"
    rc=$?
    if [[ $rc != 0 ]]; then row "$name" "$(why $rc "$LOGS/$comp.$tag.log")" "≤ $tol" "FAIL"; continue; fi
    e=$(py compare "$d/cpu.safetensors" "$d/$tag.safetensors" "${OUTPUT[$comp]}" "$tol" 2>&1)
    row "$name" "$e" "≤ $tol" "$(verdict $?)"
  done
done

echo "== 4. sampling loop (dinv model sample, guided, PNDM 20 steps, 128 px) on $DEVICE vs CPU"
if [[ $rc_model == 0 ]] && want sample; then
  d=$WORK/sample
  mkdir -p "$d"
  py inputs unet "$WORK/model" "$d/unet_in.safetensors" --batch 2 --tokens 5 --seed 1 > /dev/null 2>&1 &&
    "$PYTHON" -c "
import sys; sys.path.insert(0, '$B'); import checks
t = checks.read_safetensors('$d/unet_in.safetensors')['encoder_hidden_states']
checks.write_safetensors('$d/cond.safetensors', {'cond': t})"
  sample() {  # tag device [env...]
    local tag=$1 dev=$2
    shift 2
    run "sample.$tag" 240 env "$@" "$DINV" model sample "$WORK/model" --cond "$d/cond.safetensors" --steps 20 --guidance 2 \
      --seed 3 --height 128 --width 128 --save-size 32 --device "$dev" --output "$d/$tag.safetensors"
  }
  sample cpu cpu OMP_NUM_THREADS="$THREADS"
  rc=$?
  if [[ $rc != 0 ]]; then row "model sample CPU reference" "$(why $rc "$LOGS/sample.cpu.log")" "exit 0" "FAIL"
  else
    sample dev "$DEVICE" NVIDIA_TF32_OVERRIDE=0
    rc=$?
    if [[ $rc != 0 ]]; then row "model sample $DEVICE fp32 TF32 off vs CPU" "$(why $rc "$LOGS/sample.dev.log")" "-" "FAIL"
    else
      e=$(py compare "$d/cpu.safetensors" "$d/dev.safetensors" latents 1e-3)
      row "model sample $DEVICE fp32 TF32 off: final latents vs CPU (rel. L2)" "$e" "≤ 1e-3" "$(verdict $?)"
      e=$(py images "$d/cpu.safetensors" "$d/dev.safetensors" 2)
      row "model sample $DEVICE fp32 TF32 off: 32 px images vs CPU" "$e" "max ≤ 2 levels" "$(verdict $?)"
    fi
  fi
fi

echo "== 5. stage 1 (embed) and stage 2 (generate) on $DEVICE vs CPU (tiny model)"
if [[ $rc_tiny == 0 ]] && { want stages || want evaluate; }; then
  run data_small 60 "$DINV" data shapes --out "$WORK/shapes_small" --train 50 --test 10 --seed 0
  embed() {  # tag device dtype [env...]
    local tag=$1 dev=$2 dtype=$3
    shift 3
    mkdir -p "$WORK/embed_$tag"
    (cd "$WORK/embed_$tag" && run "embed.$tag" 180 env "$@" "$DINV" embed --model.path="$WORK/tiny" --store.path=store.h5 \
      --data.format=cifar10 --data.root="$WORK/shapes_small" --embed.num_images=8 --embed.group_size=8 \
      --embed.batch_size=8 --embed.steps=20 --embed.resolution=64 --embed.checkpoint_every=1000 --embed.dtype="$dtype" \
      --run.device="$dev" --run.threads="$THREADS" --run.progress=lines --run.progress_interval=0.001)
  }
  embed cpu cpu fp32
  rc=$?
  if [[ $rc != 0 ]]; then row "embed CPU reference" "$(why $rc "$LOGS/embed.cpu.log")" "exit 0" "FAIL"
  else
    for v in "fp32|1e-3|NVIDIA_TF32_OVERRIDE=0" "fp16|5e-2|" "bf16|1e-1|"; do
      IFS='|' read -r dtype tol envs <<< "$v"
      name="embed $DEVICE $dtype${envs:+ TF32 off}: loss per step vs CPU (max rel. diff)"
      want stages || continue
      if [[ $DEVICE == cpu && $dtype != fp32 ]]; then row "$name" "-" "≤ $tol" "SKIP (GPU only)"; continue; fi
      embed "$dtype" "$DEVICE" "$dtype" $envs
      rc=$?
      if [[ $rc != 0 ]]; then row "$name" "$(why $rc "$LOGS/embed.$dtype.log")" "≤ $tol" "FAIL"; continue; fi
      e=$(py losses "$LOGS/embed.cpu.log" "$LOGS/embed.$dtype.log" "$tol")
      row "$name" "$e" "≤ $tol" "$(verdict $?)"
    done
    # stage 2 from the CPU run's embeddings, on each side
    generate() {  # tag device dtype [env...]
      local tag=$1 dev=$2 dtype=$3
      shift 3
      cp "$WORK/embed_cpu/store.h5" "$WORK/gen_$tag.h5"
      run "generate.$tag" 180 env "$@" "$DINV" generate --model.path="$WORK/tiny" --store.path="$WORK/gen_$tag.h5" \
        --generate.tag=check --generate.num_samples=1 --generate.sampling_resolution=64 --generate.save_resolution=32 \
        --generate.batch_size=8 --sampler.steps=20 --generate.dtype="$dtype" --run.device="$dev" --run.threads="$THREADS" \
        --run.progress=off
    }
    generate cpu cpu fp32
    rc=$?
    if [[ $rc != 0 ]]; then row "generate CPU reference" "$(why $rc "$LOGS/generate.cpu.log")" "exit 0" "FAIL"
    else
      for v in "fp32|2|NVIDIA_TF32_OVERRIDE=0" "fp16|16|" "bf16|32|"; do
        IFS='|' read -r dtype tol envs <<< "$v"
        name="generate $DEVICE $dtype${envs:+ TF32 off}: stored 32 px images vs CPU (max |diff|)"
        want stages || continue
        if [[ $DEVICE == cpu && $dtype != fp32 ]]; then row "$name" "-" "≤ $tol levels" "SKIP (GPU only)"; continue; fi
        generate "$dtype" "$DEVICE" "$dtype" $envs
        rc=$?
        if [[ $rc != 0 ]]; then row "$name" "$(why $rc "$LOGS/generate.$dtype.log")" "≤ $tol levels" "FAIL"; continue; fi
        if ! has h5py; then row "$name" "ran (exit 0)" "≤ $tol levels" "SKIP (no h5py to read the store)"; continue; fi
        e=$("$PYTHON" - "$WORK/gen_cpu.h5" "$WORK/gen_$dtype.h5" "$tol" 2>&1 <<'PY'
import sys, h5py, numpy as np
def images(path):
    with h5py.File(path) as f:
        found = []
        f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.dtype == np.uint8 and o.ndim == 4 else None)
        return {n: f[n][()] for n in found}
a, b = images(sys.argv[1]), images(sys.argv[2])
if not a or a.keys() != b.keys():
    print(f"datasets differ: {sorted(a)} vs {sorted(b)}"); sys.exit(1)
d = max(int(np.abs(a[k].astype(int) - b[k].astype(int)).max()) for k in a)
m = float(np.mean([np.abs(a[k].astype(int) - b[k].astype(int)).mean() for k in a]))
print(f"max {d} levels, mean {m:.3g} ({sum(len(v) for v in a.values())} images)")
sys.exit(0 if d <= float(sys.argv[3]) else 1)
PY
        )
        row "$name" "$e" "≤ $tol levels" "$(verdict $?)"
      done
    fi
  fi
fi

echo "== 5b. stage 0 (pretrain, the main job's settings: tiny model, 16 px, batch 32) on $DEVICE vs CPU"
if want pretrain; then
  run corpus 60 "$DINV" data shapes --captioned --out "$WORK/corpus" --count 256 --resolution 16 --seed 0
  pretrain() {  # tag device [env...]
    local tag=$1 dev=$2
    shift 2
    run "pretrain.$tag" 180 env "$@" "$DINV" pretrain --data.format=captioned --data.root="$WORK/corpus" \
      --pretrain.init=preset:tiny --pretrain.output="$WORK/pretrain_$tag" --pretrain.component=both \
      --pretrain.vae_steps=10 --pretrain.steps=30 --pretrain.batch_size=32 --pretrain.warmup_steps=5 \
      --pretrain.snr_gamma=5 --pretrain.checkpoint_every=0 --run.device="$dev" --run.threads="$THREADS" \
      --run.progress=lines --run.progress_interval=0.001
  }
  rate() { grep "pretrain $1: [0-9]*/" "$2" | tail -1 | grep -o "[0-9.]* steps/s"; }  # phase log
  pretrain cpu cpu
  rc=$?
  if [[ $rc != 0 ]]; then row "pretrain CPU reference" "$(why $rc "$LOGS/pretrain.cpu.log")" "exit 0" "FAIL"
  else
    # label|tag|env|tolerance: TF32 off should follow the CPU closely; TF32 (as dinv runs) is a first guess
    for v in "fp32 TF32 off|notf32|NVIDIA_TF32_OVERRIDE=0|1e-3" "fp32 as dinv runs (TF32)|tf32||2e-2"; do
      IFS='|' read -r label tag envs tol <<< "$v"
      if [[ $DEVICE == cpu && $tag != notf32 ]]; then row "pretrain $DEVICE $label" "-" "≤ $tol" "SKIP (GPU only)"; continue; fi
      pretrain "$tag" "$DEVICE" $envs
      rc=$?
      for phase in vae unet; do
        name="pretrain $phase $DEVICE $label: loss per step vs CPU (max rel. diff)"
        if [[ $rc != 0 ]]; then row "$name" "$(why $rc "$LOGS/pretrain.$tag.log")" "≤ $tol" "FAIL"; continue; fi
        e=$(py losses "$LOGS/pretrain.cpu.log" "$LOGS/pretrain.$tag.log" "$tol" "pretrain $phase" 2>&1)
        ok=$(verdict $?)
        row "$name" "$e; $(rate $phase "$LOGS/pretrain.$tag.log") ($DEVICE), $(rate $phase "$LOGS/pretrain.cpu.log") (CPU)" "≤ $tol" "$ok"
      done
    done
  fi
fi

echo "== 6. dinv train, 1 rank through ${DEVICE/cuda/NCCL}: ResNet-18 on the procedural shapes"
[[ $DEVICE == cuda ]] && { n_train=10000 n_test=2000 steps=300; } || { n_train=512 n_test=128 steps=4; }
{ want train || want evaluate; } && run data_shapes 120 "$DINV" data shapes --out "$WORK/shapes" --train $n_train --test $n_test --seed 0
for precision in fp32 fp16 bf16; do
  want train || { want evaluate && [[ $precision == fp32 ]]; } || continue
  name="train 1 rank $DEVICE $precision, $steps steps: final accuracy"
  if [[ $DEVICE == cpu && $precision != fp32 ]]; then row "$name" "-" "> 0.2, NCCL" "SKIP (GPU only)"; continue; fi
  mkdir -p "$WORK/train_$precision"
  (cd "$WORK/train_$precision" && run "train.$precision" 150 mpirun -np 1 --bind-to none "$DINV" train --data.format=cifar10 \
     --data.root="$WORK/shapes" --data.real_bs=128 --data.eval_bs=500 --data.augment=none --data.normalize=shapes \
     --data.workers=4 --train.model=resnet18 --train.steps=$steps --train.optimizer=adamw --train.lr=2e-3 \
     --train.weight_decay=0.05 --train.label_smoothing=0.1 --train.warmup_steps=30 --train.num_evals=1 \
     --train.run_name="check_$precision" --train.checkpoint_every=0 --run.device="$DEVICE" --run.threads="$THREADS" \
     --train.precision="$precision" --train.save_model=true --run.progress=off)
  rc=$?
  if [[ $rc != 0 ]]; then row "$name" "$(why $rc "$LOGS/train.$precision.log")" "> 0.2, NCCL" "FAIL"; continue; fi
  acc=$(py accuracy "$LOGS/train.$precision.log")
  backend=$(grep -o "gradients over [A-Za-z]*" "$LOGS/train.$precision.log" | head -1)
  ok=FAIL
  if [[ $DEVICE == cpu ]]; then
    ok="PASS"  # 4 steps: the run itself is the check
  elif grep -qi "nccl" <<< "$backend" && awk -v a="$acc" 'BEGIN{exit !(a > 0.2)}'; then ok=PASS; fi
  row "$name" "$acc, $backend" "$([[ $DEVICE == cpu ]] && echo 'exit 0 (CPU: 4 steps)' || echo '> 0.2, NCCL')" "$ok"
done

echo "== 6b. dinv evaluate on $DEVICE vs CPU: the fp32 classifier of 6 measures the samples that 5 generated"
classifier=$WORK/train_fp32/results/check_fp32.model
if ! want evaluate; then :
elif [[ -e $classifier && -f $WORK/gen_cpu.h5 ]]; then
  evaluate() {  # tag device [env...]
    local tag=$1 dev=$2
    shift 2
    cp "$WORK/gen_cpu.h5" "$WORK/eval_$tag.h5"
    run "evaluate.$tag" 120 env "$@" "$DINV" evaluate --store.path="$WORK/eval_$tag.h5" --data.format=cifar10 \
      --data.root="$WORK/shapes_small" --data.normalize=shapes --evaluate.classifier="$classifier" \
      --evaluate.tags=check --evaluate.batch_size=16 --run.device="$dev" --run.threads="$THREADS" --run.progress=off
  }
  name="evaluate $DEVICE fp32 TF32 off: metrics vs CPU (max rel. diff)"
  rc_dev=1
  evaluate cpu cpu
  rc_cpu=$?
  [[ $rc_cpu == 0 ]] && { evaluate dev "$DEVICE" NVIDIA_TF32_OVERRIDE=0; rc_dev=$?; }
  if [[ $rc_cpu != 0 ]]; then row "evaluate CPU reference" "$(why $rc_cpu "$LOGS/evaluate.cpu.log")" "exit 0" "FAIL"
  elif [[ $rc_dev != 0 ]]; then row "$name" "$(why $rc_dev "$LOGS/evaluate.dev.log")" "≤ 1e-3" "FAIL"
  else
    e=$(py metrics "$LOGS/evaluate.cpu.log" "$LOGS/evaluate.dev.log" 1e-3 2>&1)
    row "$name" "$e" "≤ 1e-3" "$(verdict $?)"
  fi
else row "evaluate $DEVICE vs CPU" "-" "-" "SKIP (no classifier from 6 or no store from 5)"; fi

echo "== 6c. dinv retrieve on $DEVICE vs CPU: a small random CLIP vision model, 20 queries, a pool of 40"
if ! want retrieve; then :
elif ! has transformers || ! has PIL || ! has h5py; then
  row "retrieve $DEVICE vs CPU" "-" "-" "SKIP (needs transformers, Pillow and h5py in $PYTHON)"
else
  r=$WORK/retrieve
  mkdir -p "$r"
  run retrieve.inputs 120 "$DINV" data shapes --out "$r/queries" --train 20 --test 10 --seed 1 &&
    run retrieve.poolsrc 120 "$DINV" data shapes --out "$r/poolsrc" --train 40 --test 10 --seed 2 &&
    "$PYTHON" - "$r" > "$LOGS/retrieve.model.log" 2>&1 <<'PY'
import sys, pathlib, numpy as np, torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection
r = pathlib.Path(sys.argv[1])
raw = np.concatenate([np.fromfile(r / "poolsrc" / f"data_batch_{i}.bin", np.uint8) for i in range(1, 6)]).reshape(-1, 3073)
for i, row in enumerate(raw):
    (r / "pool" / f"c{row[0]}").mkdir(parents=True, exist_ok=True)
    Image.fromarray(row[1:].reshape(3, 32, 32).transpose(1, 2, 0)).save(r / "pool" / f"c{row[0]}" / f"{i:03d}.png")
torch.manual_seed(0)
cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                       patch_size=8, projection_dim=16, hidden_act="quick_gelu")
CLIPVisionModelWithProjection(cfg).eval().save_pretrained(r / "clip", safe_serialization=True)
CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(r / "clip")
PY
  rc=$?
  retrieve() {  # tag device [env...]
    local tag=$1 dev=$2
    shift 2
    run "retrieve.$tag" 120 env "$@" "$DINV" retrieve --data.format=cifar10 --data.root="$r/queries" \
      --store.path="$r/$tag.h5" --retrieve.model="$r/clip" --retrieve.k=3 --retrieve.cache="$r/$tag.cache.h5" \
      --retrieve.pool.format=folder --retrieve.pool.root="$r/pool" --run.device="$dev" --run.threads="$THREADS" \
      --run.progress=off
  }
  name="retrieve $DEVICE fp32 TF32 off: neighbours vs CPU"
  rc_cpu=1 rc_dev=1
  [[ $rc == 0 ]] && { retrieve cpu cpu; rc_cpu=$?; }
  [[ $rc_cpu == 0 ]] && { retrieve dev "$DEVICE" NVIDIA_TF32_OVERRIDE=0; rc_dev=$?; }
  if [[ $rc != 0 ]]; then row "$name" "inputs failed (logs/retrieve.model.log)" "-" "FAIL"
  elif [[ $rc_cpu != 0 ]]; then row "retrieve CPU reference" "$(why $rc_cpu "$LOGS/retrieve.cpu.log")" "exit 0" "FAIL"
  elif [[ $rc_dev != 0 ]]; then row "$name" "$(why $rc_dev "$LOGS/retrieve.dev.log")" "-" "FAIL"
  else
    e=$("$PYTHON" - "$r/cpu.h5" "$r/dev.h5" 2>&1 <<'PY'
import sys, h5py, numpy as np
def tag(path):
    with h5py.File(path) as f:
        (name,) = f["samples"].keys()
        return {k: f["samples"][name][k][()] for k in ("pool_index", "similarity", "images")}
a, b = tag(sys.argv[1]), tag(sys.argv[2])
same = int((a["pool_index"] == b["pool_index"]).sum())
sim = float(np.abs(a["similarity"] - b["similarity"]).max())
print(f"{same} of {a['pool_index'].size} neighbours the same, similarity max |diff| {sim:.2g}")
sys.exit(0 if same == a["pool_index"].size and sim <= 1e-4 and np.array_equal(a["images"], b["images"]) else 1)
PY
    )
    row "$name" "$e" "all the same, similarity ≤ 1e-4" "$(verdict $?)"
  fi
fi

echo "== 7. speed: ResNet-18 training images/s, dinv vs PyTorch (bench/train_throughput.py)"
for precision in fp32 bf16; do
  want throughput || break
  name="ResNet-18 train images/s $DEVICE $precision: dinv / PyTorch"
  if [[ $DEVICE == cpu && $precision != fp32 ]]; then row "$name" "-" "≥ 1.0" "SKIP (GPU only)"; continue; fi
  if ! has h5py || ! has numpy; then row "$name" "-" "≥ 1.0" "SKIP (no h5py/numpy in $PYTHON)"; continue; fi
  [[ $DEVICE == cuda ]] && bsteps=200 || bsteps=3
  run "throughput.$precision" 180 "$PYTHON" "$B/bench/train_throughput.py" --dinv "$DINV" --device "$DEVICE" \
    --precision "$precision" --steps $bsteps --repeats 1 --threads "$THREADS"
  rc=$?
  if [[ $rc != 0 ]]; then row "$name" "$(why $rc "$LOGS/throughput.$precision.log")" "≥ 1.0" "FAIL"; continue; fi
  line=$(grep "^median" "$LOGS/throughput.$precision.log")
  ratio=$(sed -n 's/.*ratio dinv\/pytorch \([0-9.]*\).*/\1/p' <<< "$line")
  row "$name" "$(sed 's/^median over [0-9]*: //' <<< "$line")" "≥ 1.0" \
    "$([[ $DEVICE == cpu ]] && echo 'SKIP (CPU: not a measurement)' || (awk -v r="$ratio" 'BEGIN{exit !(r >= 1.0)}' && echo PASS || echo FAIL))"
done

echo "== 8. speed: stage 2 images/s and stage 1 steps/s ($PRESET)"
if [[ $rc_model == 0 ]] && want speed; then
  [[ $DEVICE == cuda ]] && speed=(--batches 8 64 256 --dtype fp16 --steps 50) ||
    speed=(--batches 2 --dtype fp32 --steps 2 --embed-batch 4 --embed-steps 2)
  run stage_speed 240 "$PYTHON" "$B/stage_speed.py" --dinv "$DINV" --model "$WORK/model" --work "$WORK/speed" \
    --device "$DEVICE" "${speed[@]}" --threads "$THREADS" --results "$RESULTS"
  rc=$?
  [[ $rc == 0 ]] || row "stage speed (stage_speed.py)" "$(why $rc "$LOGS/stage_speed.log")" "exit 0" "FAIL"
fi

echo "== 9. means of issue 18 that dinv does not implement yet"
row "sampling loop captured in a CUDA graph" "-" "-" "SKIP (not implemented: no CUDA graph capture in src/)"
row "channels_last in dinv generate / embed" "-" "-" "SKIP (not a setting: sd::LoadOptions::channels_last is used only by dinv_bench_sd, a CPU benchmark)"
row "cross-attention K/V of the constant context computed once per loop" "-" "-" "SKIP (not implemented: to_k/to_v run at every step, src/sd/layers.cpp)"
row "resize to the saved size on the GPU" "-" "-" "SKIP (not implemented: images are moved to the CPU before io::resize, src/generation/generate.cpp)"

echo
echo "== summary ($((SECONDS - START)) s; logs in $LOGS)"
py table "$RESULTS" | tee "$OUT/table.txt"
! grep -q $'\tFAIL' "$RESULTS"
