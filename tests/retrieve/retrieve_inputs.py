"""Inputs of `dinv retrieve` in the real formats, shared by the retrieve
tests and the live Slurm test: queries (a CIFAR-format shapes train set),
a pool (PNG class folders of another shapes draw) and a tiny random CLIP
vision model saved by transformers, with the configuration that reads them."""
import subprocess

import numpy as np
import torch
from PIL import Image

CONFIG = """\
[run]
threads = 1
[data]
format = cifar10
root = {root}/queries
split = train
[store]
path = store.h5
[retrieve]
model = {root}/clip
k = 3
batch_size = 4
shard_size = 7
[retrieve.pool]
format = folder
root = {root}/pool
"""


def read_cifar(folder):
    """The train split of a CIFAR-10-format folder: data_batch_1..5.bin."""
    raw = np.concatenate([np.fromfile(folder / f"data_batch_{i}.bin", dtype=np.uint8) for i in range(1, 6)])
    raw = raw.reshape(-1, 3073)
    return raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), raw[:, 0].astype(np.int64)


# The tiny CLIP vision tower; image_size and the others can be raised to make
# feature extraction slow enough to interrupt.
TINY_CLIP = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                 patch_size=8, projection_dim=16, hidden_act="quick_gelu")


def make_retrieve_inputs(root, dinv, env, queries=20, pool=40, **clip):
    """Writes ROOT/queries, ROOT/pool, ROOT/clip (TINY_CLIP with `clip` changed) and ROOT/retrieve.ini
    (CONFIG); returns ROOT."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    for name, n, seed in [("queries", queries, 1), ("poolsrc", pool, 2)]:
        r = subprocess.run([str(dinv), "data", "shapes", "--out", str(root / name), "--train", str(n), "--test", "10",
                            "--seed", str(seed)], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
    images, labels = read_cifar(root / "poolsrc")
    for i, (img, lab) in enumerate(zip(images, labels)):
        (root / "pool" / f"c{lab}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "pool" / f"c{lab}" / f"{i:03d}.png")
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(**dict(TINY_CLIP, **clip))
    CLIPVisionModelWithProjection(cfg).eval().save_pretrained(root / "clip", safe_serialization=True)
    side = cfg.image_size
    CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(root / "clip")
    (root / "retrieve.ini").write_text(CONFIG.format(root=root))
    return root
