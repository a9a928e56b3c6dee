"""Benchmark of the retrieval baseline (issue 17 point 5).

    python bench/retrieve.py --tool build/tests/dinv_clip_vision --dinv build/dinv [--layout b32] [--threads 1]

1. CLIP image features/s: dinv's vision tower (the test tool times forward
   passes on random pixel values, model loading excluded) against
   transformers' CLIPVisionModelWithProjection on the same pixels, same
   thread count, random weights of the ViT-B/32 (or ViT-L/14) layout.
2. Retrieval throughput: `dinv retrieve` rerun with another k on cached
   features (so only loading, the exact search and writing the tag run),
   queries x pool images per second of that wall time.
Prints table rows for bench/RESULTS.md.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

LAYOUTS = {
    "b32": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                image_size=224, patch_size=32, projection_dim=512, hidden_act="quick_gelu"),
    "l14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu"),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 image_size=32, patch_size=8, projection_dim=32, hidden_act="quick_gelu"),
}


def make_model(path, layout):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(0)
    cfg = LAYOUTS[layout]
    CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg)).eval().save_pretrained(path, safe_serialization=True)
    s = cfg["image_size"]
    CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s}).save_pretrained(path)


def features_per_s(a, model_dir):
    from transformers import CLIPVisionModelWithProjection
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    r = subprocess.run([a.tool, "bench", model_dir, str(a.batch), str(a.repeat)], capture_output=True, text=True,
                       env=env, check=True)
    ours = json.loads(r.stdout)["images_per_s"]
    torch.set_num_threads(a.threads)
    model = CLIPVisionModelWithProjection.from_pretrained(model_dir).eval()
    s = LAYOUTS[a.layout]["image_size"]
    pixels = torch.randn(a.batch, 3, s, s)
    with torch.no_grad():
        model(pixel_values=pixels)
        start = time.perf_counter()
        for _ in range(a.repeat):
            model(pixel_values=pixels)
        theirs = a.batch * a.repeat / (time.perf_counter() - start)
    print(f"| features | {a.layout} | batch {a.batch} x {a.repeat} | {a.threads} | {ours:.1f} | {theirs:.1f} | "
          f"{ours / theirs:.2f} |")


def retrieval_throughput(a, tmp):
    """Tiny model, shapes images as queries and pool: the search, not the features, is timed."""
    tmp = Path(tmp)
    make_model(tmp / "tiny", "tiny")
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    for name, n in [("queries", a.queries), ("poolsrc", a.pool)]:
        subprocess.run([a.dinv, "data", "shapes", "--out", tmp / name, "--train", str(n), "--test", "10"],
                       check=True, capture_output=True, env=env)
    pool = tmp / "pool" / "all"
    pool.mkdir(parents=True)
    raw = np.concatenate([np.fromfile(tmp / "poolsrc" / f"data_batch_{i}.bin", np.uint8) for i in range(1, 6)])
    for i, rec in enumerate(raw.reshape(-1, 3073)):
        Image.fromarray(rec[1:].reshape(3, 32, 32).transpose(1, 2, 0)).save(pool / f"{i:06d}.png")
    (tmp / "r.ini").write_text(f"[data]\nformat = cifar10\nroot = {tmp}/queries\n[store]\npath = {tmp}/s.h5\n"
                               f"[retrieve]\nmodel = {tmp}/tiny\nshard_size = 1024\nbatch_size = 64\n"
                               f"[retrieve.pool]\nformat = folder\nroot = {tmp}/pool\n")
    cmd = [a.dinv, "retrieve", "--config", str(tmp / "r.ini")]
    subprocess.run(cmd + ["--retrieve.k=5"], check=True, capture_output=True, env=env)
    start = time.perf_counter()
    subprocess.run(cmd + ["--retrieve.k=10"], check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    print(f"| retrieval (cached features, k=10) | {a.queries} queries x {a.pool} pool | {a.threads} | "
          f"{a.queries * a.pool / wall:.3g} pairs/s | wall {wall:.2f} s (incl. start-up, tag writing) |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tool", default="build/tests/dinv_clip_vision")
    p.add_argument("--dinv", default="build/dinv")
    p.add_argument("--layout", default="b32", choices=list(LAYOUTS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--pool", type=int, default=5000)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_model(os.path.join(tmp, a.layout), a.layout)
        features_per_s(a, os.path.join(tmp, a.layout))
        retrieval_throughput(a, tmp)


if __name__ == "__main__":
    main()
