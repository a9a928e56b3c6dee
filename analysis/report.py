#!/usr/bin/env python3
"""One report of an experiment: a results folder and, optionally, its store.

    python analysis/report.py results/ --store store.h5 --out report/

writes report/report.html (self-contained: figures embedded as base64 PNG) and
report/report.md (figures beside it as PNG files), with

- the runs read (complete ones; unfinished files are counted, not used),
- sample-complexity curves (sample_complexity.py) and training histories,
- the tables, mean ± std over seeds (tables.py; also table.md, table.csv),
- cost: training per point from the results files (train time, rank-hours,
  images per second) and, with --store, the embed and generate stages from
  the timing records beside the store (cost.py: rank-seconds per image, and
  the rank-hours to make N synthetic images),
- with --store: Stage 1 diagnostics (stage1.py) and image grids (grids.py).

Exit code 2 with a message naming the file or folder on bad input: a results
folder without a complete run, results of different datasets mixed, a file
that is not HDF5, a store without a requested --tag.
"""
import argparse
import base64
import datetime
import html
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402

import cost  # noqa: E402
import dinv_read  # noqa: E402
import grids  # noqa: E402
import sample_complexity  # noqa: E402
import stage1  # noqa: E402
import tables  # noqa: E402
from dinv_read import InputError  # noqa: E402,F401

TRAIN_COST_NOTE = ("Training per point, from the results files (`train_seconds`, `eval_seconds`, `world_size`, "
                   "`images_per_second`), mean over seeds.")
STAGE_COST_NOTE = ("Stages 1 and 2, from the timing records dinv appends beside the store (`{file}`, one line per run "
                   "of a stage; resumed runs add up). Rank-seconds per image include start-up and model loading.")


def history_figure(folder, runs, out):
    """Test accuracy against step, one line per run, coloured by source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"real": "tab:blue", "synthetic": "tab:orange", "mixed": "tab:green"}
    fig, ax = plt.subplots(figsize=(6, 3.8))
    seen = set()
    for _, run in runs.iterrows():
        _, evals = dinv_read.read_history(pathlib.Path(folder) / run["file"])
        label = run["source"] if run["source"] not in seen else None
        seen.add(run["source"])
        ax.plot(evals["step"], 100 * evals["accuracy"], color=colours.get(run["source"], "grey"), alpha=0.6, lw=1,
                marker=".", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"evaluations of {len(runs)} runs", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)


def cost_table(runs):
    """Training cost per point: mean over seeds of train time, rank-hours and throughput."""
    r = runs.assign(rank_hours=runs["train_seconds"] * runs["world_size"] / 3600.0)
    g = r.groupby(["model", "source", "num_data", "num_synthetic"])
    t = g.agg(runs=("run", "count"), device=("device", lambda d: ",".join(sorted(set(d)))),
              ranks=("world_size", "max"), steps=("steps", "max"), train_seconds=("train_seconds", "mean"),
              eval_seconds=("eval_seconds", "mean"), rank_hours=("rank_hours", "mean"),
              images_per_second=("images_per_second", "mean")).reset_index()
    return t


class Report:
    """Sections of Markdown and HTML built side by side."""

    def __init__(self, out_dir):
        self.out_dir = pathlib.Path(out_dir)
        self.md, self.html, self.figures = [], [], []

    def heading(self, text, level=2):
        self.md += ["#" * level + " " + text, ""]
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text):
        self.md += [text, ""]
        self.html.append(f"<p>{html.escape(text)}</p>")

    def table(self, frame, floatfmt="{:.4g}"):
        frame = frame.copy()
        for c in frame.columns:
            if frame[c].dtype.kind == "f":
                frame[c] = frame[c].map(lambda v: "" if pd.isna(v) else floatfmt.format(v))
        self.md += [tables.markdown_table(frame), ""]
        self.html.append(frame.to_html(index=False, escape=True, border=0, classes="t"))

    def figure(self, path, caption):
        path = pathlib.Path(path)
        if not path.exists() or path.stat().st_size == 0:
            raise RuntimeError(f"figure {path} was not written")
        self.figures.append(path)
        rel = path.relative_to(self.out_dir)
        self.md += [f"![{caption}]({rel.as_posix()})", "", f"*{caption}*", ""]
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def write(self, title):
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
                 "table.t{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em}"
                 "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
                 "figure{margin:1em 0}img{max-width:100%}figcaption{font-size:0.85em;color:#444}")
        page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body>\n<h1>{html.escape(title)}</h1>\n" + "\n".join(self.html) +
                "\n</body></html>\n")
        (self.out_dir / "report.html").write_text(page, encoding="utf-8")
        (self.out_dir / "report.md").write_text(f"# {title}\n\n" + "\n".join(self.md), encoding="utf-8")
        return self.out_dir / "report.html", self.out_dir / "report.md"


def results_sections(rep, folder, runs, files, figures):
    first = runs.iloc[0]
    rep.heading("Runs")
    rep.para(f"Results folder {folder}: {len(runs)} complete run(s) of {files} results file(s). "
             f"Dataset: {first['dataset']} (test fingerprint {first['test_fingerprint']}).")
    t = dinv_read.summarise(runs)
    rep.heading("Sample complexity")
    sample_complexity.plot(t, figures / "sample_complexity.png", title=f"{first['dataset']}: {folder}")
    rep.figure(figures / "sample_complexity.png",
               "Final test accuracy, mean ± std over seeds (n runs at each point), per model × source, against "
               "real images and against synthetic images.")
    history_figure(folder, runs, figures / "history.png")
    rep.figure(figures / "history.png", "Test accuracy at every evaluation of every run.")
    rep.heading("Tables")
    long = tables.table(runs.assign(dataset=first["dataset"]))
    tables.write(long, rep.out_dir)
    rep.para(tables.NOTE + " Also in table.md and table.csv.")
    rep.table(tables.long_frame(long))
    rep.heading(f"{first['dataset']}: final test accuracy (%) by source", 3)
    rep.table(tables.wide_frame(long, first["dataset"]))
    rep.heading("Cost")
    rep.para(TRAIN_COST_NOTE)
    rep.table(cost_table(runs))


def store_sections(rep, store, figures, tags):
    rep.heading("Store")
    with dinv_read.open_store(store) as f:
        all_tags = dinv_read.store_tags(f)
        for tag in tags or []:
            dinv_read.require_tag(f, tag)
        has_embeddings = "embeddings" in f and "loss" in f["embeddings"]
        dataset = dinv_read.text(f["source"].attrs.get("dataset", "")) if "source" in f else ""
        metrics = dinv_read.store_metrics(f)
    rep.para(f"Store {store}: {dataset or 'no /source'}; tags: {', '.join(all_tags) if all_tags else 'none'}.")
    stage_cost_section(rep, store, figures)
    rep.heading("Generated against real images (dinv evaluate)", 3)
    if metrics.empty:
        rep.para("The store has no /metrics (dinv evaluate not run).")
    else:
        rep.para(METRICS_NOTE)
        rep.table(metrics)
    rep.heading("Stage 1: embedding loss", 3)
    if has_embeddings:
        d = stage1.diagnose(store, figures)
        rep.para(f"{d['images']} of {d['total']} images embedded ({d['groups']} groups, {d['steps']} steps); "
                 f"loss mean {d['mean']:.4g}, median {d['median']:.4g}"
                 + (f"; {d['non_finite']} not finite" if d["non_finite"] else "") + ". Settings: " + d["settings"])
        rep.figure(d["figures"][0], "Loss at the last step per group: mean and min to max over its images.")
        rep.figure(d["figures"][1], "Distribution of the per-image loss, overall and per class.")
        rep.para("Groups with the highest mean loss:")
        rep.table(d["worst_groups"])
    else:
        rep.para("The store has no /embeddings/loss (stage 1 not run): no diagnostics.")
    rep.heading("Generated images", 3)
    if not (tags or all_tags):
        rep.para("The store has no /samples/<tag> (stage 2 not run): no grids.")
        return
    made, note = grids.make_grids(store, figures, tags)
    rep.para(note + ".")
    for m in made:
        if "tag" in m:
            rep.figure(m["file"], f"{m['tag']}: per class, {m['sources']} source image(s) in all, each followed by "
                                  f"its samples ({m['samples']} finished samples in the tag).")
        else:
            rep.figure(m["file"], "The same sources' first sample under each tag, ordered by perturbation "
                                  f"(interpolation s, embedding noise σ): {', '.join(m['tags'])}.")


METRICS_NOTE = ("In the representation of a classifier trained by dinv (`classifier`): FID, precision, recall, "
                "density and coverage of each tag against the real images; `label_agreement`, the classifier's "
                "accuracy on the tag's labels; `leaked_test_images`, test images with a generated image unusually "
                "close; `own_source_share`, how often a sample's nearest source image is its own source.")


def stage_cost_section(rep, store, figures):
    rep.heading("Cost of stages 1 and 2", 3)
    stages = cost.stage_cost(cost.read_timings(store))
    if stages.empty:
        rep.para(f"No timing records ({cost.timings_path(store)} is missing: the store was made by a dinv that did "
                 "not write them, or moved without it).")
        return
    rep.para(STAGE_COST_NOTE.format(file=cost.timings_path(store).name))
    rep.table(stages)
    if cost.time_to_n_figure(stages, figures / "time_to_n.png"):
        rep.figure(figures / "time_to_n.png", "Rank-hours to make N synthetic images per tag: the embedding of the "
                                               "source images once, plus N times the measured generation cost per "
                                               "image (linear beyond the dotted line).")


def make_report(results, out, store=None, tags=None):
    out = pathlib.Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    runs = dinv_read.load_results(results)
    if store is not None:
        with dinv_read.open_store(store) as f:  # bad stores and tags fail before any work
            for tag in tags or []:
                dinv_read.require_tag(f, tag)
    rep = Report(out)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rep.para(f"Made by analysis/report.py on {stamp}.")
    results_sections(rep, results, runs, len(list(pathlib.Path(results).glob("*.h5"))), figures)
    if store is not None:
        store_sections(rep, store, figures, tags)
    return rep.write(f"dinv report: {runs.iloc[0]['dataset']}") + (rep.figures,)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="results folder (train.results_dir)")
    parser.add_argument("--store", help="the experiment's store (store.path)")
    parser.add_argument("--tag", action="append", help="tags to draw (repeatable; default: every tag of the store)")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args()
    page, md, figures = make_report(args.results, args.out, args.store, args.tag)
    print(f"wrote {page} and {md} ({len(figures)} figures)")


if __name__ == "__main__":
    dinv_read.run_main(main)
