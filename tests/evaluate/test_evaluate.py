"""`dinv evaluate` and `train.save_model` through the real CLI: a classifier
kept by `dinv train` is loaded again and measures synthetic tags written
into a real store. Constructed cases: a tag that copies the real images
(FID 0, precision = recall = coverage = 1, every sample nearest its own
source), a brightened copy (larger FID), test images planted among noise
(found by the leak check); the same numbers on 1 and 2 ranks; a rerun skips;
bad input is refused naming what is wrong."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[2]
DINV = os.environ.get("DINV") or str(ROOT / "build" / "dinv")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
           SOURCE_DATE_EPOCH="1700000000")
TRAIN, TEST = 60, 40

CONFIG = """\
[run]
threads = 1
progress = off
[data]
format = cifar10
root = {root}/data
real_bs = 16
eval_bs = 40
augment = none
normalize = shapes
workers = 1
[model]
path = {root}/model
[store]
path = store.h5
[embed]
group_size = 10
batch_size = 5
steps = 1
resolution = 32
num_images = 20
[train]
model = resnet18
steps = 30
lr = 3e-3
optimizer = adamw
warmup_steps = 3
num_evals = 1
save_model = true
run_name = clf
[evaluate]
classifier = results/clf.model
tags = copy,bright,leak
batch_size = 16
"""


def dinv(*args, cwd, ranks=1, check=True):
    cmd = ["mpirun", "--oversubscribe", "-np", str(ranks), DINV, *map(str, args)]
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def cifar_images(*paths):
    raw = np.concatenate([np.fromfile(p, np.uint8).reshape(-1, 3073) for p in paths])
    return raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), raw[:, 0].astype(np.int64)


def add_tag(store, tag, images, labels, source):
    with h5py.File(store, "a") as f:
        g = f.create_group(f"samples/{tag}")
        g["images"] = images
        g["label"] = labels
        g["source"] = source
        g["done"] = np.ones(1, np.uint8)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    subprocess.run([DINV, "data", "shapes", "--out", root / "data", "--train", str(TRAIN), "--test", str(TEST)], check=True,
                   capture_output=True, env=ENV)
    subprocess.run([DINV, "model", "init", "--preset", "tiny", root / "model"], check=True, capture_output=True, env=ENV)
    (root / "e.ini").write_text(CONFIG.format(root=root))
    dinv("embed", "--config", "e.ini", cwd=root)
    dinv("train", "--config", "e.ini", cwd=root)
    train, labels = cifar_images(*[root / "data" / f"data_batch_{i}.bin" for i in range(1, 6)])
    assert len(train) == TRAIN
    test, test_labels = cifar_images(root / "data" / "test_batch.bin")
    store = root / "store.h5"
    add_tag(store, "copy", train, labels, np.arange(TRAIN))
    add_tag(store, "bright", np.clip(train.astype(int) + 90, 0, 255).astype(np.uint8), labels, np.arange(TRAIN))
    noise = np.random.default_rng(0).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    leak = np.concatenate([noise, test[:5]])
    add_tag(store, "leak", leak, np.concatenate([labels[:30], test_labels[:5]]), np.arange(35) % TRAIN)
    pristine = root / "pristine.h5"
    shutil.copy(store, pristine)
    dinv("evaluate", "--config", "e.ini", cwd=root)
    return root


def metrics(store, tag):
    with h5py.File(store) as f:
        g = f[f"metrics/{tag}"]
        return {k: g.attrs[k] for k in g.attrs} | {"per_class": g["per_class_agreement"][:]}


def test_the_kept_classifier_is_a_safetensors_file_and_its_configuration(experiment):
    folder = experiment / "results" / "clf.model"
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "dinv-classifier/1" and config["model"] == "resnet18"
    assert config["num_classes"] == 10 and len(config["class_names"]) == 10 and config["resolution"] == 32
    assert config["normalize"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    weights = load_file(folder / "model.safetensors")
    assert weights["fc.weight"].shape == (10, 512) and "bn1.running_mean" in weights
    with h5py.File(experiment / "results" / "clf.h5") as f:
        assert abs(config["final_accuracy"] - f.attrs["final_accuracy"]) < 1e-12


def test_a_copy_of_the_real_images_is_indistinguishable_from_them(experiment):
    m = metrics(experiment / "store.h5", "copy")
    assert abs(m["fid"]) < 1e-3
    assert m["precision"] == m["recall"] == m["coverage"] == 1.0
    assert m["own_source_share"] == 1.0 and m["mean_source_distance"] < 1e-4
    assert m["classifier_fingerprint"].startswith("resnet18:")


def test_a_shifted_copy_is_further_away(experiment):
    copy, bright = metrics(experiment / "store.h5", "copy"), metrics(experiment / "store.h5", "bright")
    assert bright["fid"] > 1.0 and bright["fid"] > 1000 * abs(copy["fid"])
    assert bright["mean_source_distance"] > 0.1


def test_planted_test_images_are_found_by_the_leak_check(experiment):
    # The 5 planted copies, and none of the 30 noise images (far from every test image).
    assert metrics(experiment / "store.h5", "leak")["leaked_test_images"] == 5
    # (The copy of the training images may flag a few test images: procedural shapes data
    # has near-duplicates across its splits, which is what the check is for.)


def test_label_agreement_is_the_classifiers_accuracy_on_the_labels(experiment):
    m = metrics(experiment / "store.h5", "copy")
    assert 0 <= m["label_agreement"] <= 1
    known = m["per_class"][m["per_class"] >= 0]
    assert len(known) == 10  # every class has samples in the copy
    # Shapes are balanced per class in the copy, so the overall agreement is near the per-class mean.
    assert abs(m["label_agreement"] - known.mean()) < 0.1


def test_two_ranks_give_the_same_metrics_and_a_rerun_skips(experiment, tmp_path):
    shutil.copy(experiment / "pristine.h5", tmp_path / "store.h5")
    shutil.copytree(experiment / "results", tmp_path / "results")
    (tmp_path / "e.ini").write_text((experiment / "e.ini").read_text())
    dinv("evaluate", "--config", "e.ini", cwd=tmp_path, ranks=2)
    for tag in ("copy", "bright", "leak"):
        one, two = metrics(experiment / "store.h5", tag), metrics(tmp_path / "store.h5", tag)
        for key in ("fid", "precision", "recall", "density", "coverage", "label_agreement", "leaked_test_images"):
            assert one[key] == pytest.approx(two[key], rel=1e-9, abs=1e-9), (tag, key)
    r = dinv("evaluate", "--config", "e.ini", cwd=tmp_path, ranks=2)
    assert r.stdout.count("measured before") == 3


@pytest.mark.parametrize("override, message", [
    ("--evaluate.classifier=nowhere", "nowhere/config.json is missing"),
    ("--evaluate.tags=absent", "absent"),
    ("--evaluate.k=100", "k = 100 needs more than k images"),
])
def test_bad_input_is_refused_naming_it(experiment, tmp_path, override, message):
    shutil.copy(experiment / "pristine.h5", tmp_path / "store.h5")
    shutil.copytree(experiment / "results", tmp_path / "results")
    (tmp_path / "e.ini").write_text((experiment / "e.ini").read_text())
    r = dinv("evaluate", "--config", "e.ini", override, cwd=tmp_path, check=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr[-2000:]
    assert "unexpected" not in r.stderr
