"""`dinv generate` through the real CLI on the tiny model: the documented
layout, identical /samples/<tag> bytes on 1, 2 and 4 ranks for the same batch
settings and within 1 of 255 for another batch size (CPU kernels may round by
batch shape: docs/architecture.md), SIGKILL then rerun identical, agreement
with `dinv model sample` when the perturbation is off, the --preview PNG, a
full disk while writing, and clear errors for bad input."""
import os
import random
import shutil
import time

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import DINV, kill_session, mpirun_cmd, run, with_write_fault, writes_of
from stage_fixture import ENV, dinv_stage, make_inputs, start_stage


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


def assert_within_one(a, b):
    """The promise across batch shapes: every value within 1, nearly all equal."""
    assert a.shape == b.shape
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.max() <= 1, f"differ by up to {diff.max()}"
    assert (diff > 0).mean() < 0.01, f"{(diff > 0).mean():.2%} of values differ"


@pytest.mark.parametrize("ranks", [2, 4])
def test_rank_count_gives_identical_samples(config, embedded, reference, tmp_path, ranks):
    work = fresh(embedded, tmp_path)
    r = dinv_stage(ranks, "generate", config, work, "--embed.steps=10")
    assert r.returncode == 0, r.stderr
    _, a, _ = samples(reference)
    _, b, _ = samples(work / "store.h5")
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def test_another_batch_size_gives_the_same_samples_within_one(config, embedded, reference, tmp_path):
    # Batch size 5 against the reference's 4: the same samples (sources,
    # partners, seeds), images within 1 of 255 per value.
    work = fresh(embedded, tmp_path)
    r = dinv_stage(1, "generate", config, work, "--embed.steps=10", "--generate.batch_size=5")
    assert r.returncode == 0, r.stderr
    _, a, _ = samples(reference)
    _, b, _ = samples(work / "store.h5")
    for k in a:
        if k != "images":
            assert a[k].tobytes() == b[k].tobytes(), k
    assert_within_one(a["images"], b["images"])


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
        kill_session(proc)
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
    # One batch of 10 against generate's batches of 4: within 1 of 255.
    assert_within_one(images, s["images"][:10])


def test_rerun_with_another_chunk_size_resumes_with_the_tags_own(config, reference, tmp_path):
    # The ledger's chunks are those of the chunk size the tag was created with
    # (6 here): unmark the last chunk, wipe its rows, rerun with chunk_size 7.
    work = fresh(reference, tmp_path)
    with h5py.File(work / "store.h5", "r+") as f:
        (tag,) = list(f["/samples"])
        g = f["/samples"][tag]
        assert g.attrs["chunk_size"] == 6
        g["done"][-1] = 0
        g["images"][78:80] = 0
    r = dinv_stage(2, "generate", config, work, "--embed.steps=10", "--generate.chunk_size=7")
    assert r.returncode == 0, r.stderr
    assert "created with chunk_size 6" in r.stdout + r.stderr
    _, a, _ = samples(reference)
    _, b, _ = samples(work / "store.h5")
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def test_same_tag_with_other_settings_is_refused(config, reference, tmp_path):
    shutil.copy(reference, tmp_path / "store.h5")
    tag, _, _ = samples(reference)
    r = dinv_stage(1, "generate", config, tmp_path, "--embed.steps=10", f"--generate.tag={tag}",
                   "--sampler.guidance=3")
    assert r.returncode == 1
    assert "written with other settings" in r.stderr


def test_a_tag_begun_in_another_precision_is_refused(config, reference, tmp_path):
    # generate.dtype is recorded as the tag's attribute `dtype` (not in its
    # settings text, for tags of older stores, which are still accepted).
    tag, _, _ = samples(reference)
    with h5py.File(reference) as f:
        assert f[f"/samples/{tag}"].attrs["dtype"] == "fp32"
    for recorded, code in (("bf16", 1), (None, 0)):
        shutil.copy(reference, tmp_path / "store.h5")
        with h5py.File(tmp_path / "store.h5", "r+") as f:
            del f[f"/samples/{tag}"].attrs["dtype"]
            if recorded:
                f[f"/samples/{tag}"].attrs["dtype"] = recorded
        r = dinv_stage(1, "generate", config, tmp_path, "--embed.steps=10")
        assert r.returncode == code, r.stderr
        if recorded:
            assert f"/samples/{tag}: dtype is 'bf16' but this run has 'fp32'. Resume in the precision" in r.stderr


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


# ---- --preview N ---------------------------------------------------------------

def cifar_train_images(data):
    """The fixture's CIFAR-10 train images, decoded here independently of dinv."""
    records = [np.fromfile(p, np.uint8).reshape(-1, 3073) for p in sorted(data.glob("data_batch_*.bin"))]
    return np.concatenate(records)[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def expected_preview(store, data, n):
    """The documented grid: per row the source image (Pillow bicubic resize to the
    saved size; grey without one), a 3-pixel gap, then up to 8 of its samples (of
    one class without a source); 1-pixel white lines."""
    _, s, _ = samples(store)
    with h5py.File(store) as f:
        index = f["/source/index"][:]
    images = cifar_train_images(data)
    h, w = s["images"].shape[1:3]
    rows = []  # ((source, label), [sample rows])
    for m in range(n):
        key = (s["source"][m], s["label"][m])
        if rows and rows[-1][0] == key and len(rows[-1][1]) < 8:
            rows[-1][1].append(m)
        else:
            rows.append((key, [m]))
    width = 1 + w + 3 + max(len(r[1]) for r in rows) * (w + 1)
    grid = np.full((1 + len(rows) * (h + 1), width, 3), 255, np.uint8)
    for r, ((src, _), ms) in enumerate(rows):
        y = 1 + r * (h + 1)
        source = Image.fromarray(images[index[src]]).resize((w, h), Image.BICUBIC) if src >= 0 else 128
        grid[y:y + h, 1:1 + w] = np.asarray(source)
        for k, m in enumerate(ms):
            x = 1 + w + 3 + k * (w + 1)
            grid[y:y + h, x:x + w] = s["images"][m]
    return grid


def assert_preview(png, store, data, n, rows, columns):
    """The PNG equals the grid built from the store, pixel for pixel: `rows` sources
    of 16 px tiles (1 px separators, a 3 px gap after the source), `columns` samples each."""
    got = np.asarray(Image.open(png).convert("RGB"))
    want = expected_preview(store, data, n)
    assert got.shape == (1 + rows * 17, 1 + 16 + 3 + columns * 17, 3) == want.shape
    assert (got == want).all()


def test_preview_after_generation(config, reference, tmp_path):
    """On a finished tag: no sampling, the PNG's tiles are the stored samples and
    the resized source images, pixel for pixel; only rank 0 writes it."""
    shutil.copy(reference, tmp_path / "store.h5")
    before = samples(reference)[1]
    r = dinv_stage(2, "generate", config, tmp_path, "--embed.steps=10", "--preview", "7")
    assert r.returncode == 0, r.stderr
    tag, after, _ = samples(tmp_path / "store.h5")
    for k in before:
        assert before[k].tobytes() == after[k].tobytes(), k
    png = tmp_path / "store.h5.preview" / f"{tag}.png"
    assert r.stdout.count("preview: ") == 1 and f"preview: store.h5.preview/{tag}.png" in r.stdout
    assert_preview(png, tmp_path / "store.h5", config.parent / "data", 7, rows=4, columns=2)


def test_preview_while_generating_into_a_chosen_file(config, embedded, tmp_path):
    """--preview-out, with more samples per source than fit in a row (9 > 8)."""
    work = fresh(embedded, tmp_path)
    r = dinv_stage(1, "generate", config, work, "--embed.steps=10", "--generate.num_samples=9",
                   "--sampler.steps=2", "--preview=12", "--preview-out", "look/here.png")
    assert r.returncode == 0, r.stderr
    assert_preview(work / "look" / "here.png", work / "store.h5", config.parent / "data", 12, rows=3, columns=8)


def test_preview_of_per_class_prompts(config, embedded, tmp_path):
    """Prompt samples per class have no source image: a grey tile, one row per class."""
    work = fresh(embedded, tmp_path)
    r = dinv_stage(1, "generate", config, work, "--embed.steps=10", "--generate.mode=prompt",
                   "--generate.prompt_per=class", "--preview=5")
    assert r.returncode == 0, r.stderr
    tag, _, _ = samples(work / "store.h5")
    assert_preview(work / "store.h5.preview" / f"{tag}.png", work / "store.h5", config.parent / "data", 5,
                   rows=3, columns=2)


@pytest.mark.parametrize("args,code,message", [
    (["--preview", "0"], 2, "generate.preview = '0' is out of range"),
    (["--preview"], 2, "--preview needs a value"),
    (["--preview", "3", "--data.split=test"], 1, "dataset_fingerprint"),
])
def test_preview_errors(config, reference, tmp_path, args, code, message):
    shutil.copy(reference, tmp_path / "store.h5")
    r = dinv_stage(2, "generate", config, tmp_path, "--embed.steps=10", *args)
    assert r.returncode == code, r.stderr
    assert message in r.stderr
    assert not (tmp_path / "store.h5.preview").exists()


# ---- a full disk while writing ------------------------------------------------------

@pytest.fixture(scope="module")
def write_log(config, embedded, reference, tmp_path_factory):
    """Every write to the store of an uninterrupted 1-rank run, and where the tag's images lie."""
    work = fresh(embedded, tmp_path_factory.mktemp("write_log"))
    log = work / "writes.log"
    r = run(mpirun_cmd(1, DINV, "generate", "--config", config, "--embed.steps=10"), cwd=work,
            env=with_write_fault(ENV, log=log))
    assert r.returncode == 0, r.stderr
    tag, s, _ = samples(work / "store.h5")
    for k, v in samples(reference)[1].items():
        assert v.tobytes() == s[k].tobytes(), k
    with h5py.File(work / "store.h5") as f:
        offset = f[f"/samples/{tag}/images"].id.get_offset()
    return tag, writes_of(log), offset


def full_disk_run(config, embedded, tmp_path, after):
    work = fresh(embedded, tmp_path)
    r = run(mpirun_cmd(1, DINV, "generate", "--config", config, "--embed.steps=10"), cwd=work,
            env=with_write_fault(ENV, after=after))
    return work, r


def check_resumes(config, embedded, reference, work):
    """The store is intact (embeddings unchanged) and a rerun with space completes it
    to exactly the samples of an uninterrupted run."""
    with h5py.File(work / "store.h5") as f, h5py.File(embedded) as g:
        assert f["/embeddings/data"][:].tobytes() == g["/embeddings/data"][:].tobytes()
    r = dinv_stage(1, "generate", config, work, "--embed.steps=10")
    assert r.returncode == 0, r.stderr
    _, a, _ = samples(reference)
    _, b, _ = samples(work / "store.h5")
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def test_disk_full_while_writing_samples(config, embedded, reference, write_log, tmp_path):
    """The disk fills up in the middle of chunk 3's images (rows [18, 24)): a clear
    error naming the store, the dataset and the rows; chunks 0-2 kept, 3 not
    marked done; the rerun resumes to identical samples."""
    tag, writes, offset = write_log
    chunk_bytes = 6 * 16 * 16 * 3
    (before,) = [b for b, size, at in writes if at == offset + 3 * chunk_bytes and size == chunk_bytes]
    work, r = full_disk_run(config, embedded, tmp_path, before + 1000)
    assert r.returncode == 1, r.stderr
    for part in ("store.h5", f"/samples/{tag}/images", "rows [18, 24)", "No space left on device"):
        assert part in r.stderr, (part, r.stderr)
    with h5py.File(work / "store.h5") as f:
        assert f[f"/samples/{tag}/done"][:].tolist() == [1, 1, 1] + [0] * 11
    check_resumes(config, embedded, reference, work)


def test_too_little_free_space_is_refused_before_writing(config, embedded, tmp_path):
    """statvfs says 60 kB are free, the tag needs more: refused before the store is touched."""
    work = fresh(embedded, tmp_path)
    r = run(mpirun_cmd(2, DINV, "generate", "--config", config, "--embed.steps=10"), cwd=work,
            env=with_write_fault(ENV, free=60000))
    assert r.returncode == 1, r.stderr
    assert "not enough free space for /samples/" in r.stderr and "in store 'store.h5'" in r.stderr
    assert (work / "store.h5").read_bytes() == embedded.read_bytes()


def test_disk_full_at_each_write_that_creates_the_tag(config, embedded, reference, write_log, tmp_path):
    """The disk fills up at each write before the first chunk's: the fill values
    of every dataset, the metadata flushes that create the tag. Each time: a clear
    error and the embeddings intact, and the rerun completes to identical samples.
    The tag is built unlinked and linked once on disk (store::NewGroups); a linking
    flush cut short can leave /samples' link table unreadable (its first member), and
    the rerun moves /samples aside. (Before, up to two of these reruns were refused:
    a tag linked before its header was written, which HDF5 could not move.)"""
    tag, writes, offset = write_log
    first_chunk = next(i for i, (_, size, at) in enumerate(writes) if at == offset and size == 6 * 768)
    outcomes = []
    for i in range(first_chunk):
        work, r = full_disk_run(config, embedded, tmp_path / str(i), writes[i][0])
        assert r.returncode == 1, (i, r.stderr)
        assert "'store.h5' failed: No space left on device" in r.stderr, (i, r.stderr)
        with h5py.File(work / "store.h5") as f, h5py.File(embedded) as g:
            assert f["/embeddings/data"][:].tobytes() == g["/embeddings/data"][:].tobytes()
        again = dinv_stage(1, "generate", config, work, "--embed.steps=10")
        assert again.returncode == 0, (i, writes[i], again.stderr)
        _, a, _ = samples(reference)
        _, b, _ = samples(work / "store.h5")
        for k in a:
            assert a[k].tobytes() == b[k].tobytes(), (i, k)
        outcomes.append("moved aside" if "moving it to /damaged" in again.stderr else "resumed")
    print("outcomes", outcomes)
    assert outcomes.count("resumed") >= len(outcomes) // 2, outcomes


def test_each_run_appends_a_timing_record_beside_the_store(config, embedded, reference, tmp_path):
    import json

    def records(store):
        return [json.loads(line) for line in (store.parent / "store.h5.timings.jsonl").read_text().splitlines()]

    (embed,) = records(embedded)
    assert embed["stage"] == "embed" and embed["target"] == "/embeddings" and embed["ranks"] == 2
    assert embed["units_done_before"] == 0 and embed["units_done_after"] == embed["units_total"] > 0
    assert embed["seconds"] > 0 and not embed["stopped"]
    (gen,) = records(reference)
    tag, _, _ = samples(reference)
    assert gen["stage"] == "generate" and gen["target"] == f"/samples/{tag}" and gen["ranks"] == 1
    assert gen["units_done_after"] == gen["units_total"] > 0 and gen["images"] > 0
    # A rerun of a finished stage adds a record that finished nothing.
    work = fresh(embedded, tmp_path)
    shutil.copy(reference, work / "store.h5")
    r = dinv_stage(1, "generate", config, work, "--embed.steps=10")
    assert r.returncode == 0, r.stderr
    (rerun,) = records(work / "store.h5")
    assert rerun["units_done_before"] == rerun["units_done_after"] == gen["units_total"]
    assert (work / "store.h5").read_bytes() == reference.read_bytes(), "timings never go into the store"
