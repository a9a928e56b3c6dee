"""A small experiment for stage tests: the procedural shapes data and the
tiny Stable Diffusion preset, both made by the real `dinv` CLI."""
import os
import subprocess
from pathlib import Path

from conftest import DINV, mpirun_cmd, run

ENV = dict(os.environ, SOURCE_DATE_EPOCH="1700000000", OMP_NUM_THREADS="1")

CONFIG = """\
[run]
threads = 1
progress = lines
progress_interval = 5
[data]
format = cifar10
root = {root}/data
split = train
[model]
path = {root}/model
[store]
path = store.h5
[embed]
group_size = 10
batch_size = 5
steps = 60
resolution = 32
checkpoint_every = 4
num_images = 40
[generate]
num_samples = 2
sampling_resolution = 32
save_resolution = 16
chunk_size = 6
batch_size = 4
[sampler]
steps = 6
"""


def make_inputs(root: Path):
    """Data and model shared by every run of a test module."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "data" / "test_batch.bin").exists():
        r = run([DINV, "data", "shapes", "--out", root / "data", "--train", 100, "--test", 50], env=ENV)
        assert r.returncode == 0, r.stderr
    if not (root / "model" / "model_index.json").exists():
        r = run([DINV, "model", "init", "--preset", "tiny", root / "model"], env=ENV)
        assert r.returncode == 0, r.stderr
    (root / "stage.ini").write_text(CONFIG.format(root=root))
    return root / "stage.ini"


def dinv_stage(np_, stage, config, workdir, *overrides, timeout=600):
    workdir.mkdir(parents=True, exist_ok=True)
    return run(mpirun_cmd(np_, DINV, stage, "--config", config, *overrides), cwd=workdir, env=ENV, timeout=timeout)


def start_stage(np_, stage, config, workdir, *overrides):
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(mpirun_cmd(np_, DINV, stage, "--config", config, *overrides), cwd=workdir, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

