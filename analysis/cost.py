#!/usr/bin/env python3
"""What the stages cost: the timing records of `dinv pretrain`, `embed` and
`generate` and the training time of the results files.

    python analysis/cost.py STORE [--out DIR]

Every run of a stage appends one JSON line to OUTPUT.timings.jsonl (beside
the store for embed and generate, beside the generator folder for pretrain):
wall seconds, ranks, threads per rank, device, and the units finished before
and after the run. A stage resumed after a stop has several lines; they add
up. Per stage and output this writes `cost.csv` (and prints it):

    runs           lines (runs of the stage, resumed ones included)
    seconds        wall seconds, summed over the runs
    rank_seconds   seconds x ranks, summed (the compute bought)
    units_done     units finished by these runs
    images         images the stage covers (sources for embed, samples for generate)
    rank_seconds_per_image
                   rank_seconds / (images x units_done / units_total): the
                   cost of one image, start-up and model loading included

and `time_to_n.png`: the rank-hours to produce N synthetic images per
generate tag, the embedding of the source images included once, extrapolated
linearly from the measured cost per image (the paper's time-to-N figure).
Bad input (a timings file with a line that is not a JSON object, or without
the fields above) stops with exit code 2 naming the file and line.
"""
import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import dinv_read  # noqa: E402
from dinv_read import InputError  # noqa: E402

FIELDS = ("stage", "seconds", "ranks")


def timings_path(output):
    return pathlib.Path(f"{output}.timings.jsonl")


def read_timings(output):
    """The timing lines of an output (a store or a generator folder); an
    empty frame when it has none."""
    path = timings_path(output)
    if not path.exists():
        return pd.DataFrame(columns=[*FIELDS, "target"])
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{number}: not JSON ({e.msg})")
        if not isinstance(row, dict) or any(k not in row for k in FIELDS):
            raise InputError(f"{path}:{number}: a timing record needs the fields {', '.join(FIELDS)}")
        rows.append(row)
    return pd.DataFrame(rows)


def stage_cost(timings):
    """One row per (stage, target): see the module's docstring."""
    if timings.empty:
        return pd.DataFrame(columns=["stage", "target", "runs", "seconds", "rank_seconds", "units_done", "units_total",
                                     "images", "rank_seconds_per_image"])
    t = timings.copy()
    for column in ("units_done_before", "units_done_after", "units_total", "images"):
        if column not in t:
            t[column] = np.nan
    t["rank_seconds"] = t["seconds"] * t["ranks"]
    t["units_done"] = t["units_done_after"] - t["units_done_before"]
    g = t.groupby(["stage", "target"], sort=False)
    cost = g.agg(runs=("seconds", "count"), seconds=("seconds", "sum"), rank_seconds=("rank_seconds", "sum"),
                 units_done=("units_done", "sum"), units_total=("units_total", "max"),
                 images=("images", "max")).reset_index()
    share = cost["units_done"] / cost["units_total"]
    cost["rank_seconds_per_image"] = cost["rank_seconds"] / (cost["images"] * share)
    cost.loc[~(share > 0), "rank_seconds_per_image"] = np.nan
    return cost


def time_to_n(cost, n):
    """Rank-hours to make n synthetic images per generate tag: the embedding
    of the sources once, plus n times the per-image generation cost."""
    embed = cost[cost["stage"] == "embed"]["rank_seconds"].sum()
    gen = cost[(cost["stage"] == "generate") & cost["rank_seconds_per_image"].notna()]
    return {row["target"].rsplit("/", 1)[-1]: (embed + n * row["rank_seconds_per_image"]) / 3600.0
            for _, row in gen.iterrows()}


def time_to_n_figure(cost, out, largest=None):
    """Returns False (and draws nothing) without a timed generate run."""
    gen = cost[(cost["stage"] == "generate") & cost["rank_seconds_per_image"].notna()]
    if gen.empty:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    largest = largest or int(10 * gen["images"].max())
    n = np.linspace(0, largest, 50)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for tag, hours in time_to_n(cost, n).items():
        ax.plot(n, hours, label=tag)
    measured = gen["images"] * gen["units_done"] / gen["units_total"]
    ax.axvline(measured.max(), color="grey", ls=":", lw=1, label="measured up to here")
    ax.set_xlabel("synthetic images")
    ax.set_ylabel("rank-hours")
    ax.set_title("time to N images: embedding once + N x generation per image", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="a store (or a generator folder) with OUTPUT.timings.jsonl beside it")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    args = parser.parse_args()
    timings = read_timings(args.output)
    if timings.empty:
        raise InputError(f"{timings_path(args.output)}: not found or empty (dinv stages write it beside their output)")
    cost = stage_cost(timings)
    args.out.mkdir(parents=True, exist_ok=True)
    cost.to_csv(args.out / "cost.csv", index=False)
    print(cost.to_string(index=False))
    if time_to_n_figure(cost, args.out / "time_to_n.png"):
        print(f"figure: {args.out / 'time_to_n.png'}")


if __name__ == "__main__":
    dinv_read.run_main(main)
