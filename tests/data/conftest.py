import os
import subprocess

import numpy as np
import pytest


def dinv_run(*args, check=True):
    """Run the dinv binary; return the completed process (stdout/stderr as text)."""
    proc = subprocess.run([os.environ["DINV"], *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"dinv {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def export(tmp_path, *keys):
    """Decode a dataset with `dinv data export` and return (images, labels, info text)."""
    out = tmp_path / "export"
    dinv_run("data", "export", "--out", out, *keys)
    return np.load(out / "images.npy"), np.load(out / "labels.npy"), (out / "info.txt").read_text()


@pytest.fixture
def dinv():
    return dinv_run
