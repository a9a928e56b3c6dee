#!/usr/bin/env python3
"""Training throughput of CIFAR-size ResNet-18: dinv vs PyTorch, in one run.

Both sides train the same model (ResNet-18, 3x3 stride-1 stem, 10 classes) with
the same recipe (SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, random
crop with padding 4 + flip, cross-entropy) on the same 32x32 CIFAR-format data
(the procedural shapes set, written by `dinv data shapes`), with the same number
of CPU threads. dinv's images/s is the results file's `images_per_second` (the
training steps' wall time, data loading included, evaluation excluded); PyTorch's
is measured the same way over the same number of steps.

    python bench/train_throughput.py --dinv build/dinv --steps 20 --threads 2
    python bench/train_throughput.py --device cuda --precision bf16 --steps 300 --threads 8

On a GPU (`--device cuda`) both sides move each batch from the CPU to the GPU
every step, train with the same autocast precision (`--precision fp32|bf16`;
TF32 convolutions as both libraries default), and the PyTorch clock stops after
a device synchronisation; dinv trains through its NCCL communicator (1 rank).
"""
import argparse
import os
import pathlib
import subprocess
import tempfile
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class CifarResNet18(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for i, width in enumerate([64, 128, 256, 512]):
            blocks = [Block(cin, width, 1 if i == 0 else 2), Block(width, width, 1)]
            layers.append(nn.Sequential(*blocks))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


def read_cifar(folder):
    records = np.concatenate([np.fromfile(folder / f"data_batch_{k}.bin", np.uint8).reshape(-1, 3073) for k in range(1, 6)])
    return torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(records[:, 0].astype(np.int64))


def torch_throughput(folder, steps, batch, threads, device, precision):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    images, labels = read_cifar(folder)
    model = CifarResNet18().to(device)
    model.train()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda" and precision == "bf16")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        x = images[idx].float().div_(255)
        x = F.pad(x, (4, 4, 4, 4))
        dx, dy = torch.randint(0, 9, (2,), generator=gen).tolist()
        x = x[:, :, dy:dy + 32, dx:dx + 32]
        if torch.rand(1, generator=gen).item() < 0.5:
            x = x.flip(3)
        x = ((x - 0.5) / 0.5).to(device)
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.float(), labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def dinv_throughput(dinv, folder, work, steps, batch, threads, device, precision):
    run = subprocess.run([dinv, "train", "--data.format=cifar10", f"--data.root={folder}", f"--data.real_bs={batch}",
                          "--data.eval_bs=200", f"--data.workers={max(1, threads // 2)}", f"--train.steps={steps}",
                          "--train.num_evals=1", "--train.warmup_steps=0", "--train.checkpoint_every=0",
                          "--train.run_name=bench", f"--run.threads={threads}", "--run.progress=off", f"--run.device={device}",
                          f"--train.precision={precision}"],
                          cwd=work, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"dinv train failed ({run.returncode}):\n{run.stderr[-4000:]}")
    with h5py.File(pathlib.Path(work) / "results" / "bench.h5") as f:
        return float(f.attrs["images_per_second"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dinv", default="build/dinv")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="autocast precision (GPU only)")
    a = p.parse_args()
    if a.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, precision {a.precision}")
    dinv = os.path.abspath(a.dinv)
    with tempfile.TemporaryDirectory() as work:
        folder = pathlib.Path(work) / "shapes"
        subprocess.run([dinv, "data", "shapes", "--out", folder, "--train", "2000", "--test", "200"], check=True,
                       capture_output=True)
        ours, theirs = [], []
        for r in range(a.repeats):
            run_dir = pathlib.Path(work) / f"run{r}"
            run_dir.mkdir()
            ours.append(dinv_throughput(dinv, folder, run_dir, a.steps, a.batch, a.threads, a.device, a.precision))
            theirs.append(torch_throughput(folder, a.steps, a.batch, a.threads, a.device, a.precision))
            print(f"repeat {r}: dinv {ours[-1]:.1f} images/s, pytorch {theirs[-1]:.1f} images/s", flush=True)
    mo, mt = float(np.median(ours)), float(np.median(theirs))
    print(f"median over {a.repeats}: dinv {mo:.1f} images/s, pytorch {mt:.1f} images/s, ratio dinv/pytorch {mo / mt:.3f}")


if __name__ == "__main__":
    main()
