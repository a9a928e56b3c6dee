# The analysis scripts (analysis/*.py) on a tiny sweep: results files and a
# store written with h5py in the layouts dinv writes (src/classify/results.cpp,
# src/inversion/embed.cpp, src/generation/generate.cpp), plus two runs of the
# real `dinv train` when the binary is built. Every figure is made and
# non-empty, table numbers equal values read independently from the files, and
# bad input gets exit code 2 with a message naming the file or folder.
import base64
import configparser
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

SOURCE = pathlib.Path(os.environ.get("DINV_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
ANALYSIS = SOURCE / "analysis"
DINV = os.environ.get("DINV", str(SOURCE / "build" / "dinv"))
PYTHON = sys.executable
SHAPES = ["disk", "square", "triangle", "plus", "ring", "diamond", "frame", "x_cross", "bars", "crescent"]
TEST_FP = "CIFAR-10:test:n=50:abc123"
SEEDS = (0, 1, 2)


def script(name, *args, cwd=None, scripts=ANALYSIS):
    return subprocess.run([PYTHON, str(scripts / name), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def config_ini(fmt, model, real_bs, syn_bs, num_data, seed, root="data"):
    # The sections and keys dinv's Config::to_ini writes (a subset: the readers need these).
    return (f"[run]\nseed = {seed}\nthreads = 1\n\n[data]\nformat = {fmt}\nroot = {root}\nsplit = train\n"
            f"num_data = {num_data}\ngroup_size = 100\nreal_bs = {real_bs}\nsyn_bs = {syn_bs}\n\n"
            f"[syn]\nformat = {'store' if syn_bs else 'none'}\nroot = store.h5\ntags = a\n\n"
            f"[train]\nmodel = {model}\nsteps = 40\n")


def write_results(path, *, model="resnet18", source="real", num_data=100, seed=0, final=0.5, best=0.6,
                  fmt="cifar10", test_fp=TEST_FP, complete=1, syn_n=400, real_n=1000, seconds=12.5,
                  syn_tags=None, follow_real=0):
    """A results file in the layout of src/classify/results.cpp."""
    real_bs, syn_bs = {"real": (8, 0), "synthetic": (0, 8), "mixed": (4, 4)}[source]
    evals = np.array([10, 20, 30, 40])
    acc = np.array([0.1, 0.3, best, final])
    with h5py.File(path, "w") as f:
        f["history/step"] = np.arange(40, dtype=np.int64)
        f["history/lr"] = np.linspace(0.001, 0.01, 40)
        f["history/train_loss"] = np.linspace(2.3, 1.0, 40)
        f["eval/step"] = evals
        f["eval/accuracy"] = acc
        f["eval/loss"] = 2 - acc
        f["eval/per_class_accuracy"] = np.tile(acc[:, None], (1, 10))
        f["final/per_class_accuracy"] = np.full(10, final)
        a = f.attrs
        a["schema"] = "dinv-train-results/1"
        a["run"] = path.stem
        a["config"] = config_ini(fmt, model, real_bs, syn_bs, num_data, seed)
        a["device"] = "cpu"
        a["world_size"] = np.int64(2)
        a["global_batch"] = np.int64(real_bs + syn_bs)
        a["class_names"] = SHAPES
        if real_bs:
            a["fingerprint.real"] = f"CIFAR-10:train:n={real_n}:ff" + (f"|subset:num_data={num_data}:x" if num_data else "")
        if syn_bs:
            a["fingerprint.synthetic"] = f"store:a:n={syn_n}:ee"
        a["fingerprint.test"] = test_fp
        a["steps"] = np.int64(40)
        a["final_accuracy"] = float(final)
        a["final_loss"] = float(2 - final)
        a["best_accuracy"] = float(best)
        a["best_step"] = np.int64(30)
        a["train_seconds"] = float(seconds)
        a["eval_seconds"] = 1.5
        a["images_per_second"] = 40 * (real_bs + syn_bs) / seconds
        a["resumed_from"] = np.int64(0)
        a["complete"] = np.int64(complete)
        if syn_tags is not None:
            a["selection.synthetic_tags"] = syn_tags
        if follow_real:  # synthetic samples that followed a real subset of this many images
            a["selection.follow_real"] = np.int64(1)
            a["selection.real_count"] = np.int64(follow_real)


def make_sweep(folder, fmt="cifar10", test_fp=TEST_FP, seed=0):
    """A sweep: 2 models x 3 sources x 2 sizes x 3 seeds, random accuracies."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for model in ("resnet18", "vgg16_bn"):
        for source in ("real", "synthetic", "mixed"):
            for n in (100, 200):
                for s in SEEDS:
                    final = float(rng.uniform(0.2, 0.9))
                    write_results(folder / f"sc_{model}_n{n}_{source}_s{s}.h5", model=model, source=source,
                                  num_data=n if source != "synthetic" else 0, seed=s, final=final,
                                  best=final + float(rng.uniform(0, 0.05)), fmt=fmt, test_fp=test_fp,
                                  syn_n=2 * n * 4)
    # an unfinished run and a half-written file are not counted
    write_results(folder / "unfinished.h5", complete=0, final=0.99, best=0.99)
    (folder / "partial.h5.tmp").write_bytes(b"\0" * 64)
    return folder


def write_cifar(folder, count, seed=0):
    """CIFAR-10 binary files as `dinv data shapes` writes them (random pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    records = np.concatenate([labels[:, None].astype(np.uint8), images.transpose(0, 3, 1, 2).reshape(count, -1)], 1)
    records.tofile(folder / "data_batch_1.bin")
    records[:10].tofile(folder / "test_batch.bin")
    (folder / "batches.meta.txt").write_text("\n".join(SHAPES) + "\n")
    return images, labels


def write_store(path, labels, *, tags=(("a", 0.1, 0.1), ("b", 0.3, 0.1)), num_samples=2, group_size=10,
                done_units=None, data_root="data"):
    """A store in the layout of src/store, src/inversion/embed.cpp and src/generation/generate.cpp."""
    n = len(labels)
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f.attrs["schema_version"] = np.int64(1)
        f.attrs["dinv_version"] = "0.1.0+test"
        f.attrs["config"] = f"[data]\nformat = cifar10\nroot = {data_root}\nsplit = train\n\n[embed]\ngroup_size = {group_size}\n"
        f.attrs["created"] = "2026-01-01T00:00:00Z"
        f.create_group("samples")
        s = f.create_group("source")
        s["index"] = np.arange(n, dtype=np.int64)
        s["label"] = labels.astype(np.int64)
        s.attrs["class_names"] = SHAPES
        s.attrs["dataset_fingerprint"] = f"CIFAR-10:train:n={n}:ff"
        s.attrs["dataset"] = f"CIFAR-10 train ({n} images, 32x32)"
        e = f.create_group("embeddings")
        e["data"] = rng.normal(size=(n, 2, 8)).astype(np.float32)
        loss = rng.uniform(0.05, 0.4, n).astype(np.float32)
        units = -(-n // group_size)
        done = np.ones(units, np.uint8) if done_units is None else np.asarray(done_units, np.uint8)
        loss[np.repeat(done == 0, group_size)[:n]] = 0  # unfinished units are zero-filled
        e["loss"] = loss
        e["done"] = done
        e.attrs["settings"] = (f"num_tokens=2 group_size={group_size} batch_size=5 steps=60 pack_units=1 "
                               "resolution=32 interpolation=bicubic lr=0.03 seed=0")
        for k, v in (("num_tokens", 2), ("group_size", group_size), ("steps", 60), ("resolution", 32)):
            e.attrs[k] = np.int64(v)
        e.attrs["lr"] = 0.03
        m = n * num_samples
        for tag, interp, noise in tags:
            g = f.create_group(f"samples/{tag}")
            g["images"] = rng.integers(0, 256, (m, 16, 16, 3), dtype=np.uint8)
            g["label"] = np.repeat(labels, num_samples).astype(np.int64)
            g["source"] = np.repeat(np.arange(n), num_samples).astype(np.int64)
            g["partner"] = rng.integers(0, n, m).astype(np.int64)
            g["seed"] = np.arange(m, dtype=np.int64)
            g["done"] = np.ones(-(-m // 6), np.uint8)
            g.attrs["mode"] = "embedding"
            g.attrs["interpolation"] = interp
            g.attrs["noise"] = noise
            g.attrs["num_samples"] = np.int64(num_samples)
            g.attrs["chunk_size"] = np.int64(6)
            g.attrs["save_resolution"] = np.int64(16)
            measured = f.create_group(f"metrics/{tag}")
            for k, v in METRICS.items():
                measured.attrs[k] = v + interp
            measured.attrs["classifier_fingerprint"] = "resnet18:abc"
    return loss, done


# Timing records as dinv's stages append them (src/cli/stages.cpp): embed stopped
# after 1 of 4 units and resumed on 4 ranks; tag b generated, then rerun (nothing to do).
TIMINGS = [
    dict(stage="embed", target="/embeddings", seconds=10.0, ranks=2, units_done_before=0, units_done_after=1,
         units_total=4, images=40, stopped=True),
    dict(stage="embed", target="/embeddings", seconds=30.0, ranks=4, units_done_before=1, units_done_after=4,
         units_total=4, images=40, stopped=False),
    dict(stage="generate", target="/samples/a", seconds=20.0, ranks=2, units_done_before=0, units_done_after=7,
         units_total=7, images=80, stopped=False),
    dict(stage="generate", target="/samples/b", seconds=50.0, ranks=1, units_done_before=0, units_done_after=7,
         units_total=7, images=80, stopped=False),
    dict(stage="generate", target="/samples/b", seconds=1.0, ranks=1, units_done_before=7, units_done_after=7,
         units_total=7, images=80, stopped=False),
]


METRICS = {"fid": 12.5, "precision": 0.75, "recall": 0.5, "density": 0.9, "coverage": 0.6, "label_agreement": 0.8,
           "leaked_test_images": 0.0, "own_source_share": 0.25, "mean_source_distance": 3.0}


def write_timings(path):
    path.write_text("".join(json.dumps(dict(t, device="cpu", threads_per_rank=1)) + "\n" for t in TIMINGS))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    images, labels = write_cifar(root / "data", 40)
    loss, done = write_store(root / "store.h5", labels)
    write_timings(root / "store.h5.timings.jsonl")
    make_sweep(root / "results")
    return {"root": root, "images": images, "labels": labels, "loss": loss, "done": done}


@pytest.fixture(scope="module")
def report(experiment):
    out = experiment["root"] / "report"
    r = script("report.py", experiment["root"] / "results", "--store", experiment["root"] / "store.h5", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def independent_table(folder):
    """Mean, std (ddof 1) and count of final accuracy per (model, source, real, synthetic),
    read straight from the results files without the analysis modules."""
    groups = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path, "r") as f:
            if int(f.attrs["complete"]) != 1:
                continue
            c = configparser.ConfigParser()
            c.read_string(f.attrs["config"])
            real_bs, syn_bs = c.getint("data", "real_bs"), c.getint("data", "syn_bs")
            source = "real" if syn_bs == 0 else "synthetic" if real_bs == 0 else "mixed"
            num_data = c.getint("data", "num_data") if real_bs else 0
            if real_bs and num_data == 0:
                num_data = int(re.search(r":n=(\d+)", f.attrs["fingerprint.real"]).group(1))
            syn = int(re.search(r":n=(\d+)", f.attrs["fingerprint.synthetic"]).group(1)) if syn_bs else 0
            key = (c.get("train", "model"), source, num_data, syn)
            groups.setdefault(key, []).append((float(f.attrs["final_accuracy"]), float(f.attrs["best_accuracy"])))
    return {k: np.array(v) for k, v in groups.items()}


def png_ok(data):
    """A decodable PNG that is not one flat colour."""
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return image.shape[0] > 50 and image.shape[1] > 50 and image.std() > 1


def test_report_embeds_every_figure(report, experiment):
    page = (report / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    names = {"sample_complexity.png", "history.png", "stage1_groups.png", "stage1_hist.png", "grid_a.png",
             "grid_b.png", "grid_strengths.png", "time_to_n.png"}
    assert {p.name for p in (report / "figures").glob("*.png")} == names
    assert len(embedded) == len(names)
    assert all(png_ok(base64.b64decode(d)) for d in embedded)
    assert "<img" in page and 'src="figures/' not in page  # nothing outside the page
    md = (report / "report.md").read_text()
    for name in names:
        assert f"(figures/{name})" in md and png_ok((report / "figures" / name).read_bytes())
    assert "Cost of stages 1 and 2" in md and "store.h5.timings.jsonl" in md
    assert "Generated against real images" in md and "resnet18:abc" in md
    assert "12.6" in md and "12.8" in md  # the fid of tags a and b (12.5 + their interpolation)
    assert "source images from" in md  # the real images were found through the store's data.root


def test_stage_cost_equals_the_timing_records(experiment, tmp_path):
    r = script("cost.py", experiment["root"] / "store.h5", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    cost = pd.read_csv(tmp_path / "cost.csv").set_index("target")
    # Independently: rank-seconds summed over runs, divided by the images the runs covered.
    expected = {"/embeddings": (2, 10 * 2 + 30 * 4, 40.0), "/samples/a": (1, 20 * 2, 80.0),
                "/samples/b": (2, 50 + 1, 80.0)}
    for target, (runs, rank_seconds, images) in expected.items():
        row = cost.loc[target]
        assert row["runs"] == runs and row["rank_seconds"] == pytest.approx(rank_seconds)
        assert row["rank_seconds_per_image"] == pytest.approx(rank_seconds / images)
    assert png_ok((tmp_path / "time_to_n.png").read_bytes())
    sys.path.insert(0, str(ANALYSIS))
    import cost as cost_module

    hours = cost_module.time_to_n(cost_module.stage_cost(cost_module.read_timings(experiment["root"] / "store.h5")),
                                  1000)
    assert hours["a"] == pytest.approx((140 + 1000 * 0.5) / 3600)
    assert hours["b"] == pytest.approx((140 + 1000 * 51 / 80) / 3600)


def test_bad_timing_records_name_file_and_line(tmp_path):
    store = tmp_path / "store.h5"
    (tmp_path / "store.h5.timings.jsonl").write_text('{"stage": "embed", "seconds": 1, "ranks": 1}\n{"stage": \n')
    r = script("cost.py", store, "--out", tmp_path)
    assert r.returncode == 2 and "store.h5.timings.jsonl:2: not JSON" in r.stderr, r.stderr
    (tmp_path / "store.h5.timings.jsonl").write_text('{"stage": "embed"}\n')
    r = script("cost.py", store, "--out", tmp_path)
    assert r.returncode == 2 and "store.h5.timings.jsonl:1: a timing record needs the fields" in r.stderr, r.stderr
    (tmp_path / "store.h5.timings.jsonl").unlink()
    r = script("cost.py", store, "--out", tmp_path)
    assert r.returncode == 2 and "not found or empty" in r.stderr, r.stderr


def test_table_numbers_equal_the_results_files(report, experiment):
    expected = independent_table(experiment["root"] / "results")
    table = pd.read_csv(report / "table.csv")
    assert len(table) == len(expected) == 2 * 3 * 2
    for _, row in table.iterrows():
        values = expected[(row["model"], row["source"], row["num_data"], row["num_synthetic"])]
        assert row["final_accuracy_count"] == len(values) == len(SEEDS)
        assert row["final_accuracy_mean"] == pytest.approx(values[:, 0].mean(), abs=1e-12)
        assert row["final_accuracy_std"] == pytest.approx(values[:, 0].std(ddof=1), abs=1e-12)
        assert row["best_accuracy_mean"] == pytest.approx(values[:, 1].mean(), abs=1e-12)
        assert row["best_accuracy_std"] == pytest.approx(values[:, 1].std(ddof=1), abs=1e-12)
    md = (report / "table.md").read_text()
    for (model, source, n, syn), values in expected.items():
        cell = f"{100 * values[:, 0].mean():.2f} ± {100 * values[:, 0].std(ddof=1):.2f} (n=3)"
        assert cell in md and cell in (report / "report.html").read_text()
    assert "0.99" not in table.to_string()  # the unfinished run is left out


def test_stage1_groups_equal_the_store(report, experiment):
    groups = pd.read_csv(report / "figures" / "stage1_groups.csv")
    loss = experiment["loss"].astype(np.float64).reshape(-1, 10)
    assert list(groups["group"]) == list(range(4))
    np.testing.assert_allclose(groups["mean"], loss.mean(1), rtol=1e-12)
    np.testing.assert_allclose(groups["max"], loss.max(1), rtol=1e-12)


def test_unfinished_embedding_units_are_left_out(tmp_path):
    labels = np.arange(40) % 10
    loss, _ = write_store(tmp_path / "store.h5", labels, done_units=[1, 0, 1, 1])
    r = script("stage1.py", tmp_path / "store.h5", "--out", tmp_path / "s1")
    assert r.returncode == 0, r.stderr
    assert "30 of 40 images" in r.stdout
    groups = pd.read_csv(tmp_path / "s1" / "stage1_groups.csv")
    assert list(groups["group"]) == [0, 2, 3] and (groups["min"] > 0).all()


def test_grids_read_the_source_images_of_the_store(experiment, tmp_path):
    sys.path.insert(0, str(ANALYSIS))
    try:
        import dinv_read
    finally:
        sys.path.remove(str(ANALYSIS))
    with dinv_read.open_store(experiment["root"] / "store.h5") as f:
        sources = dinv_read.SourceImages(f)
        assert sources.available, sources.reason
        np.testing.assert_array_equal(sources.image(7), experiment["images"][7])
    # without the dataset files the grid still comes, with grey tiles, and says why
    store = tmp_path / "store.h5"
    shutil.copy(experiment["root"] / "store.h5", store)
    r = script("grids.py", store, "--out", tmp_path / "g", "--tag", "a", "--per-class", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "source images not shown" in r.stdout and "data" in r.stdout
    assert png_ok((tmp_path / "g" / "grid_a.png").read_bytes())


def test_sample_complexity_command_line_still_works(experiment, tmp_path):
    r = script("sample_complexity.py", experiment["root"] / "results", "--out", tmp_path / "curves.png",
               "--table", tmp_path / "table.csv")
    assert r.returncode == 0, r.stderr
    assert "mixed" in r.stdout and png_ok((tmp_path / "curves.png").read_bytes())
    assert len((tmp_path / "table.csv").read_text().splitlines()) == 1 + 12


def test_tables_of_two_datasets(experiment, tmp_path):
    make_sweep(tmp_path / "stl10", fmt="stl10", test_fp="STL-10:test:n=80:dd", seed=5)
    r = script("tables.py", experiment["root"] / "results", tmp_path / "stl10", "--out", tmp_path / "t")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "t" / "table.csv")
    assert sorted(table["dataset"].unique()) == ["cifar10", "stl10"] and len(table) == 24
    expected = independent_table(tmp_path / "stl10")
    part = table[table["dataset"] == "stl10"]
    for _, row in part.iterrows():
        values = expected[(row["model"], row["source"], row["num_data"], row["num_synthetic"])]
        assert row["final_accuracy_mean"] == pytest.approx(values[:, 0].mean(), abs=1e-12)
    assert "## stl10: final test accuracy (%) by source" in (tmp_path / "t" / "table.md").read_text()


def test_tables_keep_runs_of_other_tags_apart(tmp_path):
    # Two mixed runs per seed that differ only in their synthetic tags are two
    # rows (and two columns of the wide table), never averaged together.
    folder = tmp_path / "tags"
    folder.mkdir()
    for s in SEEDS:
        write_results(folder / f"real_s{s}.h5", source="real", seed=s, final=0.5)
        write_results(folder / f"method_s{s}.h5", source="mixed", seed=s, final=0.8, syn_tags="method")
        write_results(folder / f"prompt_s{s}.h5", source="mixed", seed=s, final=0.3, syn_tags="prompt")
    r = script("tables.py", folder, "--out", tmp_path / "t")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "t" / "table.csv").fillna("")
    mixed = table[table["source"] == "mixed"].set_index("syn_tags")
    assert sorted(mixed.index) == ["method", "prompt"]
    assert mixed.loc["method", "final_accuracy_mean"] == pytest.approx(0.8)
    assert mixed.loc["prompt", "final_accuracy_mean"] == pytest.approx(0.3)
    md = (tmp_path / "t" / "table.md").read_text()
    assert "mixed method all (400 syn.)" in md and "mixed prompt all (400 syn.)" in md


def test_effect_states_each_comparison_with_its_error_bar(tmp_path):
    # At 100 real images: real 0.50 +- 0.01, real + method 0.60 +- 0.01 (shown:
    # +10 points against 2 x 1.4), real + prompt 0.59 +- 0.01 (method against
    # prompt: +1 point, not shown); generated only, method 0.20 +- 0.01
    # against prompt 0.30 +- 0.01 (reversed). Seed s adds (s - 1) / 100.
    folder = tmp_path / "effect"
    folder.mkdir()
    for s in SEEDS:
        d = (s - 1) / 100
        write_results(folder / f"real_s{s}.h5", source="real", seed=s, final=0.5 + d)
        for tags, mixed, synthetic in (("method", 0.6, 0.2), ("prompt", 0.59, 0.3)):
            write_results(folder / f"mixed_{tags}_s{s}.h5", source="mixed", seed=s, final=mixed + d, syn_tags=tags)
            write_results(folder / f"syn_{tags}_s{s}.h5", source="synthetic", seed=s, final=synthetic + d,
                          syn_tags=tags, follow_real=100)
    r = script("effect.py", folder, "--csv", tmp_path / "effect.csv")
    assert r.returncode == 0, r.stderr
    rows = pd.read_csv(tmp_path / "effect.csv").set_index("comparison")
    assert rows.loc["real + method vs real", "difference"] == pytest.approx(0.10)
    assert rows.loc["real + method vs real", "difference_std"] == pytest.approx(0.01 * 2 ** 0.5)
    assert rows.loc["real + method vs real", "verdict"] == "shown"
    assert rows.loc["real + method vs real + prompt", "verdict"] == "not shown"
    assert rows.loc["method vs prompt (generated only)", "verdict"] == "reversed"
    assert (rows["num_data"] == 100).all() and (rows["a_n"] == 3).all()
    assert "+10.00 ± 1.41 points, shown" in r.stdout
    # Without a real run there is nothing to compare with.
    for f in folder.glob("real_*.h5"):
        f.unlink()
    assert "no run on real images only" in bad("effect.py", folder)


def test_installed_copy_runs_from_its_own_folder(experiment, tmp_path):
    installed = tmp_path / "prefix" / "share" / "dinv" / "analysis"
    shutil.copytree(ANALYSIS, installed, ignore=shutil.ignore_patterns("__pycache__"))
    r = script("report.py", experiment["root"] / "results", "--out", tmp_path / "r", cwd=tmp_path, scripts=installed)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r" / "report.html").stat().st_size > 10000


def bad(name, *args):
    r = script(name, *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r.stderr


def test_bad_input_is_a_clear_error(experiment, tmp_path):
    store = experiment["root"] / "store.h5"
    # a results folder with no complete run
    empty = tmp_path / "empty"
    empty.mkdir()
    write_results(empty / "r.h5", complete=0)
    err = bad("report.py", empty, "--out", tmp_path / "o")
    assert str(empty) in err and "no complete run" in err
    err = bad("sample_complexity.py", tmp_path / "missing")
    assert str(tmp_path / "missing") in err
    # a store without the tag
    err = bad("report.py", experiment["root"] / "results", "--store", store, "--tag", "nope", "--out", tmp_path / "o")
    assert str(store) in err and "/samples/nope" in err and "a, b" in err
    err = bad("grids.py", store, "--tag", "nope", "--out", tmp_path / "o")
    assert "/samples/nope" in err
    # results of different datasets mixed: another test set, another format
    for key, extra in (("fingerprint.test", {"test_fp": "CIFAR-10:test:n=60:other"}), ("data.format", {"fmt": "stl10"})):
        mixed = tmp_path / f"mixed_{key}"
        mixed.mkdir()
        write_results(mixed / "a.h5")
        write_results(mixed / "b.h5", **extra)
        err = bad("tables.py", mixed, "--out", tmp_path / "o")
        assert str(mixed) in err and "mixes datasets" in err and key in err and "b.h5" in err
    # a results file that is not HDF5
    junk = tmp_path / "junk"
    junk.mkdir()
    write_results(junk / "good.h5")
    (junk / "broken.h5").write_text("not hdf5")
    err = bad("report.py", junk, "--out", tmp_path / "o")
    assert str(junk / "broken.h5") in err and "not an HDF5 file" in err
    # a store that is not HDF5, or not a dinv store
    err = bad("stage1.py", junk / "broken.h5", "--out", tmp_path / "o")
    assert "not an HDF5 file" in err
    err = bad("report.py", experiment["root"] / "results", "--store", junk / "good.h5", "--out", tmp_path / "o")
    assert "not a dinv store" in err and str(junk / "good.h5") in err


@pytest.mark.skipif(not pathlib.Path(DINV).exists(), reason=f"dinv binary not built ({DINV})")
def test_report_on_runs_of_the_real_dinv_train(tmp_path):
    def dinv(*args):
        r = subprocess.run([DINV, *map(str, args)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert r.returncode == 0, r.stderr
    dinv("data", "shapes", "--out", tmp_path / "data", "--train", 200, "--test", 50, "--seed", 0)
    small = [f"--data.root={tmp_path / 'data'}", "--data.resolution=16", "--data.real_bs=8", "--data.eval_bs=50",
             "--data.workers=0", "--train.steps=4", "--train.num_evals=2", "--train.warmup_steps=1",
             "--data.num_data=100", "--run.progress=off", "--run.threads=1"]
    for seed in (0, 1):
        dinv("train", *small, f"--run.seed={seed}", f"--train.run_name=s{seed}")
    r = script("report.py", tmp_path / "results", "--out", tmp_path / "report")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "report" / "table.csv")
    values = independent_table(tmp_path / "results")[("resnet18", "real", 100, 0)]
    assert len(table) == 1 and table["final_accuracy_count"][0] == 2
    assert table["final_accuracy_mean"][0] == pytest.approx(values[:, 0].mean(), abs=1e-12)
    assert table["final_accuracy_std"][0] == pytest.approx(values[:, 0].std(ddof=1), abs=1e-12)


def test_a_curve_keeps_its_colour_in_both_panels(tmp_path):
    # Generated-only and mixed runs appear in both panels, real runs only in
    # the first: each curve's colour must not depend on which panel drew it.
    sys.path.insert(0, str(ANALYSIS))
    try:
        import sample_complexity
    finally:
        sys.path.remove(str(ANALYSIS))
    folder = tmp_path / "colours"
    folder.mkdir()
    for s in SEEDS:
        write_results(folder / f"real_s{s}.h5", source="real", seed=s, final=0.5)
        for tags in ("method", "prompt"):
            write_results(folder / f"mixed_{tags}_s{s}.h5", source="mixed", seed=s, final=0.6, syn_tags=tags)
            write_results(folder / f"syn_{tags}_s{s}.h5", source="synthetic", seed=s, final=0.3, syn_tags=tags,
                          follow_real=100)
    fig, panels = sample_complexity.figure(sample_complexity.summarise(sample_complexity.load(folder)))
    assert panels == ["real", "synthetic"]
    colours = []
    for ax in fig.axes:
        handles, labels = ax.get_legend_handles_labels()
        colours.append({label: handle[0].get_color() for handle, label in zip(handles, labels)})
    shared = set(colours[0]) & set(colours[1])
    assert len(shared) == 4, colours
    assert all(colours[0][label] == colours[1][label] for label in shared), colours
    assert len(set(colours[0].values())) == len(colours[0])  # distinct curves, distinct colours
