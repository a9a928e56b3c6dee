#!/usr/bin/env python3
"""Sample-complexity curves and a table from dinv training results.

Reads every results/<run>.h5 written by `dinv train` / `dinv sweep`, groups
runs by (model, source, synthetic tags, synthetic amount, real images,
synthetic images) and reports the mean and standard deviation over seeds
(n runs) of the final and best test accuracy:

    python analysis/sample_complexity.py results/ --out curves.png --table table.csv

The figure has one curve per model x source x synthetic tags x amount (kN:
syn.per_source, tN: syn.total) with error bars of one standard deviation over
seeds (n at each point): accuracy against the number of real images (the real
subset behind a run: the images it trained on, or, with syn.follow_real, those
its synthetic samples came from) and, when runs used synthetic images, against
the number of synthetic images they trained on (selection.synthetic_count).
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import dinv_read  # noqa: E402  (sibling module, found from the script's own folder)
from dinv_read import InputError, real_images, summarise  # noqa: E402,F401  (real_images: kept for importers)


def load(folder):
    return dinv_read.load_results(folder)


def _axis(ax, table, x, xlabel, line_keys, label, colors):
    """One panel: a curve per line_keys group, mean +- std over seeds, n at each point.
    `colors` maps a curve's label to its colour, shared by the panels so that a
    curve keeps its colour in both."""
    for keys, part in table.groupby(line_keys):
        part = part.sort_values(x)
        name = label(dict(zip(line_keys, keys)))
        color = colors.setdefault(name, f"C{len(colors) % 10}")
        bar = ax.errorbar(part[x], 100 * part["final_accuracy_mean"], yerr=100 * part["final_accuracy_std"].fillna(0),
                          marker="o", capsize=3, label=name, color=color)
        for _, row in part.iterrows():
            ax.annotate(f"n={int(row['final_accuracy_count'])}", (row[x], 100 * row["final_accuracy_mean"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=6, color=bar[0].get_color())
    if len(table) and (table[x] > 0).all() and table[x].max() > 2 * table[x].min():
        ax.set_xscale("log")  # sample-complexity curves span decades
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


CURVE_KEYS = ["model", "source", "syn_tags", "syn_amount"]


def curve_label(k):
    """'resnet18 mixed method k2' (tags and amount only for runs with synthetic images)."""
    words = [k["model"], k["source"], k.get("syn_tags", ""), k.get("syn_amount", "")]
    label = " ".join(w for w in words if w)
    return label + (f" ({k['num_data']} real)" if k.get("num_data") else "")


def synthetic_line_keys(part):
    """Curves of the synthetic panel: one per CURVE_KEYS group, split by the number
    of real images where one synthetic count has several (mixed runs of a sweep)."""
    ambiguous = (part.groupby(CURVE_KEYS + ["num_synthetic"])["num_data"].nunique() > 1).any()
    return CURVE_KEYS + ["num_data"] if ambiguous else CURVE_KEYS


def figure(table, title=None):
    """The sample-complexity figure (matplotlib, Agg) and the panels drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vs_real = table[table["num_data"] > 0]
    vs_syn = table[table["num_synthetic"] > 0]
    panels = [p for p, part in (("real", vs_real), ("synthetic", vs_syn)) if len(part)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    colors = {}
    for ax, panel in zip(axes[0], panels):
        if panel == "real":
            _axis(ax, vs_real, "num_data", "real images", CURVE_KEYS, curve_label, colors)
            ax.set_title("against real images (trained on or followed)", fontsize=9)
        else:
            keys = synthetic_line_keys(vs_syn)
            _axis(ax, vs_syn, "num_synthetic", "synthetic images trained on", keys, curve_label, colors)
            ax.set_title("against synthetic images (synthetic, mixed)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, panels


def plot(table, out, title=None):
    """Writes the sample-complexity figure to `out`; returns the panels drawn."""
    fig, panels = figure(table, title)
    import matplotlib.pyplot as plt

    fig.savefig(out, dpi=150)
    plt.close(fig)
    return panels


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
    dinv_read.run_main(main)
