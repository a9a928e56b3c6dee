"""Every configuration shipped in configs/ and jobs/ resolves against dinv's
schema (a renamed key or a bad value would stop a user's job at exit code 2),
and the sample-complexity sweep on the CIFAR-10 configuration expands into its
3 x 3 x 3 runs."""
import pathlib
import re

import pytest

from conftest import DINV, SOURCE_DIR, run

SHIPPED = sorted(p.relative_to(SOURCE_DIR) for d in ("configs", "jobs") for p in (SOURCE_DIR / d).glob("*.ini"))


def test_there_are_configurations_for_the_method_datasets():
    names = {p.name for p in SHIPPED}
    assert {"demo.ini", "cifar10.ini", "cifar100.ini", "stl10.ini", "medmnist.ini"} <= names, names


@pytest.mark.parametrize("config", SHIPPED, ids=str)
def test_shipped_configuration_resolves(config, tmp_path):
    r = run([DINV, "info", "--config", pathlib.Path(SOURCE_DIR, config), "--run.log_level=debug"], cwd=tmp_path)
    # The configuration is resolved before the store is opened: a store that
    # does not exist yet (exit 1) is fine here, a configuration error (2) is not.
    assert r.returncode == 0 or (r.returncode == 1 and "does not exist" in r.stderr), (r.returncode, r.stderr)
    assert "[run]" in r.stdout, r.stdout


def test_sample_complexity_sweep_expands_on_cifar10(tmp_path):
    r = run([DINV, "sweep", "--config", pathlib.Path(SOURCE_DIR, "configs/cifar10.ini"),
             "--config", pathlib.Path(SOURCE_DIR, "jobs/sweep_sample_complexity.ini"), "--sweep.mode=slurm",
             f"--sweep.template={SOURCE_DIR}/slurm/sweep.sbatch.in"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"wrote results/sample_complexity\.sbatch \(27 array tasks\)", r.stdout + r.stderr)
    base = (tmp_path / "results" / "sample_complexity.ini").read_text()
    assert "tags = method" in base and "experiments/cifar10/store.h5" in base
