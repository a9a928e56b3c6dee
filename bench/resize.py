"""Benchmark: dinv::io::resize vs Pillow's Image.resize (bicubic), uint8 RGB.

    python bench/resize.py --tool build/tests/dinv_diffusion_tool [--n 256] [--size 128] [--out 32]

dinv resizes a batch [N, H, W, 3] in one call of the test tool, which times
the resize itself (process start and .npy I/O excluded); Pillow resizes the
same N images one by one in this process (array <-> PIL conversion included,
as the pipeline needs it). One thread each. Prints a table row.
"""
import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tool", default="build/tests/dinv_diffusion_tool")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--out", type=int, default=32)
    a = p.parse_args()
    images = np.random.default_rng(0).integers(0, 256, (a.n, a.size, a.size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
        np.save(src, images)
        r = subprocess.run([a.tool, "resize", "--in", str(src), "--height", str(a.out), "--width", str(a.out),
                            "--out", str(dst)], check=True, capture_output=True, text=True)
        ours = float(re.search(r"resize_seconds ([0-9.e+-]+)", r.stdout).group(1))
        mine = np.load(dst)
    start = time.perf_counter()
    theirs_images = [np.asarray(Image.fromarray(im).resize((a.out, a.out), Image.BICUBIC)) for im in images]
    theirs = time.perf_counter() - start
    equal = bool((np.stack(theirs_images) == mine).all())
    print(f"| resize bicubic | {a.n} x {a.size}->{a.out} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f} | "
          f"identical: {equal} |")


if __name__ == "__main__":
    main()
