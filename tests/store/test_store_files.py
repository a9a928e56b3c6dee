"""Store guarantees on real files (DESIGN.md decisions 1 and 2):
- the same work written by 1, 2 or 4 ranks gives bitwise identical files;
- a writer killed with SIGKILL at random moments, then rerun, gives the same
  bytes as an uninterrupted run, and h5dump / h5py read it;
- one failing rank makes the whole job exit non-zero promptly."""
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np

from conftest import BUILD_DIR, MPIEXEC, kill_session, mpirun_cmd, run

WRITER = BUILD_DIR / "tests" / "dinv_store_writer"
UNITS, ROWS, COLS = 12, 16, 64
ENV = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")


def write_store(np_, directory, sleep_ms=0):
    directory.mkdir(parents=True, exist_ok=True)
    r = run(mpirun_cmd(np_, WRITER, "store.h5", UNITS, ROWS, COLS, sleep_ms), cwd=directory, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    return directory / "store.h5"


def test_rank_count_does_not_change_bytes(tmp_path):
    files = {n: write_store(n, tmp_path / f"np{n}").read_bytes() for n in (1, 2, 4)}
    assert files[1] == files[2], "2 ranks wrote different bytes than 1 rank"
    assert files[1] == files[4], "4 ranks wrote different bytes than 1 rank"
    with h5py.File(tmp_path / "np1" / "store.h5") as f:
        assert f.attrs["schema_version"] == 1
        assert f["/test/data"].shape == (UNITS * ROWS, COLS)
        assert f["/test/done"][:].all()
        unit = f["/test/unit"][:]
        assert (unit == np.repeat(np.arange(UNITS), ROWS)).all()


def test_sigkill_and_rerun_gives_identical_file(tmp_path):
    reference = write_store(2, tmp_path / "ref").read_bytes()
    rng = random.Random(1234)
    work = tmp_path / "killed"
    work.mkdir()
    kills = 0
    for attempt in range(12):
        proc = subprocess.Popen(mpirun_cmd(2, WRITER, "store.h5", UNITS, ROWS, COLS, 60), cwd=work, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(rng.uniform(0.3, 1.2))
        if proc.poll() is None:
            kill_session(proc)  # mpirun and every rank, no chance to clean up
            kills += 1
        proc.wait()
        if kills >= 6:
            break
    assert kills >= 5, f"only {kills} runs could be killed mid-way"
    r = run(mpirun_cmd(2, WRITER, "store.h5", UNITS, ROWS, COLS, 0), cwd=work, env=ENV)
    assert r.returncode == 0, r.stderr
    assert (work / "store.h5").read_bytes() == reference
    if shutil.which("h5dump"):
        d = run(["h5dump", "-H", work / "store.h5"])
        assert d.returncode == 0, d.stderr
        assert 'DATASET "data"' in d.stdout


def test_failing_rank_aborts_job_promptly(tmp_path):
    # A unit count that no rank can allocate: rank-local failure path through MPI_Abort.
    start = time.monotonic()
    (tmp_path / "junk.h5").write_text("not an hdf5 file")
    r = run(mpirun_cmd(4, WRITER, "junk.h5", UNITS, ROWS, COLS), cwd=tmp_path, timeout=120)
    assert r.returncode != 0
    assert "not a readable dinv store" in r.stderr
    assert time.monotonic() - start < 60


def test_one_failing_rank_aborts_the_others_instead_of_hanging(tmp_path):
    # Rank 1 fails while ranks 0, 2, 3 wait for it in a collective write.
    start = time.monotonic()
    env = dict(ENV, DINV_TEST_FAIL_RANK="1")
    r = run(mpirun_cmd(4, WRITER, "store.h5", UNITS, ROWS, COLS, 50), cwd=tmp_path, env=env, timeout=120)
    assert r.returncode != 0
    assert "error on rank 1: injected failure on rank 1" in r.stderr
    assert time.monotonic() - start < 60


def test_a_semaphore_left_held_by_a_killed_rank_does_not_block_later_opens(tmp_path):
    # Open MPI's "sm" shared-file-pointer component takes a named semaphore,
    # keyed on the file's base name, inside every MPI_File_open. Leave it held,
    # as a rank killed in that window does: dinv must still open the store.
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.sem_open.restype = ctypes.c_void_p
    libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_uint]
    name = f"held-{os.getpid()}.h5"
    semaphores = [f"/OMPIO_{name}.creating".encode(), f"/OMPIO_{name}".encode()]
    o_creat, initial_value_held = 0o100, 0
    try:
        for sem in semaphores:
            assert libc.sem_open(sem, o_creat, 0o600, initial_value_held), f"sem_open {sem}: errno {ctypes.get_errno()}"
        env = {k: v for k, v in ENV.items() if k != "OMPI_MCA_sharedfp"}
        r = run([WRITER, name, 2, ROWS, COLS], cwd=tmp_path, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        with h5py.File(tmp_path / name) as f:
            assert f["/test/done"][:].all()
    finally:
        for sem in semaphores:
            libc.sem_unlink(sem)
