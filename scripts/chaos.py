#!/usr/bin/env python3
"""Chaos run: the built-in pipeline (pretrain, embed, generate, train) with
kill -9 of one random rank at seeded random moments, each followed by a
rerun of the same command; at the end every output must equal, bit for bit,
the output of an uninterrupted run.

    scripts/chaos.py [--kills 50] [--kills-per-round 8] [--seed 0] [--ranks 2]
                     [--scale 1] [--out DIR]

The uninterrupted reference runs first, in DIR/reference, and gives each
stage's duration. Then rounds: each round runs the pipeline afresh in
DIR/round-K, with --kills-per-round kills shared among the stages in
proportion to their durations. A kill lands at a random moment between 10%
and 50% of the stage's full duration after the (re)start; the rerun resumes
from what the killed run saved, so a stage may finish before all its kills,
which then move on to the next stage. After every round, each stage's output
is compared with the reference; rounds repeat until --kills kills have
landed. A round whose outputs are identical is deleted; a failing one is
kept for inspection.

What is compared with the reference:
  pretrain   every weight file of the finished diffusers folder (bytes)
  embed      the store after embedding (bytes)
  generate   the store after generation (bytes)
  train      the results file: every dataset and every attribute but timings
A JSON report (DIR/chaos.json) lists each kill: stage, delay, rank pid, and
how the job ended. Exit status 0 only if all outputs are identical and enough
kills landed, and no surviving rank hung; 1 otherwise. Needs the build (BUILD_DIR, default build/) and
Python with h5py and numpy (the project's environment).
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from mpi_session import kill_session, rank_pids

REPO = Path(__file__).resolve().parents[1]
STAGES = ("pretrain", "embed", "generate", "train")

# One configuration for the whole pipeline; {n} scales the work per stage.
CONFIG = """\
[run]
threads = 1
seed = 3
# A progress line at every step: tests/hostile/test_chaos.py signals a stage
# at its first one (in the work loop, most of the work ahead), however fast
# the machine. The resolved configuration goes into the outputs, so every
# run of the pipeline has the same lines here.
progress = lines
progress_interval = 0.001
[data]
format = cifar10
root = {inputs}/data
split = train
real_bs = 8
eval_bs = 100
augment = none
workers = 1
[model]
path = gen
[store]
path = store.h5
[pretrain]
init = preset:tiny
output = gen
steps = {pretrain_steps}
vae_steps = {vae_steps}
batch_size = 8
lr = 2e-3
vae_lr = 2e-3
warmup_steps = 2
checkpoint_every = 2
[embed]
num_images = {embed_images}
group_size = 10
batch_size = 5
steps = {embed_steps}
resolution = 32
checkpoint_every = 4
[generate]
tag = chaos
num_samples = 2
sampling_resolution = 32
save_resolution = 16
chunk_size = 6
batch_size = 4
[sampler]
steps = 6
[syn]
format = store
root = store.h5
tags = chaos
[train]
model = resnet18
run_name = chaos
steps = {train_steps}
lr = 2e-3
optimizer = adamw
warmup_steps = 2
num_evals = 2
checkpoint_every = 3
"""

# The pretrain stage reads the captioned corpus, the others the labelled set.
STAGE_ARGS = {
    "pretrain": ["--data.format=captioned", "--data.root={inputs}/corpus"],
    "embed": [],
    "generate": [],
    "train": ["--data.real_bs=4", "--data.syn_bs=4", "--data.resolution=16"],
}

# Results attributes that measure time, not what was computed.
TIMING_ATTRIBUTES = {"train_seconds", "eval_seconds", "images_per_second", "resumed_from", "created", "dinv_version"}


def sizes(scale):
    return dict(embed_images=20 * scale, embed_steps=40 * scale, pretrain_steps=12 * scale,
                vae_steps=6 * scale, train_steps=12 * scale)


class Pipeline:
    def __init__(self, dinv, ranks, inputs, workdir, scale):
        self.dinv, self.ranks, self.inputs, self.workdir = dinv, ranks, inputs, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "chaos.ini").write_text(CONFIG.format(inputs=inputs, **sizes(scale)))
        self.env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                        OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1", SOURCE_DATE_EPOCH="1700000000")

    def command(self, stage):
        extra = [a.format(inputs=self.inputs) for a in STAGE_ARGS[stage]]
        return ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(self.ranks), self.dinv, stage, "--config",
                "chaos.ini", *extra]

    def start(self, stage):
        log = open(self.workdir / f"{stage}.log", "a")
        return subprocess.Popen(self.command(stage), cwd=self.workdir, env=self.env, stdout=log, stderr=log,
                                start_new_session=True)

    def run(self, stage):
        """Runs a stage to the end; raises with its log on failure."""
        proc = self.start(stage)
        if proc.wait() != 0:
            tail = (self.workdir / f"{stage}.log").read_text()[-3000:]
            raise RuntimeError(f"{stage} failed with exit {proc.returncode} in {self.workdir}:\n{tail}")


def kill_one_rank(pipeline, stage, delay, rng):
    """Starts `stage`, kills one random rank `delay` seconds later; returns
    the kill's record, or None when the stage finished first."""
    proc = pipeline.start(stage)
    started = time.monotonic()
    time.sleep(delay)
    pids = rank_pids(proc)
    while not pids and proc.poll() is None and time.monotonic() - started < delay + 30:
        time.sleep(0.05)  # still inside mpirun's start-up: wait for the ranks
        pids = rank_pids(proc)
    if proc.poll() is not None or not pids:
        proc.wait()
        return None
    victim = rng.choice(pids)
    os.kill(victim, signal.SIGKILL)
    try:
        code = proc.wait(timeout=120)
        ended = f"mpirun exited {code}"
    except subprocess.TimeoutExpired:
        kill_session(proc)
        ended = "HUNG: the other ranks did not stop within 120 s of a peer's death"
    return dict(stage=stage, delay_s=round(delay, 3), victim_pid=victim, ranks_alive=len(pids), ended=ended)


def make_inputs(dinv, inputs):
    inputs.mkdir(parents=True, exist_ok=True)
    if not (inputs / "data" / "test_batch.bin").exists():
        subprocess.run([dinv, "data", "shapes", "--out", inputs / "data", "--train", "100", "--test", "100"],
                       check=True, capture_output=True)
    if not (inputs / "corpus" / "metadata.jsonl").exists():
        subprocess.run([dinv, "data", "shapes", "--captioned", "--out", inputs / "corpus", "--count", "48"], check=True,
                       capture_output=True)


def stage_output(workdir, stage):
    return {"pretrain": workdir / "gen", "embed": workdir / "store.h5", "generate": workdir / "store.h5",
            "train": workdir / "results" / "chaos.h5"}[stage]


def snapshot(workdir, stage, into):
    """Keeps a copy of a stage's output (embed and generate share the store)."""
    src = stage_output(workdir, stage)
    into.mkdir(parents=True, exist_ok=True)
    dst = into / stage
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copyfile(src, dst)


def weight_files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*.safetensors"))


def h5_content(path):
    """Datasets and attributes of an HDF5 file, timings left out."""
    items = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            for k, v in obj.attrs.items():
                if k not in TIMING_ATTRIBUTES:
                    items[f"{name}@{k}"] = np.asarray(v)
            if isinstance(obj, h5py.Dataset):
                items[name] = obj[()]
        visit("/", f)
        f.visititems(visit)
    return items


def differences(reference, chaos, stage):
    """What differs between the two snapshots of one stage (empty: identical)."""
    a, b = reference / stage, chaos / stage
    if stage == "pretrain":
        files = weight_files(a)
        if files != weight_files(b):
            return [f"weight files differ: {files} vs {weight_files(b)}"]
        return [str(f) for f in files if (a / f).read_bytes() != (b / f).read_bytes()]
    if stage in ("embed", "generate"):
        return [] if a.read_bytes() == b.read_bytes() else [f"{stage}: store bytes differ"]
    ca, cb = h5_content(a), h5_content(b)
    diff = sorted(set(ca) ^ set(cb))
    diff += [k for k in sorted(set(ca) & set(cb)) if not np.array_equal(ca[k], cb[k])]
    return diff


def share_kills(total, durations):
    """Kills per stage in proportion to duration, at least one each."""
    whole = sum(durations.values())
    counts = {s: max(1, round(total * d / whole)) for s, d in durations.items()}
    longest = max(durations, key=durations.get)
    counts[longest] += total - sum(counts.values())
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50, help="kills that must land mid-stage (default 50)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments and victims")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--kills-per-round", type=int, default=8,
                    help="kills per pass over the stages; passes repeat until --kills have landed (default 8)")
    ap.add_argument("--max-rounds", type=int, default=20)
    ap.add_argument("--scale", type=int, default=1, help="work per stage (raise it for more kills per round)")
    ap.add_argument("--out", type=Path, default=Path("out/chaos"))
    ap.add_argument("--dinv", default=str(Path(os.environ.get("BUILD_DIR", REPO / "build")) / "dinv"))
    args = ap.parse_args()
    if args.kills_per_round < len(STAGES):
        ap.error(f"--kills-per-round must be at least {len(STAGES)} (one per stage)")
    if not os.access(args.dinv, os.X_OK):
        ap.error(f"no dinv binary at {args.dinv} (build first, or set BUILD_DIR / --dinv)")
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    inputs = out / "inputs"
    make_inputs(args.dinv, inputs)

    ref = Pipeline(args.dinv, args.ranks, inputs, out / "reference", args.scale)
    durations = {}
    for stage in STAGES:
        t = time.monotonic()
        ref.run(stage)
        durations[stage] = time.monotonic() - t
        snapshot(ref.workdir, stage, out / "reference")
        print(f"reference {stage}: {durations[stage]:.1f} s", flush=True)

    rng = random.Random(args.seed)
    quota = share_kills(args.kills_per_round, durations)
    kills, rounds, missed = [], [], 0
    while len(kills) < args.kills and len(rounds) < args.max_rounds:
        workdir = out / f"round-{len(rounds) + 1}"
        landed, late = chaos_round(Pipeline(args.dinv, args.ranks, inputs, workdir, args.scale), quota, durations, rng)
        diffs = {s: differences(out / "reference", workdir, s) for s in STAGES}
        rounds.append(dict(kills=len(landed), identical=not any(diffs.values()), differences=diffs))
        kills += [dict(k, round=len(rounds)) for k in landed]
        missed += late
        print(f"round {len(rounds)}: {len(landed)} kills, outputs identical: {rounds[-1]['identical']}", flush=True)
        if rounds[-1]["identical"]:
            shutil.rmtree(workdir)  # keep only the rounds that failed
        if not landed:
            break  # no kill lands any more: the stages are too short
    identical = all(r["identical"] for r in rounds)
    hung = [k for k in kills if k["ended"].startswith("HUNG")]
    report = dict(seed=args.seed, ranks=args.ranks, scale=args.scale, requested_kills=args.kills,
                  landed_kills=len(kills), kills_too_late=missed, stage_seconds=durations, quota_per_round=quota,
                  identical=identical, hung=len(hung), rounds=rounds, kills=kills)
    (out / "chaos.json").write_text(json.dumps(report, indent=1))
    print(f"{len(kills)} kills landed in {len(rounds)} rounds ({missed} came after a stage had finished); "
          f"outputs identical: {identical}; report {out / 'chaos.json'}")
    for i, r in enumerate(rounds, 1):
        for stage, d in r["differences"].items():
            if d:
                print(f"  round {i}: {stage} differs: {', '.join(map(str, d[:10]))}", file=sys.stderr)
    if len(kills) < args.kills:
        print(f"only {len(kills)} of {args.kills} kills landed mid-stage: raise --scale", file=sys.stderr)
    return 0 if identical and not hung and len(kills) >= args.kills else 1


def chaos_round(pipeline, quota, durations, rng):
    """One pass over the stages with kills; every stage is finished by a
    rerun and its output kept beside the round's work folder."""
    kills, late, owed = [], 0, 0
    for stage in STAGES:
        landed, due = 0, quota[stage] + owed  # kills a finished stage could not take move on
        while landed < due:
            record = kill_one_rank(pipeline, stage, rng.uniform(0.10, 0.50) * durations[stage], rng)
            if record is None:
                late += 1
                break  # the stage finished: its outputs are complete
            kills.append(record)
            landed += 1
            print(f"  kill: {stage} after {record['delay_s']} s: {record['ended']}", flush=True)
        owed = due - landed
        pipeline.run(stage)  # the rerun that finishes the stage
        snapshot(pipeline.workdir, stage, pipeline.workdir)
    return kills, late


if __name__ == "__main__":
    sys.exit(main())
