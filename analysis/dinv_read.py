"""Readers shared by the analysis scripts: results files of `dinv train`, the
experiment store, and the real images of the dataset files a store names.

The layouts are those of docs/architecture.md (results: src/classify/results.cpp;
store: src/inversion/embed.cpp, src/generation/generate.cpp). Bad input raises
InputError with a message naming the file or folder; the scripts print it and
exit with code 2, as dinv does for bad input.
"""
import configparser
import pathlib
import re
import sys

import h5py
import numpy as np
import pandas as pd

RESULTS_SCHEMA = "dinv-train-results/1"
STORE_SCHEMA_VERSION = 1


class InputError(Exception):
    """Bad input: a message for the user; exit code 2."""


def run_main(main):
    """Run a script's main(), turning InputError into a message and exit code 2."""
    try:
        main()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def text(value):
    """An HDF5 string attribute (str or bytes) as str."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def strings(value):
    """An HDF5 str[] attribute as a list of str."""
    return [text(v) for v in np.atleast_1d(value)]


def open_hdf5(path, what):
    """Open an HDF5 file for reading, or InputError naming it."""
    path = pathlib.Path(path)
    if not path.exists():
        raise InputError(f"{what} '{path}' does not exist")
    if not path.is_file():
        raise InputError(f"{what} '{path}' is not a file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{what} '{path}' is not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"{what} '{path}' cannot be read as HDF5: {e}") from e


# ----------------------------------------------------------------------------
# Results files

def count_from_fingerprint(fingerprint):
    """The image count n= of a dataset fingerprint (the base dataset's, before any '|subset')."""
    match = re.search(r":n=(\d+)", text(fingerprint).split("|")[0])
    return int(match.group(1)) if match else 0


def real_images(attrs, num_data):
    """Real images the run trained on: num_data, or with num_data = 0 (the whole
    dataset) the n= of the real data's fingerprint; 0 for synthetic-only runs."""
    if "fingerprint.real" not in attrs:
        return 0
    if num_data > 0:
        return num_data
    return count_from_fingerprint(attrs["fingerprint.real"])


def synthetic_images(attrs):
    """Synthetic images the run drew from: selection.synthetic_count (the
    samples its selection kept), else n= of fingerprint.synthetic; 0 for
    real-only runs."""
    if "selection.synthetic_count" in attrs:
        return int(attrs["selection.synthetic_count"])
    return count_from_fingerprint(attrs["fingerprint.synthetic"]) if "fingerprint.synthetic" in attrs else 0


def synthetic_amount(attrs, syn_bs):
    """The amount of synthetic data as sweep.syn_amount names it: kN (syn.per_source),
    tN (syn.total), kNtM (both), 'all'; '' for real-only runs."""
    if syn_bs == 0:
        return ""
    per, total = int(attrs.get("selection.per_source", 0)), int(attrs.get("selection.total", 0))
    return (f"k{per}" if per else "") + (f"t{total}" if total else "") or "all"


def selection(attrs):
    """What a run trained on (docs/architecture.md, results files): fingerprints
    and counts of its real and synthetic selections, the tags, follow_real."""
    return {
        "real_selection": text(attrs.get("selection.real_fingerprint", "")),
        "real_count": int(attrs.get("selection.real_count", 0)),
        "synthetic_selection": text(attrs.get("selection.synthetic_fingerprint", "")),
        "synthetic_count": int(attrs.get("selection.synthetic_count", 0)),
        "follow_real": bool(int(attrs.get("selection.follow_real", 0))),
    }


def selection_indices(path):
    """The indices a run trained on: (real dataset indices or None, {tag: rows of /samples/<tag>})."""
    with open_hdf5(path, "results file") as f:
        sel = f["selection"] if "selection" in f else {}
        real = sel["real_index"][:] if "real_index" in sel else None
        rows = {t: sel["synthetic"][t][:] for t in sel["synthetic"]} if "synthetic" in sel else {}
    return real, rows


def parse_config(ini, where):
    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read_string(ini)
    except configparser.Error as e:
        raise InputError(f"{where}: attribute 'config' is not INI text: {e}") from e
    return config


def read_run(path):
    """One results file as a dict, or None when the run is not complete."""
    path = pathlib.Path(path)
    with open_hdf5(path, "results file") as f:
        attrs = f.attrs
        if int(attrs.get("complete", 0)) != 1:
            return None
        schema = text(attrs.get("schema", ""))
        if schema != RESULTS_SCHEMA:
            raise InputError(f"results file '{path}': schema '{schema}', expected '{RESULTS_SCHEMA}' "
                             "(not written by this version of dinv train)")
        for name in ("config", "final_accuracy", "best_accuracy", "steps"):
            if name not in attrs:
                raise InputError(f"results file '{path}': attribute '{name}' is missing")
        config = parse_config(text(attrs["config"]), f"results file '{path}'")

        def get(section, key, fallback):
            return config.get(section, key, fallback=fallback)

        real_bs, syn_bs = int(get("data", "real_bs", 128)), int(get("data", "syn_bs", 0))
        num_data = int(get("data", "num_data", 0))
        picked = selection(attrs)
        # Synthetic runs that followed the real subset stand on its images too.
        behind = picked["real_count"] if picked["follow_real"] or real_bs > 0 else 0
        return {
            "file": path.name,
            "run": text(attrs.get("run", path.stem)),
            "dataset": get("data", "format", "unknown"),
            "test_fingerprint": text(attrs.get("fingerprint.test", "")),
            "model": get("train", "model", "unknown"),
            "source": "real" if syn_bs == 0 else "synthetic" if real_bs == 0 else "mixed",
            "num_data": behind or real_images(attrs, num_data),
            "num_synthetic": synthetic_images(attrs),
            "syn_tags": text(attrs.get("selection.synthetic_tags", get("syn", "tags", ""))) if syn_bs > 0 else "",
            "syn_amount": synthetic_amount(attrs, syn_bs),
            **picked,
            "seed": int(get("run", "seed", 0)),
            "final_accuracy": float(attrs["final_accuracy"]),
            "best_accuracy": float(attrs["best_accuracy"]),
            "final_loss": float(attrs.get("final_loss", np.nan)),
            "steps": int(attrs["steps"]),
            "world_size": int(attrs.get("world_size", 1)),
            "device": text(attrs.get("device", "")),
            "train_seconds": float(attrs.get("train_seconds", np.nan)),
            "eval_seconds": float(attrs.get("eval_seconds", np.nan)),
            "images_per_second": float(attrs.get("images_per_second", np.nan)),
        }


def read_history(path):
    """Training history of one results file: (history DataFrame, eval DataFrame)."""
    with open_hdf5(path, "results file") as f:
        history = pd.DataFrame({k: f[f"history/{k}"][:] for k in ("step", "lr", "train_loss")})
        evals = pd.DataFrame({k: f[f"eval/{k}"][:] for k in ("step", "accuracy", "loss")})
    return history, evals


def load_results(folder):
    """Every complete run of a results folder as a DataFrame (one row per run).

    InputError when the folder is missing, holds no complete run, holds a file
    that is not HDF5, or mixes datasets (data.format or fingerprint.test differ)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise InputError(f"results folder '{folder}' does not exist or is not a folder")
    files = sorted(folder.glob("*.h5"))
    rows = [r for r in (read_run(p) for p in files) if r is not None]
    if not rows:
        partial = len(list(folder.glob("*.h5.tmp")))
        detail = f"{len(files)} .h5 file(s), none with complete = 1" if files else "no .h5 files"
        if partial:
            detail += f"; {partial} unfinished .h5.tmp file(s)"
        raise InputError(f"results folder '{folder}' has no complete run ({detail}): "
                         "run `dinv train` or `dinv sweep` with train.results_dir pointing there first")
    runs = pd.DataFrame(rows)
    first = runs.iloc[0]
    for _, row in runs.iterrows():
        for key, name in (("dataset", "data.format"), ("test_fingerprint", "fingerprint.test")):
            if row[key] != first[key]:
                raise InputError(
                    f"results folder '{folder}' mixes datasets: {first['file']} has {name} = '{first[key]}' but "
                    f"{row['file']} has {name} = '{row[key]}'; put the results of each dataset in their own folder")
    return runs


def summarise(runs, keys=("model", "source", "syn_tags", "syn_amount", "num_data", "num_synthetic")):
    """Mean, standard deviation (over seeds, ddof 1) and count of the final and
    best test accuracy per group of runs."""
    keys = list(keys)
    grouped = runs.groupby(keys)
    table = grouped[["final_accuracy", "best_accuracy"]].agg(["mean", "std", "count"])
    table.columns = ["_".join(c) for c in table.columns]
    table = table.reset_index()
    seeds = grouped["seed"].apply(lambda s: ",".join(str(v) for v in sorted(s))).reset_index(drop=True)
    table["seeds"] = seeds.values
    return table


# ----------------------------------------------------------------------------
# The store

def open_store(path):
    """Open a dinv store for reading; InputError unless it is one."""
    f = open_hdf5(path, "store")
    if "schema_version" not in f.attrs:
        f.close()
        raise InputError(f"store '{path}' is an HDF5 file but not a dinv store (no root attribute 'schema_version')")
    version = int(f.attrs["schema_version"])
    if version != STORE_SCHEMA_VERSION:
        f.close()
        raise InputError(f"store '{path}': schema_version {version}, these scripts read version {STORE_SCHEMA_VERSION}")
    return f


def store_tags(f):
    return sorted(f["samples"].keys()) if "samples" in f else []


def require_tag(f, tag):
    tags = store_tags(f)
    if tag not in tags:
        raise InputError(f"store '{f.filename}' has no /samples/{tag} (tags in the store: "
                         f"{', '.join(tags) if tags else 'none'}): run `dinv generate` with generate.tag={tag} first")
    return f[f"samples/{tag}"]


METRICS = ("fid", "precision", "recall", "density", "coverage", "label_agreement", "leaked_test_images",
           "own_source_share", "mean_source_distance")


def store_metrics(f):
    """`dinv evaluate`'s /metrics/<tag>: one row per tag (empty without any)."""
    rows = []
    for tag in sorted(f["metrics"]) if "metrics" in f else []:
        attrs = f["metrics"][tag].attrs
        rows.append({"tag": tag, **{k: float(attrs[k]) for k in METRICS if k in attrs},
                     "classifier": text(attrs.get("classifier_fingerprint", ""))})
    return pd.DataFrame(rows)


def class_names(f):
    if "source" in f and "class_names" in f["source"].attrs:
        return strings(f["source"].attrs["class_names"])
    return None


def done_rows(done, total, chunk):
    """Boolean mask of the rows [0, total) whose ledger unit (chunks of `chunk` rows) is done."""
    done = np.asarray(done).astype(bool)
    unit = np.arange(total) // max(int(chunk), 1)
    unit = np.minimum(unit, len(done) - 1) if len(done) else unit
    return done[unit] if len(done) else np.zeros(total, bool)


def finished_samples(f, tag):
    """Rows of /samples/<tag> that are stored (ledger done): dict of arrays
    label, source, partner, seed, row; images stay in the file (read by row)."""
    g = require_tag(f, tag)
    for name in ("images", "label", "source", "partner"):
        if name not in g:
            raise InputError(f"store '{f.filename}' /samples/{tag} has no dataset '{name}' (damaged tag?)")
    total = g["label"].shape[0]
    chunk = int(g.attrs.get("chunk_size", total or 1))
    mask = done_rows(g["done"][:], total, chunk) if "done" in g else np.ones(total, bool)
    out = {name: g[name][:][mask] for name in ("label", "source", "partner") if name in g}
    out["seed"] = g["seed"][:][mask] if "seed" in g else np.zeros(int(mask.sum()), np.int64)
    out["row"] = np.nonzero(mask)[0]
    return g, out


def settings_value(settings, key):
    """A value of a 'k=v k=v' settings text, or None."""
    match = re.search(rf"(?:^|\s){re.escape(key)}=(\S+)", text(settings))
    return match.group(1) if match else None


def embedding_losses(f):
    """Stage 1 losses of the embedded images whose unit is done: DataFrame of
    image (row), group, label, loss; InputError when the store has none."""
    if "embeddings" not in f or "loss" not in f["embeddings"]:
        raise InputError(f"store '{f.filename}' has no /embeddings/loss: run `dinv embed` first")
    e = f["embeddings"]
    loss = e["loss"][:].astype(np.float64)
    n = loss.shape[0]
    group_size = int(e.attrs.get("group_size", n or 1))
    pack = int(settings_value(e.attrs.get("settings", ""), "pack_units") or 1)
    group = np.arange(n) // group_size
    mask = done_rows(e["done"][:], n, group_size * pack) if "done" in e else np.ones(n, bool)
    labels = f["source/label"][:] if "source" in f and "label" in f["source"] else np.full(n, -1)
    if not mask.any():
        raise InputError(f"store '{f.filename}': no embedding unit is done yet (/embeddings/done all 0)")
    return pd.DataFrame({"image": np.arange(n)[mask], "group": group[mask], "label": labels[mask], "loss": loss[mask]})


# ----------------------------------------------------------------------------
# Real images from the dataset files the store was embedded from

def resolve_root(root, store_path):
    """A data root from a stored configuration: absolute, or relative to the
    store's folder (dinv runs where the store is, as the demo does), or to the
    current folder."""
    root = pathlib.Path(root)
    if root.is_absolute():
        return root
    for base in (pathlib.Path(store_path).resolve().parent, pathlib.Path.cwd()):
        if (base / root).exists():
            return base / root
    return pathlib.Path(store_path).resolve().parent / root


def _cifar(files, label_bytes, label_byte):
    images, labels = [], []
    for path in files:
        raw = np.fromfile(path, np.uint8)
        record = label_bytes + 3072
        if raw.size == 0 or raw.size % record:
            raise InputError(f"'{path}': {raw.size} bytes is not a multiple of the {record}-byte record")
        raw = raw.reshape(-1, record)
        labels.append(raw[:, label_byte].astype(np.int64))
        images.append(raw[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.concatenate(images), np.concatenate(labels)


def read_dataset(fmt, root, split, labels="fine"):
    """Images (uint8 [N, H, W, 3] or a list of files for folders, decoded on
    access) and labels of a dataset, as dinv reads it (src/data/)."""
    root = pathlib.Path(root)
    if fmt == "cifar10":
        if split == "test":
            files = [root / "test_batch.bin"]
        else:
            files, k = [], 1
            while (root / f"data_batch_{k}.bin").exists():
                files.append(root / f"data_batch_{k}.bin")
                k += 1
        if not files or not files[0].exists():
            raise InputError(f"CIFAR-10 files missing in '{root}'")
        return _cifar(files, 1, 0)
    if fmt == "cifar100":
        return _cifar([root / f"{split}.bin"], 2, 0 if labels == "coarse" else 1)
    if fmt == "stl10":
        y = np.fromfile(root / f"{split}_y.bin", np.uint8).astype(np.int64) - 1
        x = np.fromfile(root / f"{split}_X.bin", np.uint8).reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)
        return x, y
    if fmt == "medmnist":
        with np.load(root) as z:
            x, y = z[f"{split}_images"], z[f"{split}_labels"].reshape(-1).astype(np.int64)
        if x.ndim == 3:
            x = np.repeat(x[..., None], 3, axis=3)
        return x, y
    if fmt == "folder":
        base = root / split if split and (root / split).is_dir() else root
        names = sorted(d.name for d in base.iterdir() if d.is_dir())
        files, ys = [], []
        for label, name in enumerate(names):
            members = sorted(str(p) for p in (base / name).iterdir()
                             if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            files += members
            ys += [label] * len(members)
        return files, np.asarray(ys, np.int64)
    raise InputError(f"dataset format '{fmt}' is not readable by the analysis scripts")


class SourceImages:
    """The real images of a store's /source, read from the dataset files named
    in the store's configuration ([data] format, root, split; or data_root).
    `available` is False, with `reason`, when they cannot be read."""

    def __init__(self, f, data_root=None):
        self.available, self.reason, self.images = False, "", None
        config = parse_config(text(f.attrs.get("config", "")), f"store '{f.filename}'")
        fmt = config.get("data", "format", fallback="cifar10")
        split = config.get("data", "split", fallback="train")
        root = data_root or config.get("data", "root", fallback="")
        if not root:
            self.reason = "the store's configuration names no data.root"
            return
        root = resolve_root(root, f.filename) if data_root is None else pathlib.Path(root)
        try:
            self.images, _ = read_dataset(fmt, root, split, config.get("data", "labels", fallback="fine"))
        except (InputError, OSError, ValueError, KeyError) as e:
            self.reason = f"cannot read the {fmt} {split} images at '{root}' ({e})"
            return
        stored = text(f["source"].attrs.get("dataset_fingerprint", "")) if "source" in f else ""
        expected = count_from_fingerprint(stored)
        if expected and expected != len(self.images):
            self.reason = (f"'{root}' holds {len(self.images)} {split} images, the store was embedded from "
                           f"{expected} ({stored.split(':n=')[0]})")
            self.images = None
            return
        self.index = f["source/index"][:] if "source" in f and "index" in f["source"] else None
        self.available, self.root = True, root

    def image(self, dataset_index):
        """The dataset image of a dataset index, uint8 [H, W, 3]."""
        if isinstance(self.images, list):
            from PIL import Image
            with Image.open(self.images[dataset_index]) as im:
                return np.asarray(im.convert("RGB"))
        return self.images[dataset_index]


def script_folder():
    """The folder of the analysis scripts (for sibling imports from an installed copy)."""
    return pathlib.Path(__file__).resolve().parent
