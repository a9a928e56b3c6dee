#!/usr/bin/env python3
"""Stage 2 (sampling) images/s: `dinv generate` vs the method's diffusers
pipeline, in one run, same model, conditioning, initial noise, sampler, steps,
guidance, resolutions, batch size and thread count.

    python bench/generate_images.py --dinv build/dinv --model /tmp/sd15 [--images 8] [--batch 8]
                                    [--steps 25] [--sampling 128] [--save 32] [--rounds 1] [--threads 1]

Set-up (not timed): the first --sources images of the procedural shapes set,
one very short `dinv embed` (1 step) so that the store holds embeddings for
this model, one group; --images / --sources samples per source image.

Sides, alternating in every round, each generating --images images in batches
of --batch:
  * dinv:   `dinv generate` (the folder's sampler, PNDM for SD 1.x), timed from
            its "generate: N images into ..." line (model loaded, store opened)
            to its last progress line (all images sampled, decoded and resized),
            so model loading and the store write of the chunk are excluded
            (wall time, and the process's CPU time read from /proc then);
  * method: diffusers' StableDiffusionPipeline as the method calls it:
            prompt_embeds / negative_prompt_embeds (the group's mean embedding),
            the folder's scheduler, the same steps, guidance and eta=1,
            height = width = --sampling, then Pillow bicubic resize to --save;
            pipeline loading excluded (it is loaded in every round, after dinv
            has finished, so that one model is in memory at a time).
Wall and CPU (user + system) time are both reported: with one thread per
side, CPU time is the one that other jobs on a shared machine disturb less.
dinv runs with interpolation 0 and emb_noise 0 (the cost is the same as with
the method's 0.1 / 0.1: one perturbation of a [T, D] tensor per image), so
both sides see the same conditioning; the pipeline gets each sample's initial
latents drawn from the per-sample seed that dinv stores, so both compute the
same images: the check prints how far the saved 32 px images differ.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from diffusers import StableDiffusionPipeline

import benchlib

GENERATE_LABEL = "generate (rank 0)"


def dinv_generate(dinv, model, store, tag, a):
    cmd = [dinv, "generate", f"--model.path={model}", f"--store.path={store}", f"--generate.tag={tag}",
           f"--generate.num_samples={a.images // a.sources}", "--generate.interpolation=0", "--generate.emb_noise=0",
           f"--generate.sampling_resolution={a.sampling}", f"--generate.save_resolution={a.save}",
           f"--generate.batch_size={a.batch}", f"--generate.chunk_size={a.images}", f"--sampler.steps={a.steps}",
           f"--sampler.guidance={a.guidance}", "--run.device=cpu", f"--run.threads={a.threads}",
           "--run.progress=lines", "--run.progress_interval=0.001"]
    lines = benchlib.run_timed_lines(cmd, env=benchlib.thread_env(a.threads))
    start = next((t, cpu, 0) for t, cpu, l in lines if "generate: " in l and " images into " in l)
    points = benchlib.progress_times(lines, GENERATE_LABEL)
    if not points or points[-1][2] != a.images:
        raise RuntimeError("dinv generate did not report all images:\n" + "\n".join(l for _, _, l in lines))
    return benchlib.rates([start, points[-1]])


def pipeline_generate(pipe, cond, uncond, seeds, a):
    """The method's sampling of len(cond) images in batches; returns (images per wall s, per CPU s) and the
    saved images [M, S, S, 3]."""
    h = a.sampling // pipe.vae_scale_factor
    saved = []
    start, cpu = time.perf_counter(), time.process_time()
    for b in range(0, len(cond), a.batch):
        latents = torch.cat([torch.randn((1, pipe.unet.config.in_channels, h, h),
                                         generator=torch.Generator().manual_seed(int(s) & (2 ** 64 - 1)))
                             for s in seeds[b:b + a.batch]])
        images = pipe(prompt_embeds=cond[b:b + a.batch], negative_prompt_embeds=uncond[b:b + a.batch],
                      latents=latents, num_inference_steps=a.steps, guidance_scale=a.guidance, eta=1.0,
                      height=a.sampling, width=a.sampling, output_type="pil").images
        saved += [np.asarray(im.resize((a.save, a.save), Image.BICUBIC)) for im in images]
    return benchlib.rates([(0, 0, 0), (time.perf_counter() - start, time.process_time() - cpu, len(cond))]), \
        np.stack(saved)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dinv", default="build/dinv")
    ap.add_argument("--model", type=Path, default=Path("/tmp/sd15"), help="made with dinv model init when missing")
    ap.add_argument("--preset", default="sd15")
    ap.add_argument("--images", type=int, default=8, help="images per side and round")
    ap.add_argument("--sources", type=int, default=8, help="source images (embeddings); must divide --images")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--sampling", type=int, default=128)
    ap.add_argument("--save", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    benchlib.add_malloc_option(ap)
    a = ap.parse_args()
    benchlib.apply_malloc_option(a)
    if a.images % a.sources:
        ap.error("--sources must divide --images")
    dinv = str(Path(a.dinv).resolve())
    torch.set_num_threads(a.threads)
    model = benchlib.ensure_model(dinv, a.preset, a.model)

    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        # A name of its own: Open MPI's shared-file-pointer component keys a machine-wide semaphore on the
        # file's base name, and a process killed while holding it blocks every later open of that name.
        store = work / f"bench-generate-{os.getpid()}.h5"
        benchlib.run_timed_lines([dinv, "data", "shapes", "--out", work / "shapes", "--train", str(max(10, a.sources)),
                                  "--test", "10"])
        benchlib.run_timed_lines([dinv, "embed", f"--model.path={model}", f"--store.path={store}",
                                  "--data.format=cifar10", f"--data.root={work / 'shapes'}",
                                  f"--embed.num_images={a.sources}", f"--embed.group_size={a.sources}",
                                  f"--embed.batch_size={min(a.sources, 8)}", "--embed.steps=1", "--embed.resolution=64",
                                  "--run.device=cpu", f"--run.threads={a.threads}", "--run.progress=off"],
                                 env=benchlib.thread_env(a.threads))
        with h5py.File(store) as f:
            emb = torch.from_numpy(f["/embeddings/data"][:])
            group_size = int(f["/embeddings"].attrs["group_size"])
        means = torch.stack([emb[g:g + group_size].mean(0) for g in range(0, len(emb), group_size)])
        for rnd in range(a.rounds):
            tag = f"bench{rnd}"
            ours.append(dinv_generate(dinv, model, store, tag, a))
            with h5py.File(store) as f:
                grp = f[f"/samples/{tag}"]
                source, seeds, ours_images = grp["source"][:], grp["seed"][:], grp["images"][:]
            cond, uncond = emb[source], means[source // group_size]
            # Loaded while dinv is not running and dropped after, so that the machine holds one model at a time.
            pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
            rate, theirs_images = pipeline_generate(pipe, cond, uncond, seeds, a)
            del pipe
            theirs.append(rate)
            print(f"round {rnd}: dinv {ours[-1][0]:.4f} images/s ({ours[-1][1]:.4f} per CPU s), diffusers pipeline "
                  f"{theirs[-1][0]:.4f} images/s ({theirs[-1][1]:.4f} per CPU s); "
                  f"load {benchlib.load_average()}", file=sys.stderr, flush=True)
        diff = np.abs(ours_images.astype(np.int16) - theirs_images.astype(np.int16))

    med = {name: (benchlib.median([w for w, _ in r]), benchlib.median([c for _, c in r]))
           for name, r in (("dinv generate", ours), ("diffusers StableDiffusionPipeline", theirs))}
    mo = med["dinv generate"]
    print(f"- {benchlib.machine()}")
    print(f"- {a.preset} architecture (random weights, {model}), fp32, CPU, {a.threads} intra-op thread(s) on every side; "
          f"{a.images} images per side and round, batch {a.batch}, {a.steps} steps of the folder's scheduler, guidance {a.guidance}, "
          f"sampling {a.sampling} px, saved {a.save} px; {a.rounds} alternating round(s); medians; "
          f"Python reference with malloc: {a.reference_malloc}")
    print(f"- same images? saved {a.save} px uint8, dinv vs pipeline: max difference {int(diff.max())} grey levels, "
          f"{100 * float((diff <= 1).mean()):.2f}% of values within 1")
    print()
    print("| side | images/s, wall (median) | s/image, wall | CPU s/image (median) | dinv / side: wall, CPU |")
    print("|---|---|---|---|---|")
    for name, (w, c) in med.items():
        print(f"| {name} | {w:.4f} | {1 / w:.2f} | {1 / c:.2f} | {mo[0] / w:.2f}, {mo[1] / c:.2f} |")


if __name__ == "__main__":
    main()
