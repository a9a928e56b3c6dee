"""Helpers of the hostile-input tests: run dinv on a malformed input made by
the test itself and check that it is refused cleanly (an exit code, not a
signal) with a message naming the file and what is wrong."""
import os

from conftest import DINV, run

ENV = dict(os.environ, OMP_NUM_THREADS="1", SOURCE_DATE_EPOCH="1700000000")


def dinv(*args, timeout=300, cwd=None):
    return run([DINV, *args], timeout=timeout, env=ENV, cwd=cwd)


def refused(r, code, *needles):
    """Exit `code` (never a signal: returncode < 0 is a crash) and every needle in stderr."""
    assert r.returncode >= 0, f"crashed with signal {-r.returncode}:\n{r.stderr[-3000:]}"
    assert r.returncode == code, f"exit {r.returncode}, expected {code}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    for n in needles:
        assert n in r.stderr, f"{n!r} not in:\n{r.stderr[-3000:]}"
    assert "unexpected:" not in r.stderr, r.stderr[-3000:]
    return r.stderr
