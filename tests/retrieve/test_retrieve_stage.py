"""`dinv retrieve`, the retrieval baseline, on the procedural shapes data
(queries: a CIFAR-format train set; pool: PNG folders of another shapes set)
with a tiny random CLIP vision model saved by transformers: top-k equal to a
brute-force numpy computation on the cached features, features equal to
transformers', the same bytes on 1, 2 and 4 ranks, dedup, resume, each output setting
changed alone refused by name, bad input."""
import os
import re
import shutil
import subprocess
import time

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import kill_session, with_write_fault, writes_of
from retrieve_inputs import make_retrieve_inputs, read_cifar

DINV = os.environ["DINV"]
MPIEXEC = os.environ.get("MPIEXEC", "mpirun")


def mpirun_cmd(np_, *args):
    return [MPIEXEC, "--oversubscribe", "-np", str(np_), *map(str, args)]


def run(cmd, timeout=300, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)

ENV = dict(os.environ, SOURCE_DATE_EPOCH="1700000000", OMP_NUM_THREADS="1")
TAG_DATASETS = ("images", "label", "source", "pool_index", "similarity", "done")

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_retrieve_inputs(tmp_path_factory.mktemp("retrieve"), DINV, ENV)


def retrieve(inputs, workdir, *overrides, np_=1, check=True):
    workdir.mkdir(parents=True, exist_ok=True)
    r = run(mpirun_cmd(np_, DINV, "retrieve", "--config", inputs / "retrieve.ini", *overrides), cwd=workdir,
            env=ENV, timeout=600)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def tag(path, name="retrieval_k3"):
    with h5py.File(path, "r") as f:
        return {k: f[f"samples/{name}/{k}"][()] for k in TAG_DATASETS}


def brute_force(q, p, k, bad=None):
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    pn = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    sims = qn.astype(np.float64) @ pn.T.astype(np.float64)
    if bad is not None:
        sims[:, bad.astype(bool)] = -np.inf
    order = np.stack([np.lexsort((np.arange(len(p)), -row))[:k] for row in sims])
    return order, np.take_along_axis(sims, order, 1)


def test_top_k_equals_brute_force(inputs, tmp_path):
    retrieve(inputs, tmp_path)
    with h5py.File(tmp_path / "store.h5.retrieve_features.h5", "r") as f:
        q, p = f["query/features"][()], f["pool/features"][()]
    t = tag(tmp_path / "store.h5")
    order, sims = brute_force(q, p, 3)
    assert (t["pool_index"].reshape(-1, 3) == order).all()
    np.testing.assert_allclose(t["similarity"].reshape(-1, 3), sims, rtol=0, atol=1e-5)
    _, labels = read_cifar(inputs / "queries")
    assert (t["source"] == np.repeat(np.arange(20), 3)).all()
    assert (t["label"] == np.repeat(labels, 3)).all()  # neighbours take their query's label
    assert t["images"].shape == (60, 32, 32, 3) and t["done"].all()
    # The stored image is the pool image itself (32 px pool, 32 px queries: no resize).
    pool_files = sorted((inputs / "pool").glob("*/*.png"), key=lambda x: (x.parent.name, x.name))
    first = np.asarray(Image.open(pool_files[t["pool_index"][0]]).convert("RGB"))
    assert (t["images"][0] == first).all()
    # syn.format = store reads the tag like any generated one.
    r = run([DINV, "data", "info", "--data.format=store", f"--data.root={tmp_path / 'store.h5'}",
             "--data.tags=retrieval_k3"], env=ENV)
    assert r.returncode == 0 and "images: 60" in r.stdout, r.stdout + r.stderr


def test_features_equal_transformers(inputs, tmp_path):
    from transformers import CLIPVisionModelWithProjection
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    retrieve(inputs, tmp_path)
    with h5py.File(tmp_path / "store.h5.retrieve_features.h5", "r") as f:
        p = f["pool/features"][()]
    files = sorted((inputs / "pool").glob("*/*.png"), key=lambda x: (x.parent.name, x.name))[:6]
    model = CLIPVisionModelWithProjection.from_pretrained(inputs / "clip").eval()
    pixels = CLIPImageProcessorPil.from_pretrained(inputs / "clip")([Image.open(x) for x in files], return_tensors="pt")
    with torch.no_grad():
        ref = model(**pixels).image_embeds.numpy()
    assert np.linalg.norm(p[:6] - ref) / np.linalg.norm(ref) <= 1e-4


def test_same_bytes_on_1_2_4_ranks_and_other_k_reuses_cache(inputs, tmp_path):
    results = {}
    for np_ in (1, 2, 4):
        retrieve(inputs, tmp_path / f"np{np_}", np_=np_)
        results[np_] = tag(tmp_path / f"np{np_}" / "store.h5")
    for np_ in (2, 4):
        for key in TAG_DATASETS:
            assert np.array_equal(results[1][key], results[np_][key]), (np_, key)
    # Another k reuses the cached features: no feature progress, same first neighbours.
    r = retrieve(inputs, tmp_path / "np1", "--retrieve.k=2")
    t2 = tag(tmp_path / "np1" / "store.h5", "retrieval_k2")
    assert (t2["pool_index"].reshape(-1, 2) == results[1]["pool_index"].reshape(-1, 3)[:, :2]).all()


def test_dedup_writes_each_pool_image_once(inputs, tmp_path):
    retrieve(inputs, tmp_path, "--retrieve.dedup=true", "--retrieve.k=5")
    t = tag(tmp_path / "store.h5", "retrieval_k5_dedup")
    assert len(np.unique(t["pool_index"])) == len(t["pool_index"]) < 60


def test_kill_and_resume(inputs, tmp_path):
    """SIGKILL at random moments of the run (features, search, tag), then a
    rerun: the same bytes as an uninterrupted run."""
    import random

    slow = ["--retrieve.shard_size=1", "--retrieve.batch_size=1"]
    start = time.monotonic()
    retrieve(inputs, tmp_path / "ref", *slow)
    full = time.monotonic() - start
    work = tmp_path / "work"
    work.mkdir()
    cmd = [str(c) for c in mpirun_cmd(2, DINV, "retrieve", "--config", inputs / "retrieve.ini", *slow)]
    rng = random.Random(5)
    kills, scale = 0, 1.0
    for _ in range(16):
        proc = subprocess.Popen(cmd, cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.uniform(0.4, 0.9) * full * scale)
        if proc.poll() is not None:
            # The machine got faster than during the reference run and the run
            # finished before its kill: start the series over, killing sooner.
            shutil.rmtree(work)
            work.mkdir()
            kills, scale = 0, scale / 2
            continue
        kill_session(proc)
        kills += 1
        if kills >= 3:
            break
    assert kills >= 3, f"only {kills} runs in a row were killed mid-way"
    retrieve(inputs, work, *slow, np_=2)
    a, b = tag(tmp_path / "ref" / "store.h5"), tag(work / "store.h5")
    for key in TAG_DATASETS:
        assert np.array_equal(a[key], b[key]), key


def test_a_run_stopped_at_each_store_write_resumes_to_the_same_bytes(inputs, tmp_path):
    """Every write to the store before the tag's first rows (its creation, /source and its
    rows, the tag's layout) fails in turn, leaving the store as a kill there would (HDF5's
    metadata flush cut short included); the rerun completes it to exactly the uninterrupted
    run's tag and /source, setting aside what was left half-created. (The CI once caught a
    kill between /source's layout and its rows: the rerun queried image 0 twenty times.)"""
    ref = tmp_path / "ref"
    ref.mkdir()
    log = tmp_path / "writes.log"
    r = run(mpirun_cmd(1, DINV, "retrieve", "--config", inputs / "retrieve.ini"), cwd=ref,
            env=with_write_fault(ENV, log=log))
    assert r.returncode == 0, r.stderr
    with h5py.File(ref / "store.h5") as f:
        first_rows = f["samples/retrieval_k3/images"].id.get_offset()
        source = {k: f[f"source/{k}"][()] for k in ("index", "label")}
    writes = writes_of(log)
    # The first write there fills the dataset at its creation, the second is the first shard's rows.
    stop = [i for i, (_, _, at) in enumerate(writes) if at == first_rows][1]
    expected = tag(ref / "store.h5")
    for i in range(stop):
        work = tmp_path / str(i)
        work.mkdir()
        shutil.copyfile(ref / "store.h5.retrieve_features.h5", work / "store.h5.retrieve_features.h5")
        r = run(mpirun_cmd(1, DINV, "retrieve", "--config", inputs / "retrieve.ini"), cwd=work,
                env=with_write_fault(ENV, after=writes[i][0]))
        assert r.returncode == 1 and "No space left on device" in r.stderr, (i, r.stderr)
        again = retrieve(inputs, work, check=False)
        assert again.returncode == 0, (i, writes[i], again.stderr)
        got = tag(work / "store.h5")
        for key in TAG_DATASETS:
            assert np.array_equal(expected[key], got[key]), (i, writes[i], key)
        with h5py.File(work / "store.h5") as f:
            for k, v in source.items():
                assert np.array_equal(f[f"source/{k}"][()], v), (i, writes[i], k)


def test_retrieve_and_embed_share_a_store(inputs, tmp_path):
    """retrieve first writes a /source of the whole [data] set; embed then keeps it (the same
    rows), and refuses another subset by name; retrieve after a finished embed queries
    embed's /source, and refuses an unfinished one instead of querying rows not yet written."""
    model = tmp_path / "sd"
    r = run([DINV, "model", "init", "--preset", "tiny", model], env=ENV)
    assert r.returncode == 0, r.stderr
    embed = [f"--model.path={model}", "--embed.group_size=10", "--embed.batch_size=5", "--embed.steps=2",
             "--embed.resolution=32"]
    retrieve(inputs, tmp_path, np_=2)
    before = tag(tmp_path / "store.h5")
    with h5py.File(tmp_path / "store.h5") as f:
        source = {k: f[f"source/{k}"][()] for k in ("index", "label")}
    r = run(mpirun_cmd(1, DINV, "embed", "--config", inputs / "retrieve.ini", *embed, "--embed.num_images=10"),
            cwd=tmp_path, env=ENV)
    assert r.returncode == 1 and "/source" in r.stderr, r.stderr
    r = run(mpirun_cmd(2, DINV, "embed", "--config", inputs / "retrieve.ini", *embed), cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "store.h5") as f:
        for k, v in source.items():
            assert np.array_equal(f[f"source/{k}"][()], v), k
        assert f["embeddings/done"][()].all()
    retrieve(inputs, tmp_path, "--retrieve.tag=again", np_=2)
    again = tag(tmp_path / "store.h5", "again")
    for key in TAG_DATASETS:
        assert np.array_equal(before[key], again[key]), key
    with h5py.File(tmp_path / "store.h5", "r+") as f:
        f["embeddings/done"][1] = 0
    r = retrieve(inputs, tmp_path, "--retrieve.tag=unfinished", check=False)
    assert r.returncode == 1 and "only 1 of 2 embedding units (which write /source) are finished" in r.stderr, \
        r.stderr


def test_bad_pool_image_is_skipped_and_counted(inputs, tmp_path):
    import shutil

    pool = tmp_path / "pool"
    shutil.copytree(inputs / "pool", pool)
    victim = sorted(pool.glob("*/*.png"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # header intact, pixels cut short
    r = retrieve(inputs, tmp_path / "ok", f"--retrieve.pool.root={pool}", "--retrieve.max_bad_share=0.1")
    assert "1 pool images skipped" in r.stdout + r.stderr, r.stdout + r.stderr
    files = sorted(pool.glob("*/*.png"), key=lambda x: (x.parent.name, x.name))
    bad_index = files.index(victim)
    assert bad_index not in tag(tmp_path / "ok" / "store.h5")["pool_index"]
    r = retrieve(inputs, tmp_path / "fail", f"--retrieve.pool.root={pool}", "--retrieve.max_bad_share=0",
                 check=False)
    assert r.returncode != 0 and victim.name in r.stderr and "max_bad_share" in r.stderr, r.stderr


def test_webdataset_pool_equals_folder_pool(inputs, tmp_path):
    """The same pool as .tar shards (ustar, one member per .png / .cls, keys
    sorted as the folder's files): the same neighbours and bytes."""
    import tarfile

    files = sorted((inputs / "pool").glob("*/*.png"), key=lambda x: (x.parent.name, x.name))
    classes = sorted({f.parent.name for f in files})
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in range(2):
        with tarfile.open(shards / f"pool-{s:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i, f in list(enumerate(files))[s * 20:(s + 1) * 20]:
                tar.add(f, arcname=f"sample{i:06d}.png")
                cls = tmp_path / "cls"
                cls.write_text(str(classes.index(f.parent.name)))
                tar.add(cls, arcname=f"sample{i:06d}.cls")
    retrieve(inputs, tmp_path / "folder")
    retrieve(inputs, tmp_path / "wds", "--retrieve.pool.format=webdataset", f"--retrieve.pool.root={shards}", np_=2)
    a, b = tag(tmp_path / "folder" / "store.h5"), tag(tmp_path / "wds" / "store.h5")
    for key in TAG_DATASETS:
        assert np.array_equal(a[key], b[key]), key
    (shards / "pool-00001.tar").write_bytes((shards / "pool-00001.tar").read_bytes()[:3000])
    r = retrieve(inputs, tmp_path / "cut", "--retrieve.pool.format=webdataset", f"--retrieve.pool.root={shards}",
                 check=False)
    assert r.returncode != 0 and "pool-00001.tar" in r.stderr, r.stderr


def test_bad_settings_are_named(inputs, tmp_path):
    r = retrieve(inputs, tmp_path / "a", f"--retrieve.model={tmp_path}/absent", check=False)
    assert r.returncode != 0 and "absent" in r.stderr, r.stderr
    r = retrieve(inputs, tmp_path / "b", "--retrieve.k=41", check=False)
    assert r.returncode != 0 and "retrieve.k = 41" in r.stderr and "40" in r.stderr, r.stderr


HELP_KEY = re.compile(r"^  --(\S+) \((.*); default (.*)\)$")


def output_settings():
    """{key: (allowed, default)} of the keys `dinv retrieve --help` marks as changing its output (the marks
    come from the retrieve settings declaration, so a new setting is walked without touching this test)."""
    r = run([DINV, "retrieve", "--help"], env=ENV)
    assert r.returncode == 0, r.stderr
    marked, key = {}, None
    for line in r.stdout.splitlines():
        if m := HELP_KEY.match(line):
            key, allowed, default = m.groups()
        elif line == "      changes the output of retrieve":
            marked[key] = (allowed, default)
    return marked


def test_each_output_setting_changed_alone_is_refused_by_name(inputs, tmp_path):
    retrieve(inputs, tmp_path)
    with h5py.File(tmp_path / "store.h5", "r") as f:
        stored = f["samples/retrieval_k3"].attrs["settings"]
        stored = stored.decode() if isinstance(stored, bytes) else stored
    # The text stores written before the settings declaration hold.
    assert stored.startswith("k=3 dedup=0 resolution=32 shard_size=7 features=pool=folder:"), stored
    assert " shard_size=7 batch_size=4 data=CIFAR-10:train:n=20:" in stored, stored
    marked = output_settings()
    assert set(marked) == {"retrieve.k", "retrieve.dedup", "retrieve.shard_size", "retrieve.resolution"}, marked
    now = {"retrieve.k": "3", "retrieve.dedup": "false", "retrieve.shard_size": "7", "retrieve.resolution": "32"}
    other = {"retrieve.k": "2", "retrieve.dedup": "true", "retrieve.shard_size": "5", "retrieve.resolution": "16"}
    before = (tmp_path / "store.h5").read_bytes()
    for key in marked:
        # The same tag, and a cache of its own (the shared one refuses another shard_size first).
        r = retrieve(inputs, tmp_path, "--retrieve.tag=retrieval_k3", f"--retrieve.cache=walk_{key}.h5",
                     f"--{key}={other[key]}", check=False)
        assert r.returncode == 1, (key, r.stderr)
        shown = {"false": "0", "true": "1"}
        assert (f"/samples/retrieval_k3 was written with other settings: {key} is "
                f"'{shown.get(now[key], now[key])}' there, '{shown.get(other[key], other[key])}' in this run"
                in r.stderr), (key, r.stderr)
        assert (tmp_path / "store.h5").read_bytes() == before, f"the refused run with {key} wrote into the store"
