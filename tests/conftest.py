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


@pytest.fixture
def dinv():
    return DINV
