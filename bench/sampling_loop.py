"""Benchmark: the guided sampling loop, dinv vs diffusers, same model and inputs.

    python bench/sampling_loop.py --dinv build/dinv [--preset tiny|sd15] [--model DIR] [--steps 20]
                                  [--batch 4] [--latent 16] [--sampler pndm] [--device cpu|cuda]
                                  [--repeat 2] [--threads N]

Uses the random model folder DIR (made there with `dinv model init --preset P`
when it is missing; without --model, in a temporary folder), then times, in
alternating rounds,
  * dinv:      `dinv model sample` (loop + VAE decode, timed inside the process,
               model loading excluded; its CPU time over that stretch is total
               CPU minus the CPU sampled from /proc when the loop began);
  * diffusers: the same loop in this process (UNet on the concatenated
               [uncond; cond] batch, guidance, scheduler step, VAE decode, as
               StableDiffusionPipeline runs it), model loading excluded;
with the same intra-op thread count (--threads; default: torch's default) and
checks that both give the same final latents (relative error printed). Prints
the per-round wall and CPU times and one Markdown table row (medians) for bench/RESULTS.md.
"""
import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler

import benchlib

CLASSES = {"ddim": DDIMScheduler, "pndm": PNDMScheduler, "dpmpp": DPMSolverMultistepScheduler,
           "euler": EulerDiscreteScheduler}


@torch.no_grad()
def diffusers_loop(unet, vae, scheduler, cond, uncond, latents, steps, guidance):
    scheduler.set_timesteps(steps)
    both = torch.cat([uncond.expand_as(cond), cond])
    x = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        inp = scheduler.scale_model_input(torch.cat([x, x]), t)
        eu, ec = unet(inp, t, encoder_hidden_states=both).sample.chunk(2)
        x = scheduler.step(eu + guidance * (ec - eu), t, x).prev_sample
    images = vae.decode(x / vae.config.scaling_factor).sample
    if images.is_cuda:
        torch.cuda.synchronize()
    return x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dinv", default="build/dinv")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--model", type=Path, help="model folder to reuse (made with dinv model init when missing)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--tokens", type=int, default=5)
    p.add_argument("--sampler", default="pndm")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads on both sides (0: torch's default)")
    benchlib.add_malloc_option(p)
    a = p.parse_args()
    benchlib.apply_malloc_option(a)
    if a.threads:
        torch.set_num_threads(a.threads)
    env = benchlib.thread_env(a.threads) if a.threads else None

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = benchlib.ensure_model(a.dinv, a.preset, a.model or tmp / "model")
        unet = UNet2DConditionModel.from_pretrained(str(model / "unet")).eval().to(a.device)
        vae = AutoencoderKL.from_pretrained(str(model / "vae")).eval().to(a.device)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        dim = unet.config.cross_attention_dim
        g = torch.Generator().manual_seed(0)
        cond = torch.randn(a.batch, a.tokens, dim, generator=g)
        uncond = cond.mean(0, keepdim=True)
        latents = torch.randn(a.batch, unet.config.in_channels, a.latent, a.latent, generator=g)
        save_file({"cond": cond}, str(tmp / "cond.safetensors"))
        save_file({"latents": latents}, str(tmp / "latents.safetensors"))
        scheduler = CLASSES[a.sampler].from_config(json.loads((model / "scheduler/scheduler_config.json").read_text()))

        ours, theirs = [], []
        for rnd in range(a.repeat):
            out, cpu_of_last = benchlib.run_cpu_sampled(
                [a.dinv, "model", "sample", str(model), "--cond", str(tmp / "cond.safetensors"),
                 "--latents", str(tmp / "latents.safetensors"), "--sampler", a.sampler, "--steps", str(a.steps),
                 "--guidance", "2", "--height", str(a.latent * factor), "--width", str(a.latent * factor),
                 "--device", a.device, "--output", str(tmp / "out.safetensors")], env=env)
            wall = float(re.search(r"in ([0-9.e+-]+) s", out).group(1))
            ours.append((wall, cpu_of_last(wall)))
            start, cpu = time.perf_counter(), time.process_time()
            x = diffusers_loop(unet, vae, scheduler, cond.to(a.device), uncond.to(a.device), latents.to(a.device),
                               a.steps, 2.0)
            theirs.append((time.perf_counter() - start, time.process_time() - cpu))
            print(f"round {rnd}: dinv {ours[-1][0]:.3f} s (CPU {ours[-1][1]:.3f} s), diffusers {theirs[-1][0]:.3f} s "
                  f"(CPU {theirs[-1][1]:.3f} s), load {benchlib.load_average()}", flush=True)
        ours_latents = load_file(str(tmp / "out.safetensors"))["latents"]
        rel = float((ours_latents - x.cpu()).abs().max() / x.cpu().abs().max())

    (w_ours, c_ours), (w_theirs, c_theirs) = [(benchlib.median([w for w, _ in r]), benchlib.median([c for _, c in r]))
                                              for r in (ours, theirs)]
    print(f"{benchlib.machine()}; diffusers with malloc: {a.reference_malloc}; {a.repeat} alternating rounds, medians")
    print("| model | sampler | steps | batch | latents | device | dinv s: wall / CPU | diffusers s: wall / CPU | "
          "ratio diffusers / dinv: wall, CPU | latents rel. err |")
    print(f"| {a.preset} | {a.sampler} | {a.steps} | {a.batch} | {a.latent}x{a.latent} | {a.device} "
          f"({torch.get_num_threads()} threads) | {w_ours:.1f} / {c_ours:.1f} | {w_theirs:.1f} / {c_theirs:.1f} | "
          f"{w_theirs / w_ours:.2f}, {c_theirs / c_ours:.2f} | {rel:.1e} |")


if __name__ == "__main__":
    main()
