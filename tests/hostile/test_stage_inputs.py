"""Hostile stores and settings at the stages (issue 19), on the tiny model and
the procedural shapes data of tests/e2e: a last embedding group too small for
generate's partners (refused before embed works), a store whose group_size is
0 or whose datasets have the wrong type, damaged embed checkpoints, and the
message of a unit whose loss stops being finite."""
import re
import shutil
import struct
import sys
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from stage_fixture import dinv_stage, make_inputs  # noqa: E402

from hostile_util import refused  # noqa: E402

FAST = ("--embed.steps=2", "--embed.num_images=20", "--sampler.steps=1")


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("hostile_stage_inputs"))


@pytest.fixture(scope="module")
def embedded(config, tmp_path_factory):
    work = tmp_path_factory.mktemp("embedded")
    r = dinv_stage(1, "embed", config, work, *FAST)
    assert r.returncode == 0, r.stderr
    return work / "store.h5"


def fresh(embedded, tmp_path):
    shutil.copy(embedded, tmp_path / "store.h5")
    return tmp_path / "store.h5"


def test_small_last_group_is_refused_before_embedding(config, tmp_path):
    # 32 images in groups of 10: the last group holds 2 images, and 2 partners
    # per image need groups of at least 3.
    r = dinv_stage(1, "embed", config, tmp_path, "--embed.num_images=32", "--embed.steps=2")
    refused(r, 2, "images 30..31", "holds only 2 images", "embed.num_images = 30", "generate.num_samples")
    assert not (tmp_path / "store.h5").exists(), "embed did work before refusing"
    # A last group of 3 is enough for 2 partners.
    r = dinv_stage(1, "embed", config, tmp_path, "--embed.num_images=33", "--embed.steps=1")
    assert r.returncode == 0, r.stderr


def test_without_interpolation_no_partners_are_needed(config, tmp_path):
    # The same short last group (2 images, 2 samples each) is fine when no
    # sample moves towards a partner: generate.interpolation = 0.
    flat = ("--generate.interpolation=0", "--sampler.steps=1")
    r = dinv_stage(1, "embed", config, tmp_path, "--embed.num_images=32", "--embed.steps=1", *flat)
    assert r.returncode == 0, r.stderr
    r = dinv_stage(1, "generate", config, tmp_path, *flat)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "store.h5") as f:
        (tag,) = f["samples"].keys()
        g = f["samples"][tag]
        assert (g["partner"][:] == -1).all()
        assert sorted(g["source"][:]) == sorted(list(range(32)) * 2)
    # Interpolating again needs the partners, and generate says so.
    refused(dinv_stage(1, "generate", config, tmp_path, "--generate.interpolation=0.5", "--generate.tag=mixed",
                       "--sampler.steps=1"), 2, "holds only 2 images", "generate.num_samples")


def test_generate_with_a_zero_group_size_attribute(config, embedded, tmp_path):
    store = fresh(embedded, tmp_path)
    with h5py.File(store, "a") as f:
        f["/embeddings"].attrs["group_size"] = np.int64(0)
    refused(dinv_stage(1, "generate", config, tmp_path, *FAST), 1, "store.h5", "group_size is 0")


def test_generate_with_a_group_size_attribute_array(config, embedded, tmp_path):
    store = fresh(embedded, tmp_path)
    with h5py.File(store, "a") as f:
        f["/embeddings"].attrs["group_size"] = np.full(512, 10, np.int64)
    refused(dinv_stage(1, "generate", config, tmp_path, *FAST), 1, "store.h5", "group_size", "512 values")


@pytest.mark.parametrize("dataset,value,needle", [
    ("/source/label", lambda n: np.zeros(n, np.int32), "/source/label' is Int"),
    ("/source/label", lambda n: np.zeros((n, 2), np.int64), "/source/label' is Long [20, 2]"),
    ("/source/label", lambda n: np.full(n, 99, np.int64), "/source/label[0] is 99"),
    ("/embeddings/data", lambda n: np.zeros((n, 5), np.float32), "/embeddings/data' is Float [20, 5]"),
    ("/embeddings/done", lambda n: np.uint8(1), "/embeddings/done' is Byte []"),
])
def test_generate_with_datasets_of_the_wrong_type_or_shape(config, embedded, tmp_path, dataset, value, needle):
    store = fresh(embedded, tmp_path)
    with h5py.File(store, "a") as f:
        del f[dataset]
        f[dataset] = value(20)
    refused(dinv_stage(1, "generate", config, tmp_path, *FAST), 1, "store.h5", needle)


def write_safetensors(path, tensors):
    """A safetensors file by hand: {name: numpy array}."""
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8",
                 np.dtype(np.float64): "F64"}[a.dtype]
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_damaged_checkpoint_is_refused_naming_file_and_tensor(config, tmp_path):
    ckpt = tmp_path / "store.h5.ckpt"
    ckpt.mkdir()
    unit = ckpt / "embed_unit_000000.safetensors"
    write_safetensors(unit, {"table.0": np.zeros((3, 3), np.float32)})
    refused(dinv_stage(1, "embed", config, tmp_path, *FAST), 1, "embed_unit_000000.safetensors", "'table.0'",
            "expected Float [10, 5, 32]")
    # Right shapes, wrong dtype of the step, a step beyond embed.steps, a bogus generator state.
    good = {f"{k}.0": np.zeros((10, 5, 32), np.float32) for k in ("table", "exp_avg", "exp_avg_sq")}
    good.update({"step": np.array([1], np.int64), "generator": np.zeros(5056, np.uint8),
                 "last_loss": np.zeros(10, np.float32)})
    for change, needle in [({"step": np.array([1.0])}, "'step' is Double"),
                           ({"step": np.array([10 ** 9], np.int64)}, "'step' is 1000000000"),
                           ({"generator": np.zeros(7, np.uint8)}, "'generator'")]:
        write_safetensors(unit, {**good, **change})
        refused(dinv_stage(1, "embed", config, tmp_path, *FAST), 1, "embed_unit_000000.safetensors", needle)


@pytest.mark.parametrize("checkpoint_every", [1, 1000])
def test_nan_loss_message_names_only_a_checkpoint_that_exists(config, tmp_path, checkpoint_every):
    r = dinv_stage(1, "embed", config, tmp_path, "--embed.steps=4", "--embed.num_images=10", "--embed.lr=1e37",
                   f"--embed.checkpoint_every={checkpoint_every}")
    err = refused(r, 1, "loss became")
    kept = re.search(r"is kept in (\S+)", err)
    if kept:
        assert (tmp_path / kept.group(1)).exists() or Path(kept.group(1)).exists(), err
    else:
        assert "no checkpoint of it was written" in err, err
        assert not list((tmp_path / "store.h5.ckpt").glob("*.safetensors")) if (tmp_path / "store.h5.ckpt").exists() else True
    assert (checkpoint_every == 1) == bool(kept), err
