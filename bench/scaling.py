#!/usr/bin/env python3
"""Each stage on 1, 2 and 4 MPI ranks (mpirun, tiny preset, procedural shapes
data): wall time, CPU time of all ranks together, bytes of the store or
results, HDF5 objects, and whether the outputs are the same bytes on every
rank count. Numbers for docs/scaling.md.

    python bench/scaling.py --dinv build/dinv [--ranks 1 2 4] [--work /tmp/dinv-scaling]

Per rank count, in a fresh folder: embed, generate, a 2-point sweep (train),
pretrain; then the same sweep again, whose points are all done: its wall time
is the start-up cost of a sweep task that has nothing to do (process start,
MPI init, configuration, the check of the results file).
Wall time includes start-up (process, MPI, model loading): on the tiny preset
that is most of it, which is the point of measuring it.
"""
import argparse
import hashlib
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import h5py

CONFIG = """\
[run]
threads = 1
progress = off
[data]
format = cifar10
root = {inputs}/data
split = train
real_bs = 8
syn_bs = 8
eval_bs = 48
[model]
path = {inputs}/model
[store]
path = store.h5
[embed]
num_images = 40
group_size = 5
batch_size = 5
steps = 16
resolution = 32
checkpoint_every = 8
[generate]
tag = method
num_samples = 2
sampling_resolution = 32
save_resolution = 16
chunk_size = 8
batch_size = 4
[sampler]
steps = 8
[syn]
format = store
root = store.h5
tags = method
[train]
model = resnet18
steps = 8
warmup_steps = 1
num_evals = 1
checkpoint_every = 0
[sweep]
name = scaling
source = real,synthetic
[pretrain]
output = gen
steps = 8
vae_steps = 4
batch_size = 8
warmup_steps = 2
checkpoint_every = 4
"""


def run(cmd, cwd, env):
    """(wall seconds, CPU seconds of the children) of one command; fails loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def digest(paths):
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:12]


def hdf5_objects(path):
    """(groups + datasets, attributes) in an HDF5 file."""
    counts = [0, 0]

    def visit(_, obj):
        counts[0] += 1
        counts[1] += len(obj.attrs)
    with h5py.File(path) as f:
        counts[1] += len(f.attrs)
        f.visititems(visit)
    return tuple(counts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dinv", default="build/dinv")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--work", default="/tmp/dinv-scaling")
    ap.add_argument("--mpirun", default=os.environ.get("MPIEXEC", "mpirun"))
    args = ap.parse_args()
    dinv = Path(args.dinv).resolve()
    work = Path(args.work)
    inputs = work / "inputs"
    env = dict(os.environ, OMP_NUM_THREADS="1", SOURCE_DATE_EPOCH="1700000000",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    inputs.mkdir(parents=True, exist_ok=True)
    if not (inputs / "data" / "test_batch.bin").exists():
        run([dinv, "data", "shapes", "--out", inputs / "data", "--train", 100, "--test", 50], work, env)
    if not (inputs / "model" / "model_index.json").exists():
        run([dinv, "model", "init", "--preset", "tiny", inputs / "model"], work, env)
    if not (inputs / "corpus").exists():
        run([dinv, "data", "shapes", "--captioned", "--out", inputs / "corpus", "--count", 48, "--seed", 1], work, env)

    rows = []
    for np_ in args.ranks:
        d = work / f"np{np_}"
        subprocess.run(["rm", "-rf", str(d)], check=True)
        d.mkdir(parents=True)
        (d / "bench.ini").write_text(CONFIG.format(inputs=inputs))
        (d / "corpus").symlink_to(inputs / "corpus")
        mpi = [args.mpirun, "--oversubscribe", "-np", np_, dinv]
        for stage in ["embed", "generate", "sweep", "pretrain"]:
            more = ["--data.format=captioned", "--data.root=corpus"] if stage == "pretrain" else []
            wall, cpu = run([*mpi, stage, "--config", "bench.ini", *more], d, env)
            if stage in ("embed", "generate"):
                out = [d / "store.h5"]
            elif stage == "sweep":
                out = sorted((d / "results").glob("scaling_*.h5"))
            else:
                out = sorted((d / "gen").glob("*/diffusion_pytorch_model.safetensors"))
            size = sum(p.stat().st_size for p in out)
            objects = hdf5_objects(out[0]) if out[0].suffix == ".h5" else ("-", "-")
            same = digest(out) if stage != "sweep" else "(timings differ)"
            rows.append((stage, np_, wall, cpu, size, *objects, same))
            print(*rows[-1], file=sys.stderr, flush=True)
        wall, cpu = run([*mpi, "sweep", "--config", "bench.ini"], d, env)
        rows.append(("sweep, all done", np_, wall, cpu, 0, "-", "-", "-"))

    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print("| stage | ranks | wall s | CPU s (all ranks) | bytes written | HDF5 objects | HDF5 attributes | sha256 of the output |")
    print("|---|---|---|---|---|---|---|---|")
    for stage, np_, wall, cpu, size, objs, attrs, same in rows:
        print(f"| {stage} | {np_} | {wall:.1f} | {cpu:.1f} | {size} | {objs} | {attrs} | {same} |")


if __name__ == "__main__":
    main()
