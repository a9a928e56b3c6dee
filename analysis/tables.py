#!/usr/bin/env python3
"""The paper's tables from dinv results folders, as Markdown and CSV.

One results folder per dataset (several may be given); per dataset, model,
source (real, synthetic, mixed), synthetic tags and amount (`syn.tags`,
`sweep.syn_amount`) and size (real images, synthetic images): the
final and best test accuracy, mean and standard deviation over the runs' seeds
(ddof 1; n = number of runs).

    python analysis/tables.py results/cifar10 results/stl10 --out tables/

writes tables/table.csv (accuracies as fractions, full precision) and
tables/table.md (percent, `mean ± std (n)`, plus one table per dataset with the
sources side by side, as the paper lays them out).
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402

import dinv_read  # noqa: E402
from dinv_read import InputError  # noqa: E402

KEYS = ["dataset", "model", "source", "syn_tags", "syn_amount", "num_data", "num_synthetic"]
SOURCES = ["real", "synthetic", "mixed"]


def load_folders(folders):
    """Runs of several results folders, one dataset each; the dataset column is
    data.format, or format and folder name where two folders share a format."""
    parts = [dinv_read.load_results(folder).assign(folder=str(folder)) for folder in folders]
    runs = pd.concat(parts, ignore_index=True)
    formats = {}
    for part in parts:
        formats.setdefault(part["dataset"].iloc[0], set()).add(part["test_fingerprint"].iloc[0])
    if any(len(fps) > 1 for fps in formats.values()):
        runs["dataset"] = runs["dataset"] + " (" + runs["folder"].map(lambda p: pathlib.Path(p).name) + ")"
    return runs


def table(runs):
    """Long table: one row per dataset x model x source x size."""
    t = dinv_read.summarise(runs, KEYS)
    t["source"] = pd.Categorical(t["source"], SOURCES + sorted(set(t["source"]) - set(SOURCES)), ordered=True)
    return t.sort_values(KEYS).reset_index(drop=True).assign(source=lambda d: d["source"].astype(str))


def cell(mean, std, count):
    """`mean ± std (n)` in percent; no ± for a single run."""
    if count < 2 or pd.isna(std):
        return f"{100 * mean:.2f} (n={int(count)})"
    return f"{100 * mean:.2f} ± {100 * std:.2f} (n={int(count)})"


def markdown_table(frame):
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def long_frame(t):
    """The long table for reading: sizes, `mean ± std (n)` in percent, seeds."""
    return pd.DataFrame({
        "dataset": t["dataset"], "model": t["model"], "source": t["source"],
        "synthetic tags": t["syn_tags"], "amount": t["syn_amount"],
        "real images": t["num_data"], "synthetic images": t["num_synthetic"],
        "final accuracy (%)": [cell(*v) for v in zip(t["final_accuracy_mean"], t["final_accuracy_std"],
                                                     t["final_accuracy_count"])],
        "best accuracy (%)": [cell(*v) for v in zip(t["best_accuracy_mean"], t["best_accuracy_std"],
                                                    t["best_accuracy_count"])],
        "seeds": t["seeds"],
    })


def column_name(source, tags, amount, count):
    """'mixed' or 'mixed method k2 (400 syn.)': tags and amount only where synthetic images are used."""
    words = [source] + ([tags, amount] if count else [])
    return " ".join(w for w in words if w) + (f" ({count} syn.)" if count else "")


def wide_frame(t, dataset):
    """One dataset: rows model x real images, one column per source, synthetic
    tags, amount and synthetic-image count (final accuracy)."""
    part = t[t["dataset"] == dataset].copy()
    part["cell"] = [cell(*v) for v in zip(part["final_accuracy_mean"], part["final_accuracy_std"],
                                          part["final_accuracy_count"])]
    rank = {s: i for i, s in enumerate(SOURCES)}
    keys = zip(part["source"], part["syn_tags"], part["syn_amount"], part["num_synthetic"])
    columns = sorted({(rank.get(s, len(SOURCES)), s, tags, amount, n) for s, tags, amount, n in keys})
    names = {c[1:]: column_name(*c[1:]) for c in columns}
    rows = []
    for (model, real), group in part.groupby(["model", "num_data"], sort=True):
        row = {"model": model, "real images": real if real else "0 (synthetic only)"}
        row.update({name: "" for name in names.values()})
        for _, r in group.iterrows():
            row[names[(r["source"], r["syn_tags"], r["syn_amount"], r["num_synthetic"])]] = r["cell"]
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "real images", *names.values()])


NOTE = ("Mean ± standard deviation over seeds (ddof 1), in percent; n = runs. "
        "Real images: `data.num_data` (or the whole split); synthetic images: every sample of `syn.tags`.")


def markdown(t, level="##"):
    out = [f"{level} Final test accuracy per dataset, model, source and size", "", NOTE, "",
           markdown_table(long_frame(t))]
    for dataset in t["dataset"].unique():
        out += ["", f"{level} {dataset}: final test accuracy (%) by source", "", markdown_table(wide_frame(t, dataset))]
    return "\n".join(out) + "\n"


def write(t, out_dir):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t.to_csv(out_dir / "table.csv", index=False)
    (out_dir / "table.md").write_text(markdown(t), encoding="utf-8")
    return out_dir / "table.md", out_dir / "table.csv"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="results folders, one per dataset")
    parser.add_argument("--out", required=True, help="folder for table.md and table.csv")
    args = parser.parse_args()
    t = table(load_folders(args.results))
    md, csv = write(t, args.out)
    print(markdown(t))
    print(f"wrote {md} and {csv}")


if __name__ == "__main__":
    dinv_read.run_main(main)
