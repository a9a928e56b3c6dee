"""`dinv generate` through the real CLI on the tiny model: the documented
layout, identical /samples/<tag> bytes on 1, 2 and 4 ranks and for two batch
sizes, SIGKILL then rerun identical, equality with `dinv model sample` when
the perturbation is off, and clear errors for bad input."""
import random
import shutil
import time

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import DINV, run
from stage_fixture import ENV, dinv_stage, kill_group, make_inputs, start_stage


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("generate_inputs"))


@pytest.fixture(scope="module")
def embedded(config, tmp_path_factory):
    """A store with finished embeddings (made once)."""
    work = tmp_path_factory.mktemp("embedded")
    r = dinv_stage(2, "embed", config, work, "--embed.steps=10")
    assert r.returncode == 0, r.stderr
    return work / "store.h5"


def fresh(embedded, tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(embedded, tmp_path / "store.h5")
    return tmp_path


def samples(store):
    with h5py.File(store) as f:
        (tag,) = list(f["/samples"])
        g = f["/samples"][tag]
        return tag, {k: g[k][:] for k in ("images", "label", "source", "partner", "seed", "done")}, dict(g.attrs)


@pytest.fixture(scope="module")
def reference(config, embedded, tmp_path_factory):
    work = fresh(embedded, tmp_path_factory.mktemp("gen_ref"))
    r = dinv_stage(1, "generate", config, work, "--embed.steps=10")
    assert r.returncode == 0, r.stderr
    return work / "store.h5"


def test_layout(reference):
    tag, s, attrs = samples(reference)
    assert s["images"].shape == (80, 16, 16, 3) and s["images"].dtype == np.uint8
    assert s["done"].all()
    assert (s["source"] == np.repeat(np.arange(40), 2)).all()
    with h5py.File(reference) as f:
        labels = f["/source/label"][:]
    assert (s["label"] == labels[s["source"]]).all()
    # partners come from the source's group of 10
    assert ((s["partner"] // 10) == (s["source"] // 10)).all()
    assert attrs["sampler"] == "pndm" and attrs["steps"] == 6 and attrs["guidance"] == 2.0
    assert s["images"].std() > 5, "images are flat"


@pytest.mark.parametrize("ranks,batch", [(2, 4), (4, 4), (1, 5)])
def test_rank_count_and_batch_size_give_identical_samples(config, embedded, reference, tmp_path, ranks, batch):
    work = fresh(embedded, tmp_path)
    r = dinv_stage(ranks, "generate", config, work, "--embed.steps=10", f"--generate.batch_size={batch}")
    assert r.returncode == 0, r.stderr
    _, a, _ = samples(reference)
    _, b, _ = samples(work / "store.h5")
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def test_sigkill_then_rerun_is_identical(config, embedded, tmp_path):
    # More sampling steps and small chunks: a run long enough to be killed
    # mid-way several times, whatever the machine's speed.
    slow = ["--embed.steps=10", "--sampler.steps=30", "--generate.chunk_size=2"]
    ref = fresh(embedded, tmp_path / "ref")
    start = time.monotonic()
    r = dinv_stage(2, "generate", config, ref, *slow)
    assert r.returncode == 0, r.stderr
    full = time.monotonic() - start
    work = fresh(embedded, tmp_path / "killed")
    rng = random.Random(11)
    kills = 0
    for _ in range(12):
        proc = start_stage(2, "generate", config, work, *slow)
        time.sleep(rng.uniform(0.08, 0.18) * full)
        if proc.poll() is not None:
            proc.communicate()
            break
        kill_group(proc)
        kills += 1
        if kills >= 5:
            break
    assert kills >= 5, f"only {kills} runs were killed mid-way"
    r = dinv_stage(2, "generate", config, work, *slow)
    assert r.returncode == 0, r.stderr
    _, a, _ = samples(ref / "store.h5")
    _, b, _ = samples(work / "store.h5")
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def test_without_perturbation_equals_model_sample(config, embedded, tmp_path):
    work = fresh(embedded, tmp_path)
    r = dinv_stage(1, "generate", config, work, "--embed.steps=10", "--generate.num_samples=1",
                   "--generate.interpolation=0", "--generate.emb_noise=0", "--generate.save_resolution=32",
                   "--run.seed=3")
    assert r.returncode == 0, r.stderr
    _, s, _ = samples(work / "store.h5")
    with h5py.File(work / "store.h5") as f:
        emb = torch.from_numpy(f["/embeddings/data"][:10])
    save_file({"cond": emb.contiguous()}, str(tmp_path / "cond.safetensors"))
    save_file({"uncond": emb.mean(0, keepdim=True).contiguous()}, str(tmp_path / "uncond.safetensors"))
    model = config.parent / "model"
    r = run([DINV, "model", "sample", model, "--cond", tmp_path / "cond.safetensors", "--uncond",
             tmp_path / "uncond.safetensors", "--steps", 6, "--guidance", 2, "--seed", 3, "--height", 32,
             "--width", 32, "--output", tmp_path / "out.safetensors"], env=ENV)
    assert r.returncode == 0, r.stderr
    images = load_file(str(tmp_path / "out.safetensors"))["images"].numpy()
    assert images.shape == (10, 32, 32, 3)
    assert (images == s["images"][:10]).all()


def test_same_tag_with_other_settings_is_refused(config, reference, tmp_path):
    shutil.copy(reference, tmp_path / "store.h5")
    tag, _, _ = samples(reference)
    r = dinv_stage(1, "generate", config, tmp_path, "--embed.steps=10", f"--generate.tag={tag}",
                   "--sampler.guidance=3")
    assert r.returncode == 1
    assert "written with other settings" in r.stderr


@pytest.mark.parametrize("override,message", [
    ("--generate.num_samples=0", "generate.num_samples = '0' is out of range"),
    ("--generate.emb_noise=-1", "generate.emb_noise = '-1' is out of range"),
    ("--generate.interpolation=1.5", "generate.interpolation = '1.5' is out of range"),
])
def test_bad_settings(config, embedded, tmp_path, override, message):
    work = fresh(embedded, tmp_path)
    r = dinv_stage(1, "generate", config, work, override)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr


def test_store_without_embeddings(config, tmp_path):
    r = dinv_stage(1, "generate", config, tmp_path)
    assert r.returncode == 1
    assert "does not exist" in r.stderr
