#!/usr/bin/env python3
"""Sample-complexity curves and a table from dinv training results.

Reads every results/<run>.h5 written by `dinv train` / `dinv sweep`, groups
runs by (model, source, num_data) and reports the mean and standard deviation
over seeds of the final and best test accuracy:

    python analysis/sample_complexity.py results/ --out curves.png --table table.csv
"""
import argparse
import configparser
import pathlib
import re

import h5py
import numpy as np
import pandas as pd


def real_images(attrs, num_data):
    """Real images the run trained on: num_data, or with num_data = 0 (the
    whole dataset) the n= of the real data's fingerprint; 0 for synthetic-only runs."""
    if num_data > 0:
        return num_data
    match = re.search(r":n=(\d+)", str(attrs.get("fingerprint.real", "")).split("|")[0])
    return int(match.group(1)) if match else 0


def read_run(path):
    with h5py.File(path, "r") as f:
        if int(f.attrs.get("complete", 0)) != 1:
            return None
        config = configparser.ConfigParser()
        config.read_string(f.attrs["config"])
        real_bs, syn_bs = config.getint("data", "real_bs"), config.getint("data", "syn_bs")
        return {
            "run": f.attrs["run"],
            "model": config.get("train", "model"),
            "source": "real" if syn_bs == 0 else "synthetic" if real_bs == 0 else "mixed",
            "num_data": real_images(f.attrs, config.getint("data", "num_data")),
            "seed": config.getint("run", "seed"),
            "final_accuracy": float(f.attrs["final_accuracy"]),
            "best_accuracy": float(f.attrs["best_accuracy"]),
            "steps": int(f.attrs["steps"]),
        }


def load(folder):
    rows = [r for p in sorted(pathlib.Path(folder).glob("*.h5")) if (r := read_run(p)) is not None]
    if not rows:
        raise SystemExit(f"no complete results files in {folder}")
    return pd.DataFrame(rows)


def summarise(runs):
    grouped = runs.groupby(["model", "source", "num_data"])
    table = grouped[["final_accuracy", "best_accuracy"]].agg(["mean", "std", "count"])
    table.columns = ["_".join(c) for c in table.columns]
    return table.reset_index()


def plot(table, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for (model, source), part in table.groupby(["model", "source"]):
        part = part.sort_values("num_data")
        ax.errorbar(part["num_data"], 100 * part["final_accuracy_mean"], yerr=100 * part["final_accuracy_std"].fillna(0),
                    marker="o", capsize=3, label=f"{model} {source}")
    if (table["num_data"] > 0).all():
        ax.set_xscale("log")  # sample-complexity curves span decades; a 0 (synthetic only) cannot be on a log axis
    ax.set_xlabel("real images (num_data)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=150)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="folder of results/<run>.h5 files")
    parser.add_argument("--out", help="figure file (png, pdf)")
    parser.add_argument("--table", help="CSV file for the table")
    args = parser.parse_args()
    table = summarise(load(args.results))
    print(table.to_string(index=False))
    if args.table:
        table.to_csv(args.table, index=False)
    if args.out:
        plot(table, args.out)


if __name__ == "__main__":
    main()
