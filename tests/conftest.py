"""Shared pytest fixtures: where the built binaries are and how to run them."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("DINV_SOURCE_DIR", Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(SOURCE_DIR / "scripts"))
from mpi_session import kill_session, rank_pids  # noqa: E402,F401  (re-exported: tests that signal a job)
BUILD_DIR = Path(os.environ.get("DINV_BUILD_DIR", SOURCE_DIR / "build"))
DINV = os.environ.get("DINV", str(BUILD_DIR / "dinv"))
MPIEXEC = os.environ.get("MPIEXEC", "mpirun")


def mpirun_cmd(np, *args):
    return [MPIEXEC, "--oversubscribe", "-np", str(np), *map(str, args)]


def run(cmd, timeout=300, **kw):
    """Run a command, capture text output, never raise on exit status."""
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


def with_write_fault(env, **limits):
    """`env` in which writes to store.h5 fail as on a full disk (tests/tools/write_fault.c, LD_PRELOAD):
    limits after=, free=, log= become DINV_WRITE_FAULT_AFTER etc. A write made to fail leaves the
    store as a kill just before it would."""
    out = dict(env, LD_PRELOAD=os.environ["DINV_WRITE_FAULT"], DINV_WRITE_FAULT_PATH="/store.h5")
    out.update({f"DINV_WRITE_FAULT_{k.upper()}": str(v) for k, v in limits.items()})
    return out


def writes_of(log):
    """The (bytes before, size, offset) of every write a DINV_WRITE_FAULT_LOG recorded."""
    return [tuple(int(v) for v in line.split()) for line in log.read_text().splitlines()]


@pytest.fixture
def dinv():
    return DINV
