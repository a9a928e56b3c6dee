"""Stores with the layout `dinv generate` writes (docs/architecture.md,
/samples/<tag>), made with h5py for sample-selection tests: provenance in
/samples/<tag>/source, the /samples/<tag>/done ledger, and the real
dataset's fingerprint in /source."""
import subprocess

import h5py
import numpy as np

SHAPES = ["disk", "square", "triangle", "plus", "ring", "diamond", "frame", "x_cross", "bars", "crescent"]


def dataset_fingerprint(dinv, root):
    """The fingerprint `dinv data info` prints for a CIFAR-format folder (what embed records)."""
    out = subprocess.run([dinv, "data", "info", "--data.format=cifar10", f"--data.root={root}"],
                         capture_output=True, text=True, check=True).stdout
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("fingerprint: "))


def write_store(path, fingerprint, tags, seed=0, chunk_size=64, unfinished=()):
    """tags: {name: (sources, num_samples)}, rows ordered by source then sample
    (source -1: per-class prompt samples). Chunks listed in `unfinished` stay 0
    in the ledger."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        src = f.create_group("source")
        src.attrs["class_names"] = SHAPES
        if fingerprint is not None:
            src.attrs["dataset_fingerprint"] = fingerprint
        for tag, (sources, per) in tags.items():
            rows = np.repeat(np.asarray(sources, np.int64), per)
            g = f.create_group(f"samples/{tag}")
            g.attrs["settings"] = f"mode=test tag={tag}"
            g["images"] = rng.integers(0, 256, (len(rows), 16, 16, 3), dtype=np.uint8)
            g["label"] = np.where(rows >= 0, rows, np.arange(len(rows))) % 10
            g["source"] = rows
            chunks = -(-len(rows) // chunk_size)
            done = np.ones(chunks, np.uint8)
            done[list(unfinished)] = 0
            g["done"] = done
            g.attrs["chunk_size"] = chunk_size
            g.attrs["num_samples"] = per
