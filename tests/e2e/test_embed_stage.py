"""`dinv embed` through the real CLI on the tiny model: same bytes on 1, 2 and
4 ranks, SIGKILL at random moments then rerun gives the uninterrupted bytes,
SIGTERM checkpoints and exits 0, and bad inputs give clear errors."""
import os
import random
import signal
import time

import h5py
import numpy as np
import pytest

from conftest import DINV, kill_session, mpirun_cmd, rank_pids, run, with_write_fault, writes_of
from stage_fixture import ENV, dinv_stage, make_inputs, start_stage


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("embed_inputs"))


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory):
    work = tmp_path_factory.mktemp("embed_ref")
    r = dinv_stage(1, "embed", config, work)
    assert r.returncode == 0, r.stderr
    return work / "store.h5"


def test_layout_is_documented_one(reference):
    with h5py.File(reference) as f:
        assert f.attrs["schema_version"] == 1
        assert "[embed]" in f.attrs["config"]
        assert f["/embeddings/data"].shape == (40, 5, 32)
        assert f["/embeddings/data"].dtype == np.float32
        assert f["/embeddings/loss"].shape == (40,)
        assert np.isfinite(f["/embeddings/loss"][:]).all()
        assert f["/embeddings/done"][:].all()
        assert (f["/source/index"][:] == np.arange(40)).all()
        labels = f["/source/label"][:]
        assert labels.min() >= 0 and labels.max() < 10
        assert len(f["/source"].attrs["class_names"]) == 10
        assert f["/embeddings"].attrs["model_fingerprint"].startswith("sha256:")
        assert f["/embeddings/posterior_mean"].shape == (40, 4, 16, 16)


@pytest.mark.parametrize("ranks", [2, 4])
def test_rank_count_gives_identical_store(config, reference, tmp_path, ranks):
    r = dinv_stage(ranks, "embed", config, tmp_path)
    assert r.returncode == 0, r.stderr
    with h5py.File(reference) as a, h5py.File(tmp_path / "store.h5") as b:
        assert a["/embeddings/data"][:].tobytes() == b["/embeddings/data"][:].tobytes()
        assert a["/embeddings/loss"][:].tobytes() == b["/embeddings/loss"][:].tobytes()
    assert (tmp_path / "store.h5").read_bytes() == reference.read_bytes()


def layout_unfinished(store):
    """The store exists and its embedding ledger is not yet linked: a run was stopped while creating its layout."""
    if not store.exists():
        return False
    try:
        with h5py.File(store, "r") as f:
            return "embeddings/done" not in f
    except OSError:
        return True


def contents(store):
    """Every group, dataset (bytes) and attribute (bytes, or text for strings) of a store, by path."""
    def value(v):
        a = np.asarray(v)
        return repr(a.tolist()) if a.dtype.kind == "O" else a.tobytes()

    out = {}
    with h5py.File(store, "r") as f:
        def visit(name, obj):
            attrs = {k: value(v) for k, v in obj.attrs.items()}
            out[name] = (obj[()].tobytes() if isinstance(obj, h5py.Dataset) else None, attrs)
        f.visititems(visit)
        out["/"] = (None, {k: value(v) for k, v in f.attrs.items()})
    return out


def test_sigkill_at_random_points_then_rerun_is_identical(config, reference, tmp_path):
    # Kill times scale with how long an uninterrupted run takes here, so that
    # every run is killed mid-way on a fast machine as on a loaded one.
    start = time.monotonic()
    r = dinv_stage(2, "embed", config, tmp_path / "timing")
    assert r.returncode == 0, r.stderr
    full = time.monotonic() - start
    rng = random.Random(5)
    kills = 0
    in_creation = False  # a kill landed while the layout was being created
    for _ in range(15):
        proc = start_stage(2, "embed", config, tmp_path)
        time.sleep(rng.uniform(0.08, 0.18) * full)
        if proc.poll() is not None:
            proc.communicate()
            break  # finished before the kill: the rest of the test still holds
        kill_session(proc)
        kills += 1
        in_creation |= layout_unfinished(tmp_path / "store.h5")
        if kills >= 5:
            break
    assert kills >= 5, f"only {kills} runs were killed mid-way"
    r = dinv_stage(2, "embed", config, tmp_path)
    assert r.returncode == 0, r.stderr
    # Killed while computing, the rerun gives the same file. Killed while the
    # layout was being created, the same data: HDF5 may have placed the
    # rerun's layout after space the killed run left unlinked
    # (docs/architecture.md, "Crash-safe store").
    if in_creation:
        assert contents(tmp_path / "store.h5") == contents(reference)
    else:
        assert (tmp_path / "store.h5").read_bytes() == reference.read_bytes()
    assert not list((tmp_path / "store.h5.ckpt").glob("*.safetensors")), "finished units keep no checkpoints"


def test_sigterm_checkpoints_and_exits_zero(config, reference, tmp_path):
    proc = start_stage(2, "embed", config, tmp_path)
    # Signal once the first unit has checkpointed (every 4 of its 60 steps):
    # mid-run on any machine, where a fixed delay let a fast one finish first.
    deadline = time.monotonic() + 300
    while not list((tmp_path / "store.h5.ckpt").glob("*.safetensors")) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    pids = rank_pids(proc)
    assert pids and proc.poll() is None, "the run finished before its first checkpoint could be interrupted"
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by signal" in out + err
    assert list((tmp_path / "store.h5.ckpt").glob("*.safetensors")), "no checkpoint written on SIGTERM"
    r = dinv_stage(2, "embed", config, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "resumes at step" in r.stdout + r.stderr
    assert (tmp_path / "store.h5").read_bytes() == reference.read_bytes()


def test_store_from_other_settings_is_refused(config, reference, tmp_path):
    (tmp_path / "store.h5").write_bytes(reference.read_bytes())
    r = dinv_stage(1, "embed", config, tmp_path, "--embed.lr=0.5")
    assert r.returncode == 1
    assert "/embeddings was written with other settings: embed.lr is '0.029999999999999999' there, '0.5' in this " \
        "run. Use a new store" in r.stderr


def test_a_store_begun_in_another_precision_is_refused(config, reference, tmp_path):
    # embed.dtype is recorded as /embeddings' attribute `dtype` (not in its
    # settings text, for older stores, which are still accepted).
    with h5py.File(reference) as f:
        assert f["/embeddings"].attrs["dtype"] == "fp32"
    for recorded, code in (("fp16", 1), (None, 0)):
        (tmp_path / "store.h5").write_bytes(reference.read_bytes())
        with h5py.File(tmp_path / "store.h5", "r+") as f:
            del f["/embeddings"].attrs["dtype"]
            if recorded:
                f["/embeddings"].attrs["dtype"] = recorded
        r = dinv_stage(1, "embed", config, tmp_path)
        assert r.returncode == code, r.stderr
        if recorded:
            assert "/embeddings: dtype is 'fp16' but this run has 'fp32'. Resume in the precision" in r.stderr


@pytest.mark.parametrize("override,message", [
    ("--embed.num_tokens=0", "embed.num_tokens = '0' is out of range"),
    ("--embed.resolution=33", "embed.resolution = 33 is not a multiple of the VAE's downsampling factor 2"),
    ("--embed.num_images=1000", "embed.num_images = 1000 but"),
    ("--embed.batch_size=50", "embed.batch_size = '50' is larger than embed.group_size"),
])
def test_bad_settings(config, tmp_path, override, message):
    r = dinv_stage(1, "embed", config, tmp_path, override)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr


def test_missing_model_folder(config, tmp_path):
    r = dinv_stage(1, "embed", config, tmp_path, f"--model.path={tmp_path}/nope")
    assert r.returncode == 1
    assert "nope" in r.stderr


def test_a_run_stopped_at_each_write_that_creates_the_layout_resumes(config, reference, tmp_path):
    """Every write to the store up to the first unit's rows (the new file, /source and
    /embeddings with their metadata flushes) fails in turn, as a kill there would leave
    the store; the rerun always completes it to the uninterrupted run's embeddings. (The
    layout is built unlinked and linked once on disk; before, a flush cut short left an
    /embeddings that HDF5 could neither read nor move aside, and on one rank the failed
    run's close cut the file short.)"""
    log = tmp_path / "writes.log"
    r = run(mpirun_cmd(1, DINV, "embed", "--config", config), cwd=tmp_path, env=with_write_fault(ENV, log=log))
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "store.h5") as f:
        first_rows = f["/embeddings/data"].id.get_offset()
    writes = writes_of(log)
    stop = [i for i, (_, _, at) in enumerate(writes) if at == first_rows][1]  # [0] fills it at creation
    with h5py.File(reference) as f:
        expected = {k: f[k][()] for k in ("/source/index", "/source/label", "/embeddings/data", "/embeddings/done")}
    for i in range(stop + 1):
        work = tmp_path / str(i)
        work.mkdir()
        r = run(mpirun_cmd(1, DINV, "embed", "--config", config), cwd=work, env=with_write_fault(ENV, after=writes[i][0]))
        assert r.returncode == 1 and "No space left on device" in r.stderr, (i, r.returncode, r.stderr[-2000:])
        again = dinv_stage(1, "embed", config, work)
        assert again.returncode == 0, (i, writes[i], again.stderr[-3000:])
        with h5py.File(work / "store.h5") as f:
            for k, v in expected.items():
                assert np.array_equal(f[k][()], v), (i, writes[i], k)
