#!/usr/bin/env python3
"""Stage 1 diagnostics from a dinv store: the embedding loss per group and its
distribution.

/embeddings/loss holds each image's denoising loss at the last step that
trained it (one noisy sample of one timestep, so single values are noisy; the
group means and the spread are what to look at). Only images whose unit is
done (/embeddings/done) are used. Writes:

    stage1_groups.png   mean, min and max loss per group (embed.group_size images)
    stage1_hist.png     histogram of the per-image loss, and per class
    stage1_groups.csv   group, images, mean, std, min, max

    python analysis/stage1.py store.h5 --out stage1/
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import dinv_read  # noqa: E402
from dinv_read import InputError  # noqa: E402,F401


def group_table(losses):
    t = losses.groupby("group")["loss"].agg(["count", "mean", "std", "min", "max"]).reset_index()
    return t.rename(columns={"count": "images"})


def plot(losses, groups, names, out_dir, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    out_dir = pathlib.Path(out_dir)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.vlines(groups["group"], groups["min"], groups["max"], alpha=0.4, lw=3 if len(groups) <= 60 else 1,
              label="min to max")
    ax.plot(groups["group"], groups["mean"], marker="o" if len(groups) <= 60 else None, ms=3,
            lw=1 if len(groups) <= 60 else 0.5, label="mean")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("group (embed.group_size consecutive images)")
    ax.set_ylabel("loss at the last step")
    ax.set_title(f"Stage 1 loss per group{title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "stage1_groups.png", dpi=150)
    plt.close(fig)

    labels = sorted(int(v) for v in losses["label"].unique() if v >= 0)
    fig, axes = plt.subplots(1, 2 if labels else 1, figsize=(10 if labels else 5, 3.5), squeeze=False)
    ax = axes[0][0]
    ax.hist(losses["loss"], bins=min(50, max(5, len(losses) // 4)))
    ax.axvline(losses["loss"].mean(), color="k", ls="--", lw=1, label=f"mean {losses['loss'].mean():.4g}")
    ax.set_xlabel("per-image loss")
    ax.set_ylabel("images")
    ax.set_title(f"distribution ({len(losses)} images)", fontsize=9)
    ax.legend(fontsize=7)
    if labels:
        ax = axes[0][1]
        data = [losses.loc[losses["label"] == c, "loss"].to_numpy() for c in labels]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels([names[c] if names and c < len(names) else str(c) for c in labels], rotation=60,
                           fontsize=6, ha="right")
        ax.set_ylabel("per-image loss")
        ax.set_title("per class", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "stage1_hist.png", dpi=150)
    plt.close(fig)
    return [out_dir / "stage1_groups.png", out_dir / "stage1_hist.png"]


def diagnose(store, out_dir):
    """Figures and CSV of a store's Stage 1 losses; returns a summary dict."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with dinv_read.open_store(store) as f:
        losses = dinv_read.embedding_losses(f)
        names = dinv_read.class_names(f)
        e = f["embeddings"]
        total = int(e["loss"].shape[0])
        steps = int(e.attrs.get("steps", 0))
        settings = dinv_read.text(e.attrs.get("settings", ""))
    groups = group_table(losses)
    groups.to_csv(out_dir / "stage1_groups.csv", index=False)
    figures = plot(losses, groups, names, out_dir, f" ({steps} steps)" if steps else "")
    finite = np.isfinite(losses["loss"])
    return {"images": int(len(losses)), "total": total, "groups": int(len(groups)), "steps": steps,
            "settings": settings, "mean": float(losses["loss"][finite].mean()),
            "median": float(losses["loss"][finite].median()), "non_finite": int((~finite).sum()),
            "worst_groups": groups.sort_values("mean", ascending=False).head(5), "figures": figures,
            "csv": out_dir / "stage1_groups.csv"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="the store (store.path)")
    parser.add_argument("--out", required=True, help="folder for the figures and CSV")
    args = parser.parse_args()
    d = diagnose(args.store, args.out)
    print(f"{d['images']} of {d['total']} images embedded in {d['groups']} groups; loss mean {d['mean']:.4g}, "
          f"median {d['median']:.4g}" + (f", {d['non_finite']} not finite" if d["non_finite"] else ""))
    print("groups with the highest mean loss:")
    print(d["worst_groups"].to_string(index=False))
    for p in d["figures"] + [d["csv"]]:
        print(f"wrote {p}")


if __name__ == "__main__":
    dinv_read.run_main(main)
