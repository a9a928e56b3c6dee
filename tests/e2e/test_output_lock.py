"""One writer per output: every stage that writes (pretrain, embed, generate,
retrieve, evaluate, train) refuses to start while another live process holds
its output's lock, names the holder, and leaves the output as it was; a lock
left by a killed run does not block the rerun; a finished run removes its
lock file; two real runs on one store: the second is refused and the first
finishes with the uninterrupted bytes."""
import fcntl
import os
import time

import pytest

from conftest import DINV, kill_session, run
from stage_fixture import ENV, dinv_stage, make_inputs, start_stage

HOLDER = "dinv generate, pid 4242 on node017, since 2026-11-29T21:40:00Z"


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock_inputs")
    cfg = make_inputs(root)
    r = run([DINV, "data", "shapes", "--captioned", "--out", root / "corpus", "--count", 24, "--resolution", 16],
            env=ENV)
    assert r.returncode == 0, r.stderr
    return cfg


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory):
    work = tmp_path_factory.mktemp("lock_ref")
    r = dinv_stage(1, "embed", config, work)
    assert r.returncode == 0, r.stderr
    return work / "store.h5"


class HeldLock:
    """The lock of `output` held by this (live) test process, as a running dinv would hold it."""

    def __init__(self, output):
        self.path = f"{output}.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self.fd, (HOLDER + "\n").encode())

    def release(self):
        os.close(self.fd)


def snapshot(folder):
    """Every file under `folder` with its bytes, the lock files aside."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


# Each stage, the output it locks (relative to the work folder) and the
# arguments that get it as far as taking the lock.
STAGES = {
    "embed": ("store.h5", []),
    "generate": ("store.h5", []),
    "retrieve": ("store.h5", ["--retrieve.model={root}/model", "--retrieve.pool.format=cifar10",
                              "--retrieve.pool.root={root}/data"]),
    "evaluate": ("store.h5", ["--evaluate.classifier=nope.model", "--evaluate.tags=method"]),
    "pretrain": ("gen", ["--data.format=captioned", "--data.root={root}/corpus", "--pretrain.output=gen",
                         "--pretrain.batch_size=4", "--pretrain.steps=2", "--pretrain.vae_steps=2"]),
    "train": ("results/locked.h5", ["--train.run_name=locked", "--train.results_dir=results", "--train.steps=2"]),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_held_lock_refuses_the_stage_by_name(config, reference, tmp_path, stage):
    output, args = STAGES[stage]
    root = config.parent
    (tmp_path / "store.h5").write_bytes(reference.read_bytes())
    (tmp_path / "results").mkdir()
    before = snapshot(tmp_path)
    lock = HeldLock(tmp_path / output)
    try:
        r = dinv_stage(2, stage, config, tmp_path, *(a.format(root=root) for a in args))
    finally:
        lock.release()
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert f"{output} is being written by another run ({HOLDER}; lock file {output}.lock)" in r.stderr, r.stderr
    assert "wait for that run to end, or stop it and rerun this command" in r.stderr
    assert snapshot(tmp_path) == before, "a refused run changed the output"


def test_the_lock_of_a_dead_run_does_not_block(config, reference, tmp_path):
    # What kill -9 leaves behind: the file, with its holder's name, and no lock.
    (tmp_path / "store.h5.lock").write_text("dinv embed, pid 999999 on gone, since 2026-01-01T00:00:00Z\n")
    r = dinv_stage(2, "embed", config, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "store.h5").read_bytes() == reference.read_bytes()
    assert not (tmp_path / "store.h5.lock").exists(), "a finished run leaves its lock file behind"


def test_a_second_run_beside_the_first_is_refused(config, reference, tmp_path):
    first = start_stage(2, "embed", config, tmp_path)
    try:
        # Rank 0 takes the lock before anything else that writes: once the
        # store exists, the lock is held.
        deadline = time.monotonic() + 120
        while not (tmp_path / "store.h5").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        second = dinv_stage(1, "embed", config, tmp_path)
        running = first.poll() is None
    except BaseException:
        kill_session(first)
        raise
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    if not running:
        pytest.skip("the first run finished before the second started (a machine much faster than this test assumes)")
    assert second.returncode == 1, second.stderr
    assert "store.h5 is being written by another run (dinv embed, pid " in second.stderr, second.stderr
    assert (tmp_path / "store.h5").read_bytes() == reference.read_bytes()
