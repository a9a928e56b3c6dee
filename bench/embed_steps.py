#!/usr/bin/env python3
"""Stage 1 (embedding learning) steps/s: `dinv embed` vs the method's diffusers
loop, in one run, same model, images, batch size, resolution and thread count.

    python bench/embed_steps.py --dinv build/dinv --model /tmp/sd15 [--resolution 128] [--batch 8]
                                [--steps 4] [--rounds 2] [--threads 1]

Data: the first --batch images of the procedural shapes set (CIFAR-10 binary,
32 px, `dinv data shapes`), resized with bicubic to --resolution by each side
(dinv's embed stage; Pillow for the reference, as the method does), one group
of --batch images, so that every step trains on the whole group.

Sides, alternating in every round (each runs --steps + 1 steps; the rate is
taken from the end of step 1 to the end of the last step, so model loading,
the VAE posterior cache and the first (warm-up) step are excluded):
  * dinv:   `dinv embed`, timed from the arrival of its per-step progress lines
            (wall time, and the process's CPU time read from /proc then);
  * method: the method's loop as written (docs/method.md, stage 1): per step the VAE
            encodes the batch and samples the posterior, random timesteps,
            noise, add_noise of the model's DDPM schedule, UNet with the
            embeddings (a bias-free Linear on one-hot ids) as
            encoder_hidden_states, MSE in fp32, AdamW on the embeddings only;
  * method, encode hoisted: the same loop with the posterior (mean, std)
            computed once before the loop and sampled per step, as dinv does,
            so that the ratio of the training steps alone is visible.
Wall and CPU (user + system) time are both reported: with one thread per
side, CPU time is the one that other jobs on a shared machine disturb less.
Checks: dinv's cached posterior mean (store) equals the reference VAE's
posterior mean of the same images (relative error printed); mean losses of
both sides are printed (random weights: they should be of the same size).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

import benchlib
from train_throughput import read_cifar


def reference_images(folder, count, resolution):
    """The first `count` images, Pillow bicubic to `resolution`, scaled to [-1, 1], [N, 3, R, R]."""
    images, _ = read_cifar(Path(folder))
    out = []
    for img in images[:count]:
        pil = Image.fromarray(img.permute(1, 2, 0).numpy()).resize((resolution, resolution), Image.BICUBIC)
        out.append(torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 127.5 - 1.0)
    return torch.stack(out)


def method_loop(unet, vae, scheduler, images, steps, tokens, hoist_encode, seed=0):
    """The method's Stage 1 loop on one group (= one batch). Returns [(wall s, CPU s, steps done)], losses."""
    torch.manual_seed(seed)
    n, dim = images.shape[0], unet.config.cross_attention_dim
    scaling = vae.config.scaling_factor
    table = torch.nn.Linear(n, tokens * dim, bias=False)
    opt = torch.optim.AdamW(table.parameters(), lr=3e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    one_hot = F.one_hot(torch.arange(n), n).float()
    if hoist_encode:
        with torch.no_grad():
            posterior = vae.encode(images).latent_dist
            mean, std = posterior.mean, posterior.std
    points, losses = [], []
    start, cpu = time.perf_counter(), time.process_time()
    for step in range(steps):
        if hoist_encode:
            latents = (mean + std * torch.randn_like(mean)) * scaling
        else:
            latents = vae.encode(images).latent_dist.sample() * scaling
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (n,))
        noisy = scheduler.add_noise(latents, noise, t)
        target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, t)
        cond = table(one_hot).view(n, tokens, dim)
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
        points.append((time.perf_counter() - start, time.process_time() - cpu, step + 1))
    return points, losses


def dinv_embed(dinv, model, data, store, a):
    cmd = [dinv, "embed", f"--model.path={model}", f"--store.path={store}", "--data.format=cifar10",
           f"--data.root={data}", f"--embed.num_images={a.batch}", f"--embed.group_size={a.batch}",
           f"--embed.batch_size={a.batch}", f"--embed.steps={a.steps + 1}", f"--embed.resolution={a.resolution}",
           f"--embed.num_tokens={a.tokens}", "--embed.checkpoint_every=1000000", "--run.device=cpu",
           f"--run.threads={a.threads}", "--run.progress=lines", "--run.progress_interval=0.001"]
    lines = benchlib.run_timed_lines(cmd, env=benchlib.thread_env(a.threads))
    points = benchlib.progress_times(lines, "embed (rank 0)")
    if len(points) != a.steps + 1:
        raise RuntimeError(f"expected {a.steps + 1} progress lines from dinv embed, got {len(points)}:\n" +
                           "\n".join(l for _, _, l in lines))
    return points


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dinv", default="build/dinv")
    ap.add_argument("--model", type=Path, default=Path("/tmp/sd15"), help="made with dinv model init when missing")
    ap.add_argument("--preset", default="sd15")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per run (one more is run as warm-up)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-hoisted", action="store_true", help="skip the reference variant with the encode hoisted")
    benchlib.add_malloc_option(ap)
    a = ap.parse_args()
    benchlib.apply_malloc_option(a)
    if a.steps < 2:
        ap.error("--steps must be at least 2 (a rate needs two timed step ends)")
    dinv = str(Path(a.dinv).resolve())
    torch.set_num_threads(a.threads)
    model = benchlib.ensure_model(dinv, a.preset, a.model)

    unet = UNet2DConditionModel.from_pretrained(model / "unet").eval().requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(model / "vae").eval().requires_grad_(False)
    scheduler = DDPMScheduler.from_config(json.loads((model / "scheduler" / "scheduler_config.json").read_text()))

    sides = ["dinv", "method"] + ([] if a.no_hoisted else ["method, encode hoisted"])
    rates = {s: [] for s in sides}
    losses = {s: [] for s in sides}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        benchlib.run_timed_lines([dinv, "data", "shapes", "--out", work / "shapes", "--train", str(max(10, a.batch)),
                                  "--test", "10"])
        images = reference_images(work / "shapes", a.batch, a.resolution)
        for rnd in range(a.rounds):
            store = work / f"bench-embed-{os.getpid()}-{rnd}.h5"  # own base name: see generate_images.py
            rates["dinv"].append(benchlib.rates(dinv_embed(dinv, model, work / "shapes", store, a)[1:]))
            with h5py.File(store) as f:
                losses["dinv"].append(float(np.mean(f["/embeddings/loss"][:])))
                ours_mean = torch.from_numpy(f["/embeddings/posterior_mean"][:])
            for side in sides[1:]:
                points, l = method_loop(unet, vae, scheduler, images, a.steps + 1, a.tokens,
                                        side.endswith("hoisted"), seed=rnd)
                rates[side].append(benchlib.rates(points[1:]))
                losses[side].append(l[-1])
            print(f"round {rnd}: " + ", ".join(f"{s} {rates[s][-1][0]:.4f} steps/s ({rates[s][-1][1]:.4f} per CPU s)"
                                               for s in sides) +
                  f"; load {benchlib.load_average()}", file=sys.stderr, flush=True)
        with torch.no_grad():
            ref_mean = vae.encode(images).latent_dist.mean
        rel = float((ours_mean - ref_mean).abs().max() / ref_mean.abs().max())

    wall = {s: benchlib.median([w for w, _ in rates[s]]) for s in sides}
    cpu = {s: benchlib.median([c for _, c in rates[s]]) for s in sides}
    print(f"- {benchlib.machine()}")
    print(f"- {a.preset} architecture (random weights, {model}), fp32, CPU, {a.threads} intra-op thread(s) on every side; "
          f"{a.resolution} px, batch {a.batch}, {a.tokens} tokens; {a.rounds} alternating rounds x {a.steps} timed "
          f"steps after 1 warm-up step; medians; Python reference with malloc: {a.reference_malloc}")
    print(f"- posterior mean, dinv's cache vs diffusers' VAE on the same images: max relative error {rel:.1e}; "
          f"last loss: " + ", ".join(f"{s} {np.mean(losses[s]):.4f}" for s in sides))
    print()
    print("| side | steps/s, wall (median) | s/step, wall | CPU s/step (median) | per round: steps/s wall (CPU) "
          "| dinv / side: wall, CPU |")
    print("|---|---|---|---|---|---|")
    for s in sides:
        print(f"| {s} | {wall[s]:.4f} | {1 / wall[s]:.2f} | {1 / cpu[s]:.2f} | "
              f"{', '.join(f'{w:.4f} ({c:.4f})' for w, c in rates[s])} | "
              f"{wall['dinv'] / wall[s]:.2f}, {cpu['dinv'] / cpu[s]:.2f} |")


if __name__ == "__main__":
    main()
