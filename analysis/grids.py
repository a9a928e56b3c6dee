#!/usr/bin/env python3
"""Image grids from a dinv store's provenance.

Per tag (/samples/<tag>): one row per class, a few source images each followed
by the samples generated from it (the `source` column of the tag; partners and
seeds are in the store too). With several tags that differ in their
perturbation (generate.interpolation, generate.emb_noise), a second grid shows
the same sources' first samples along the perturbation strengths.

The store holds no real pixels (/source holds dataset indices and labels): the
source images are read from the dataset files named in the store's
configuration ([data] format, root and split; a relative root is taken from the
store's folder, then the current one), or from --data-root. When those files
cannot be read, the grid shows grey tiles in their place and says why.

    python analysis/grids.py store.h5 --out grids/ [--tag demo] [--per-class 2]
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import dinv_read  # noqa: E402
from dinv_read import InputError  # noqa: E402

GAP = 4  # pixels between source groups (at tile size)


def _resize(image, size):
    if image.shape[0] == size[0] and image.shape[1] == size[1]:
        return image
    from PIL import Image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BICUBIC))


def _tile_source(sources, source_row, size):
    """The real image of a store row, at the samples' size; grey when unknown."""
    if source_row < 0 or sources is None or not sources.available:
        return np.full((*size, 3), 128, np.uint8)
    index = sources.index[source_row] if sources.index is not None else source_row
    return _resize(sources.image(int(index)), size)


def _show(mosaic, row_labels, row_height, title, out, column_labels=None, column_width=None, min_tile=48):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = mosaic.shape[:2]
    scale = max(1.0, min_tile / row_height)  # small tiles drawn at least min_tile px
    fig = plt.figure(figsize=(w * scale / 100, h * scale / 100))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_yticks([row_height * (i + 0.5) + GAP * i for i in range(len(row_labels))])
    ax.set_yticklabels(row_labels, fontsize=7)
    if column_labels:
        ax.set_xticks([column_width * (i + 0.5) for i in range(len(column_labels))])
        ax.set_xticklabels(column_labels, fontsize=6)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=8, pad=22 if column_labels else 4)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.savefig(out, dpi=100 * scale, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)


def tag_grid(f, tag, out, sources, per_class=2):
    """Per class, `per_class` sources beside their samples; returns a summary dict."""
    g, s = dinv_read.finished_samples(f, tag)
    if len(s["row"]) == 0:
        raise InputError(f"store '{f.filename}' /samples/{tag}: no finished samples (ledger all 0): "
                         "run `dinv generate` to finish it")
    names = dinv_read.class_names(f) or [str(c) for c in range(int(s["label"].max()) + 1)]
    images = g["images"]
    size = tuple(images.shape[1:3])
    per_source = int(g.attrs.get("num_samples", 0)) or 8  # per-class prompts share source -1: cap the row
    rows, labels, shown = [], [], 0
    width = 0
    for c, name in enumerate(names):
        in_class = s["label"] == c
        if not in_class.any():
            continue
        chosen = [src for src in dict.fromkeys(s["source"][in_class].tolist())][:per_class]
        blocks = []
        for src in chosen:
            rows_of = s["row"][in_class & (s["source"] == src)][:per_source]
            tiles = [_tile_source(sources, src, size), np.full((size[0], 2, 3), 255, np.uint8)]
            for r in rows_of:
                tiles += [images[int(r)], np.full((size[0], 1, 3), 255, np.uint8)]
            blocks.append(np.concatenate(tiles, axis=1))
            blocks.append(np.full((size[0], GAP, 3), 255, np.uint8))
            shown += 1
        row = np.concatenate(blocks, axis=1)
        width = max(width, row.shape[1])
        rows.append(row)
        labels.append(name)
    padded = []
    for row in rows:
        padded.append(np.concatenate([row, np.full((size[0], width - row.shape[1], 3), 255, np.uint8)], axis=1))
        padded.append(np.full((GAP, width, 3), 255, np.uint8))
    mosaic = np.concatenate(padded[:-1], axis=0)
    note = "source | its samples" if sources is not None and sources.available else "source (grey: not available) | samples"
    _show(mosaic, labels, size[0], f"/samples/{tag}: {note}", out)
    return {"tag": tag, "file": str(out), "classes": len(labels), "sources": shown, "samples": int(len(s["row"]))}


def strength_grid(f, tags, out, sources, count=6):
    """The first sample of the same sources under each tag, tags ordered by
    (interpolation, noise); None when fewer than two tags differ in them."""
    specs = []
    for tag in tags:
        g = dinv_read.require_tag(f, tag)
        if dinv_read.text(g.attrs.get("mode", "")) == "prompt":
            continue
        specs.append((float(g.attrs.get("interpolation", np.nan)), float(g.attrs.get("noise", np.nan)), tag))
    if len({(a, b) for a, b, _ in specs}) < 2:
        return None
    specs.sort()
    finished = {tag: dinv_read.finished_samples(f, tag) for _, _, tag in specs}
    common = None
    for tag, (_, s) in finished.items():
        have = set(s["source"].tolist())
        common = have if common is None else common & have
    common = sorted(c for c in common if c >= 0)[:count]
    if not common:
        return None
    sizes = {tuple(g["images"].shape[1:3]) for g, _ in finished.values()}
    size = max(sizes)
    rows = []
    for src in common:
        tiles = [_tile_source(sources, src, size)]
        for _, _, tag in specs:
            g, s = finished[tag]
            first = s["row"][s["source"] == src][0]
            tiles += [np.full((size[0], 2, 3), 255, np.uint8), _resize(g["images"][int(first)], size)]
        rows.append(np.concatenate(tiles, axis=1))
        rows.append(np.full((GAP, rows[-1].shape[1], 3), 255, np.uint8))
    mosaic = np.concatenate(rows[:-1], axis=0)
    names = dinv_read.class_names(f)
    labels = []
    label_data = f["source/label"][:] if "source" in f and "label" in f["source"] else None
    for src in common:
        label = int(label_data[src]) if label_data is not None else -1
        labels.append(f"#{src} {names[label]}" if names and label >= 0 else f"#{src}")
    columns = ["source"] + [f"{tag}\ns={a:g}\nσ={b:g}" for a, b, tag in specs]
    _show(mosaic, labels, size[0], "first sample along the perturbation strengths", out, columns, size[1] + 2,
          min_tile=72)
    return {"file": str(out), "tags": [t for _, _, t in specs], "sources": len(common)}


def make_grids(store, out_dir, tags=None, per_class=2, data_root=None):
    """Every grid of a store; returns (list of summaries, source-image note)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with dinv_read.open_store(store) as f:
        all_tags = dinv_read.store_tags(f)
        tags = tags or all_tags
        if not tags:
            raise InputError(f"store '{store}' has no /samples/<tag>: run `dinv generate` first")
        for tag in tags:
            dinv_read.require_tag(f, tag)
        sources = dinv_read.SourceImages(f, data_root) if "source" in f else None
        note = ("source images from " + str(sources.root) if sources is not None and sources.available
                else "source images not shown: " + (sources.reason if sources is not None else "the store has no /source"))
        made = [tag_grid(f, tag, out_dir / f"grid_{tag}.png", sources, per_class) for tag in tags]
        strength = strength_grid(f, tags, out_dir / "grid_strengths.png", sources)
        if strength:
            made.append(strength)
    return made, note


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="the store (store.path)")
    parser.add_argument("--out", required=True, help="folder for grid_<tag>.png")
    parser.add_argument("--tag", action="append", help="tag to draw (repeatable; default: every tag)")
    parser.add_argument("--per-class", type=int, default=2, help="source images per class (default 2)")
    parser.add_argument("--data-root", help="dataset files of the source images (default: data.root of the store)")
    args = parser.parse_args()
    made, note = make_grids(args.store, args.out, args.tag, args.per_class, args.data_root)
    print(note)
    for m in made:
        print(f"wrote {m['file']}")


if __name__ == "__main__":
    dinv_read.run_main(main)
