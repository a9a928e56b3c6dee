# Honest sample-complexity sweeps (docs/method.md "Sample-complexity sweeps"):
# a point's synthetic images are the store samples whose source image lies in
# the point's real subset, so many per source (syn.per_source) or so many in
# all (syn.total); the results file records both selections. Checked against
# the store's provenance (/samples/<tag>/source) read with h5py, on shapes data
# and stores written with the layout generate writes.
import os
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pytest

import store_fixture

DINV = os.environ["DINV"]
SOURCE = pathlib.Path(os.environ["DINV_SOURCE_DIR"])
PER = 3  # samples per source image in the test store


def dinv(*args, cwd, check=True, launcher=()):
    proc = subprocess.run([*launcher, DINV, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"dinv {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    dinv("data", "shapes", "--out", root, "--train", 400, "--test", 100, "--seed", 0, cwd=root)
    return root


@pytest.fixture(scope="module")
def store(shapes, tmp_path_factory):
    """Tag 'method': PER samples of each of the 400 images; 'prompt': 10 per-class samples."""
    path = tmp_path_factory.mktemp("store") / "store.h5"
    store_fixture.write_store(path, store_fixture.dataset_fingerprint(DINV, shapes),
                              {"method": (range(400), PER), "prompt": ([-1] * 10, 1)})
    return path


def run_args(shapes, store, steps=2):
    return [f"--data.format=cifar10", f"--data.root={shapes}", "--data.resolution=16", "--data.real_bs=8",
            "--data.eval_bs=50", "--data.workers=0", f"--train.steps={steps}", "--train.num_evals=1",
            "--train.warmup_steps=1", "--train.checkpoint_every=0", "--run.progress=off", "--run.threads=1",
            "--data.group_size=100", "--syn.format=store", f"--syn.root={store}", "--syn.tags=method"]


def selection(path):
    with h5py.File(path) as f:
        sel = f["selection"]
        return {"real": sel["real_index"][:] if "real_index" in sel else None,
                "rows": {t: sel["synthetic"][t][:] for t in sel["synthetic"]} if "synthetic" in sel else {},
                **{k[len("selection."):]: (v.decode() if isinstance(v, bytes) else v)
                   for k, v in f.attrs.items() if k.startswith("selection.")}}


def store_sources(store, tag):
    with h5py.File(store) as f:
        return f[f"samples/{tag}/source"][:]


def test_points_train_on_the_samples_of_their_own_real_subset(shapes, store, tmp_path):
    grid = ["--sweep.name=sc", "--sweep.num_data=100,200", "--sweep.source=real,synthetic,mixed",
            "--sweep.syn_amount=2,t50"]
    dinv("sweep", *run_args(shapes, store), *grid, cwd=tmp_path)
    res = tmp_path / "results"
    names = sorted(p.stem for p in res.glob("*.h5"))
    # real points do not repeat over the synthetic amount
    assert names == sorted([f"sc_n{n}_real" for n in (100, 200)] +
                           [f"sc_n{n}_{s}_{a}" for n in (100, 200) for s in ("synthetic", "mixed") for a in ("k2", "t50")])
    sources = store_sources(store, "method")
    sel = {n: selection(res / f"{n}.h5") for n in names}
    for n in (100, 200):
        real = sel[f"sc_n{n}_real"]["real"]
        assert len(real) == n and sel[f"sc_n{n}_real"]["real_count"] == n
        for s in ("synthetic", "mixed"):
            k2, t50 = sel[f"sc_n{n}_{s}_k2"], sel[f"sc_n{n}_{s}_t50"]
            # the same real subset behind every source of the point
            np.testing.assert_array_equal(k2["real"], real)
            assert k2["real_fingerprint"] == sel[f"sc_n{n}_real"]["real_fingerprint"]
            # k2: exactly the first two samples of every image of the real subset
            rows = k2["rows"]["method"]
            expected = np.concatenate([np.flatnonzero(sources == i)[:2] for i in real])
            np.testing.assert_array_equal(rows, expected)
            assert k2["synthetic_count"] == 2 * n and k2["per_source"] == 2 and k2["follow_real"] == 1
            # t50: 50 samples, every one from an image of the real subset
            rows = t50["rows"]["method"]
            assert len(rows) == 50 == t50["synthetic_count"] and len(set(rows)) == 50
            assert set(sources[rows]) <= set(real)
        # synthetic and mixed points of one subset and amount draw the same samples
        for a in ("k2", "t50"):
            assert sel[f"sc_n{n}_synthetic_{a}"]["synthetic_fingerprint"] == sel[f"sc_n{n}_mixed_{a}"]["synthetic_fingerprint"]
    # different subsets, different synthetic sets (100 is nested in 200)
    assert set(sel["sc_n100_real"]["real"]) < set(sel["sc_n200_real"]["real"])
    assert sel["sc_n100_synthetic_k2"]["synthetic_fingerprint"] != sel["sc_n200_synthetic_k2"]["synthetic_fingerprint"]
    assert sel["sc_n100_synthetic_k2"]["real_fingerprint"] != sel["sc_n200_synthetic_k2"]["real_fingerprint"]
    assert sel["sc_n100_synthetic_k2"]["synthetic_fingerprint"] != sel["sc_n100_synthetic_t50"]["synthetic_fingerprint"]

    # the analysis: one curve per (source, tags, amount), selections exposed
    sys.path.insert(0, str(SOURCE / "analysis"))
    import dinv_read
    runs = dinv_read.load_results(res)
    row = runs[runs["run"] == "sc_n100_synthetic_k2"].iloc[0]
    assert row["syn_tags"] == "method" and row["syn_amount"] == "k2" and row["num_synthetic"] == 200
    assert row["real_selection"] == sel["sc_n100_synthetic_k2"]["real_fingerprint"]
    real, rows = dinv_read.selection_indices(res / "sc_n100_synthetic_k2.h5")
    np.testing.assert_array_equal(real, sel["sc_n100_real"]["real"])
    np.testing.assert_array_equal(rows["method"], sel["sc_n100_synthetic_k2"]["rows"]["method"])
    assert runs[runs["run"] == "sc_n100_real"].iloc[0]["syn_amount"] == ""
    table = subprocess.run([sys.executable, SOURCE / "analysis" / "sample_complexity.py", res, "--out",
                            tmp_path / "curves.png", "--table", tmp_path / "table.csv"],
                           capture_output=True, text=True, check=True)
    lines = (tmp_path / "table.csv").read_text().splitlines()
    assert len(lines) == 1 + 10, table.stdout  # 2 real + 2 x 2 x 2 synthetic/mixed points
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_same_selection_for_another_training_seed_and_on_two_ranks(shapes, store, tmp_path):
    args = run_args(shapes, store) + ["--data.real_bs=0", "--data.syn_bs=8", "--data.num_data=200",
                                      "--syn.total=37", "--syn.per_source=2"]
    dinv("train", *args, "--train.run_name=one", cwd=tmp_path)
    dinv("train", *args, "--run.seed=1", "--train.run_name=seed1", cwd=tmp_path)
    mpirun = [os.environ["MPIEXEC"], "--oversubscribe", "-np", "2"]
    dinv("train", *args, "--train.run_name=two", cwd=tmp_path, launcher=mpirun)
    dinv("train", *args, "--data.subset_seed=1", "--train.run_name=other", cwd=tmp_path)
    one, seed1, two, other = (selection(tmp_path / "results" / f"{n}.h5") for n in ("one", "seed1", "two", "other"))
    assert len(one["rows"]["method"]) == 37 and len(one["real"]) == 200  # synthetic-only runs still select by subset
    for same in (seed1, two):
        np.testing.assert_array_equal(same["rows"]["method"], one["rows"]["method"])
        assert same["synthetic_fingerprint"] == one["synthetic_fingerprint"]
        assert same["real_fingerprint"] == one["real_fingerprint"]
    assert other["synthetic_fingerprint"] != one["synthetic_fingerprint"]
    assert other["real_fingerprint"] != one["real_fingerprint"]
    sources = store_sources(store, "method")
    for s in (one, other):
        assert set(sources[s["rows"]["method"]]) <= set(s["real"])
        # at most per_source samples of an image, and only its first ones
        for row in s["rows"]["method"]:
            assert row in np.flatnonzero(sources == sources[row])[:2]


def test_follow_real_false_trains_on_every_sample_and_says_so(shapes, store, tmp_path):
    dinv("train", *run_args(shapes, store), "--data.num_data=100", "--data.real_bs=4", "--data.syn_bs=4",
         "--syn.follow_real=false", "--syn.tags=method,prompt", "--train.run_name=all", cwd=tmp_path)
    s = selection(tmp_path / "results" / "all.h5")
    np.testing.assert_array_equal(s["rows"]["method"], np.arange(400 * PER))
    np.testing.assert_array_equal(s["rows"]["prompt"], np.arange(10))
    assert s["follow_real"] == 0 and s["synthetic_count"] == 400 * PER + 10 and s["synthetic_tags"] == "method,prompt"
    assert len(s["real"]) == 100


def fails(tmp_path, *args, command="train"):
    proc = dinv(command, *args, cwd=tmp_path, check=False)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def test_bad_selections_are_clear_errors(shapes, store, tmp_path):
    base = run_args(shapes, store) + ["--data.num_data=100", "--data.syn_bs=8"]
    err = fails(tmp_path, *base, "--syn.tags=method,nope")
    assert "samples/nope" in err and "never generated" in err
    err = fails(tmp_path, *base, f"--syn.per_source={PER + 1}")
    assert f"syn.per_source = {PER + 1}" in err and f"only {PER} sample(s)" in err and "100 source image(s)" in err
    err = fails(tmp_path, *base, "--syn.total=301")
    assert "syn.total = 301" in err and "only 300 samples" in err
    err = fails(tmp_path, *base, "--syn.tags=prompt")
    assert "per-class prompt" in err and "syn.follow_real = false" in err
    err = fails(tmp_path, *base, "--syn.format=cifar10", f"--syn.root={shapes}", "--syn.per_source=1")
    assert "syn.per_source" in err and "syn.format = store" in err
    # a store made from other images
    other = tmp_path / "other.h5"
    store_fixture.write_store(other, "cifar10:train:n=400:0123", {"method": (range(400), 1)})
    err = fails(tmp_path, *base, f"--syn.root={other}")
    assert "cifar10:train:n=400:0123" in err and store_fixture.dataset_fingerprint(DINV, shapes) in err
    assert "other images" in err
    # a tag generate has not finished
    half = tmp_path / "half.h5"
    store_fixture.write_store(half, store_fixture.dataset_fingerprint(DINV, shapes), {"method": (range(400), 1)},
                              chunk_size=100, unfinished=[2])
    err = fails(tmp_path, *base, f"--syn.root={half}")
    assert "only 3 of 4 chunks are finished" in err and "samples/method/done" in err
    err = fails(tmp_path, *base, "--sweep.syn_amount=x3", command="sweep")
    assert "sweep.syn_amount" in err and "'x3'" in err
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*.h5"))
