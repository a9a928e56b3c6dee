"""Crashes and damage between and during stages (issue 19, point 4): the
short version of scripts/chaos.py (kill -9 of one random rank at seeded
moments in pretrain, embed, generate and train, then a rerun: the outputs
equal an uninterrupted run's), SIGTERM of all ranks in each stage, and a
store deleted, truncated or read-only between stages."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import chaos  # noqa: E402

DINV = os.environ.get("DINV") or str(ROOT / "build" / "dinv")


def test_short_chaos_run_gives_the_uninterrupted_outputs(tmp_path):
    r = subprocess.run([sys.executable, ROOT / "scripts" / "chaos.py", "--kills", "8", "--seed", "7", "--out",
                        tmp_path, "--dinv", DINV], capture_output=True, text=True, timeout=1200)
    report = json.loads((tmp_path / "chaos.json").read_text())
    assert r.returncode == 0, r.stdout + r.stderr
    assert report["identical"] and report["hung"] == 0
    assert report["landed_kills"] >= 8
    assert {k["stage"] for k in report["kills"]} == set(chaos.STAGES), "every stage takes at least one kill"


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """The reference outputs of every stage, made once for this module."""
    out = tmp_path_factory.mktemp("chaos_reference")
    chaos.make_inputs(DINV, out / "inputs")
    ref = chaos.Pipeline(DINV, 2, out / "inputs", out / "reference", 1)
    for stage in chaos.STAGES:
        ref.run(stage)
        chaos.snapshot(ref.workdir, stage, out / "reference")
    return out


def fresh_pipeline(pipelines, tmp_path, upto):
    """A pipeline with the reference outputs of the stages before `upto`."""
    p = chaos.Pipeline(DINV, 2, pipelines / "inputs", tmp_path / "run", 1)
    shutil.copytree(pipelines / "reference" / "gen", p.workdir / "gen")
    if chaos.STAGES.index(upto) > chaos.STAGES.index("embed"):
        shutil.copyfile(pipelines / "reference" / "embed", p.workdir / "store.h5")
    if upto == "train":
        shutil.copyfile(pipelines / "reference" / "generate", p.workdir / "store.h5")
    if upto == "pretrain":
        shutil.rmtree(p.workdir / "gen")
    return p


# A progress line of any stage: "generate: 6/40 images (15.0%), ...".
PROGRESS_LINE = re.compile(r": \d+/\d+ \w+ \(")


def log_of(p, stage):
    return (p.workdir / f"{stage}.log").read_text()


@pytest.mark.parametrize("stage", chaos.STAGES)
def test_sigterm_of_all_ranks_stops_cleanly_and_the_rerun_finishes_identically(pipelines, tmp_path, stage):
    # The signal goes out at the first progress line: the ranks are then in the
    # stage's work loop (stop handlers installed), with most of the work ahead
    # however fast the machine. A fixed delay was too long on a fast one.
    p = fresh_pipeline(pipelines, tmp_path, stage)
    proc = p.start(stage)  # chaos.CONFIG: a progress line at every step
    deadline = time.monotonic() + 120
    while proc.poll() is None and not PROGRESS_LINE.search(log_of(p, stage)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"{stage} finished before the signal: make it longer\n" + log_of(p, stage)[-3000:]
    assert len(chaos.rank_pids(proc)) == 2
    for pid in chaos.rank_pids(proc):
        os.kill(pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, log_of(p, stage)[-3000:]
    assert "stopped by signal" in log_of(p, stage), log_of(p, stage)[-3000:]
    p.run(stage)
    chaos.snapshot(p.workdir, stage, tmp_path / "after")
    assert chaos.differences(pipelines / "reference", tmp_path / "after", stage) == []


def run_stage(p, stage):
    proc = p.start(stage)
    proc.wait(timeout=600)
    return proc.returncode, log_of(p, stage)


@pytest.mark.parametrize("stage", ["generate", "train"])
def test_a_store_deleted_between_stages_is_named(pipelines, tmp_path, stage):
    p = fresh_pipeline(pipelines, tmp_path, stage)
    (p.workdir / "store.h5").unlink()
    code, log = run_stage(p, stage)
    assert code != 0 and "store.h5" in log, log[-3000:]
    assert "unexpected:" not in log and "Segmentation" not in log, log[-3000:]


@pytest.mark.parametrize("stage", ["generate", "train"])
def test_a_store_truncated_between_stages_is_named_and_nothing_else_is_written(pipelines, tmp_path, stage):
    p = fresh_pipeline(pipelines, tmp_path, stage)
    store = p.workdir / "store.h5"
    size = store.stat().st_size
    with open(store, "r+b") as f:
        f.truncate(size // 2)
    code, log = run_stage(p, stage)
    assert code != 0 and "store.h5" in log, log[-3000:]
    assert "unexpected:" not in log and "Segmentation" not in log, log[-3000:]
    assert store.stat().st_size == size // 2, "a damaged store must not be changed"
    assert not (p.workdir / "results" / "chaos.h5").exists()


def nobody_can_run():
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.mark.skipif(not nobody_can_run(), reason="needs root to run a stage as another user (setpriv)")
def test_a_read_only_store_is_refused_by_generate_unchanged(pipelines, tmp_path):
    """Root ignores file modes, so generate runs as user nobody, for whom the
    store is read-only: it must refuse, naming the store, and leave it as it was."""
    work = Path("/tmp") / f"dinv-readonly-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        p = chaos.Pipeline(DINV, 1, pipelines / "inputs", work, 1)
        shutil.copytree(pipelines / "reference" / "gen", work / "gen")
        shutil.copyfile(pipelines / "reference" / "embed", work / "store.h5")
        os.chmod(work / "store.h5", 0o444)
        os.chmod(work, 0o755)
        for parent in list(pipelines.parents)[::-1] + [pipelines, pipelines / "inputs"]:
            os.chmod(parent, os.stat(parent).st_mode | 0o005)  # nobody must reach the inputs
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *p.command("generate")]
        r = subprocess.run(cmd, cwd=work, env=p.env, capture_output=True, text=True, timeout=300)
        log = r.stdout + r.stderr
        assert r.returncode != 0 and "store.h5" in log, log[-3000:]
        assert "unexpected:" not in log and "Segmentation" not in log, log[-3000:]
        assert (work / "store.h5").read_bytes() == (pipelines / "reference" / "embed").read_bytes()
    finally:
        shutil.rmtree(work, ignore_errors=True)
