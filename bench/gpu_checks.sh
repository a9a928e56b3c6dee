#!/bin/bash
# The GPU checks of classifier training, on a machine with a GPU and a CUDA
# build of dinv (LibTorch with CUDA, NCCL found at configure time):
#   1. the MPI test suite on 1 rank: NCCL collectives (the asynchronous
#      all-reduce on its side stream), and NCCL training against one CPU rank
#      with frozen BatchNorm, with SyncBN, and the bf16 autocast update;
#   2. one `dinv train` run per precision (bf16, fp32) on 1 rank through the
#      NCCL communicator: ResNet-18 on the procedural shapes;
#   3. bench/train_throughput.py on the GPU in fp32 and bf16 (dinv vs PyTorch);
#   4. the main job (scripts/demo.sh: embed, generate, train) on the GPU.
# Logs go to OUTDIR; the summary lines go to standard output.
#
#   bench/gpu_checks.sh [--build DIR] [--steps N] [--bench-steps N] [--repeats N] OUTDIR
# Needs: mpirun (or MPIEXEC), a Python with torch and h5py (PYTHON, default python3).
# DEVICE=cpu runs the same steps on the CPU (a quick check of the script itself).
set -euo pipefail
BUILD=build STEPS=1000 BENCH_STEPS=300 REPEATS=3 THREADS=${THREADS:-8}
while [[ $# -gt 1 ]]; do
  case $1 in
    --build) BUILD=$2 ;; --steps) STEPS=$2 ;; --bench-steps) BENCH_STEPS=$2 ;; --repeats) REPEATS=$2 ;;
    *) echo "gpu_checks.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
[[ $# -eq 1 ]] || { sed -n 2,14p "$0" >&2; exit 2; }
OUTD=$(mkdir -p "$1" && cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
DINV=$BUILD/dinv
MPIEXEC=${MPIEXEC:-mpirun}
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
[[ $DEVICE == cpu ]] || nvidia-smi -L || { echo "gpu_checks.sh: no GPU (nvidia-smi failed); DEVICE=cpu to try the script" >&2; exit 1; }

echo "== 1. MPI tests on 1 rank (NCCL tests run on the GPU)"
tests_ok=1
(cd "$WORK" && "$MPIEXEC" -np 1 "$BUILD/tests/dinv_mpi_tests" --gtest_color=no > "$OUTD/mpi_tests_np1.log" 2>&1) || tests_ok=0
grep -E "^\[  (PASSED|FAILED)  \]|^\[  SKIPPED \] [^(]*$|NCCL on|bf16 autocast vs|Failure" "$OUTD/mpi_tests_np1.log" || true

echo "== 2. dinv train, 1 rank on $DEVICE"
"$DINV" data shapes --out "$WORK/shapes" --train 10000 --test 2000 > /dev/null
for precision in bf16 fp32; do
  mkdir -p "$WORK/run_$precision"
  (cd "$WORK/run_$precision" && "$MPIEXEC" -np 1 "$DINV" train --data.format=cifar10 --data.root="$WORK/shapes" \
     --data.real_bs=128 --data.eval_bs=500 --data.augment=none --data.normalize=shapes --data.workers=4 \
     --train.model=resnet18 --train.steps="$STEPS" --train.optimizer=adamw --train.lr=2e-3 --train.momentum=0.8 \
     --train.weight_decay=0.05 --train.label_smoothing=0.1 --train.warmup_steps=50 --train.num_evals=4 \
     --train.run_name="gpu_$precision" --train.checkpoint_every=0 --run.device="$DEVICE" --run.threads="$THREADS" \
     --train.precision="$precision" --run.progress=off 2>&1 | tee "$OUTD/train_$precision.log" | grep -E "gradients over|final accuracy")
  "$PYTHON" - "$WORK/run_$precision/results/gpu_$precision.h5" <<'PY'
import sys, h5py
a = h5py.File(sys.argv[1]).attrs
text = lambda v: v.decode() if isinstance(v, bytes) else v
print("  " + ", ".join(f"{k} {text(a[k])}" for k in ("device", "world_size", "final_accuracy", "images_per_second", "train_seconds")))
PY
done

echo "== 3. training throughput, dinv vs PyTorch"
for precision in fp32 bf16; do
  "$PYTHON" "$SRC/bench/train_throughput.py" --dinv "$DINV" --device "$DEVICE" --precision "$precision" \
    --steps "$BENCH_STEPS" --repeats "$REPEATS" --threads "$THREADS" 2>&1 | tee "$OUTD/bench_$precision.log"
done
echo "== 4. the main job (scripts/demo.sh) on $DEVICE"
DINV_SKIP_BOOTSTRAP=1 BUILD_DIR="$BUILD" DINV_DEMO_DIR="$WORK/demo" DINV_PYTHON="$PYTHON" \
  bash "$SRC/scripts/demo.sh" --run.device="$DEVICE" > "$OUTD/demo.log" 2>&1 || tests_ok=0
grep -E "final accuracy|^demo outputs|error" "$OUTD/demo.log" || true
rm -rf "$WORK"
[[ $tests_ok == 1 ]] || { echo "gpu_checks.sh: the MPI tests or the main job failed (logs in $OUTD)" >&2; exit 1; }
