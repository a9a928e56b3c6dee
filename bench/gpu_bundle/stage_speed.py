#!/usr/bin/env python3
"""Speed rows of run_checks.sh (issue 18, point 3), on one model folder:

  * Stage 2 images/s: `dinv generate` (guided, --steps, sampling at 128 px,
    saving 32 px, 5-token embeddings, generate.dtype = --dtype) per batch size,
    timed from its progress lines over the second batch of each run (the first
    one warms up: cuDNN plans, allocator); the UNet's share of the GPU's dense
    fp16 peak from it (SD 1.5 UNet forward at 16x16 latents, 5 tokens: 0.043
    TFLOP per sample, two per image and step with classifier-free guidance;
    H100/H200 dense fp16: 989 TFLOP/s);
    diffusers (when importable): the same loop in eager mode in the same dtype
    (UNet on [uncond; cond], guidance, the folder's scheduler, VAE decode,
    uint8, Pillow bicubic to 32 px), one warm-up batch, one timed batch;
  * Stage 1 steps/s at batch 50 (128 px, fp32 as both libraries default):
    `dinv embed` timed from its progress lines (first step excluded) and, when
    diffusers is importable, the method's loop (VAE encode per step, posterior
    sample, add_noise, UNet, MSE, AdamW on the embedding table) on the device.
Appends rows (check, value, goal, PASS/FAIL/SKIP) to --results."""
import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
import benchlib  # noqa: E402  (standard library only)
import torch  # noqa: E402

UNET_TFLOP = 0.043  # SD 1.5 UNet forward, 16x16 latents, 5 tokens, one sample
PEAK_FP16 = 989.0   # H100/H200 dense fp16 TFLOP/s


def row(results, check, value, goal, verdict):
    line = f"{check}\t{value}\t{goal}\t{verdict}"
    print(line, flush=True)
    with open(results, "a") as f:
        f.write(line + "\n")


def dinv_error(e):
    """dinv's own error line ("dinv STAGE: ...") from a failed run, else the first line of the exception."""
    lines = str(e).splitlines()
    return next((l for l in reversed(lines) if l.startswith("dinv ")), lines[0] if lines else "")[:160]


def have(module):
    try:
        __import__(module)
        return True
    except Exception:
        return False


def dinv_stage2(a, store, batch):
    sources = 8  # the embeddings of 8 images; images = a multiple of 8, at least two batches (the first warms up)
    images = -(-2 * batch // sources) * sources
    work = Path(a.work) / f"gen{batch}"
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(store, work / "store.h5")
    cmd = [a.dinv, "generate", f"--model.path={a.model}", f"--store.path={work / 'store.h5'}", "--generate.tag=speed",
           f"--generate.num_samples={images // sources}", "--generate.interpolation=0", "--generate.emb_noise=0",
           "--generate.sampling_resolution=128", "--generate.save_resolution=32", f"--generate.batch_size={batch}",
           f"--generate.chunk_size={images}", f"--sampler.steps={a.steps}", "--sampler.guidance=2",
           f"--generate.dtype={a.dtype}", f"--run.device={a.device}", f"--run.threads={a.threads}",
           "--run.progress=lines", "--run.progress_interval=0.001"]
    lines = benchlib.run_timed_lines(cmd)
    points = benchlib.progress_times(lines, "generate (rank 0)")
    if len(points) < 2 or points[-1][2] != images:
        raise RuntimeError("dinv generate did not report two batches:\n" + "\n".join(l for _, _, l in lines[-20:]))
    return benchlib.rates([points[0], points[-1]])[0]


def diffusers_stage2(a, batch, models):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.schedulers import PNDMScheduler
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    dev = torch.device(a.device)
    if not models:
        models["unet"] = UNet2DConditionModel.from_pretrained(a.model, subfolder="unet", torch_dtype=dtype).to(dev).eval()
        models["vae"] = AutoencoderKL.from_pretrained(a.model, subfolder="vae", torch_dtype=dtype).to(dev).eval()
        models["scheduler"] = PNDMScheduler.from_pretrained(a.model, subfolder="scheduler")
    unet, vae, scheduler = models["unet"], models["vae"], models["scheduler"]
    try:
        from PIL import Image
    except ImportError:
        Image = None
    dim = unet.config.cross_attention_dim
    latent = 128 // 2 ** (len(vae.config.block_out_channels) - 1)  # sampling at 128 px, as dinv does
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(batch, 5, dim, generator=g).to(dev, dtype)
    uncond = cond.mean(0, keepdim=True).expand_as(cond)
    both = torch.cat([uncond, cond])

    @torch.no_grad()
    def one_batch():
        latents = torch.randn(batch, unet.config.in_channels, latent, latent, generator=g).to(dev, dtype)
        scheduler.set_timesteps(a.steps)
        latents = latents * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            out = unet(x, t, encoder_hidden_states=both).sample
            u, c = out.chunk(2)
            latents = scheduler.step(u + 2.0 * (c - u), t, latents).prev_sample
        images = vae.decode(latents / vae.config.scaling_factor).sample
        images = ((images.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        if Image is not None:
            for im in images.numpy():
                Image.fromarray(im).resize((32, 32), Image.BICUBIC)
        return images

    one_batch()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    one_batch()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return batch / (time.perf_counter() - start)


def dinv_stage1(a, data, batch, steps):
    work = Path(a.work) / "embed_speed"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [a.dinv, "embed", f"--model.path={a.model}", f"--store.path={work / 'store.h5'}", "--data.format=cifar10",
           f"--data.root={data}", f"--embed.num_images={batch}", f"--embed.group_size={batch}",
           f"--embed.batch_size={batch}", f"--embed.steps={steps + 1}", "--embed.resolution=128",
           "--embed.checkpoint_every=1000000", f"--run.device={a.device}", f"--run.threads={a.threads}",
           # one sample per embedding: a group of `batch` images has no partners to spare for the default 5
           "--generate.num_samples=1", "--run.progress=lines", "--run.progress_interval=0.001"]
    points = benchlib.progress_times(benchlib.run_timed_lines(cmd), "embed (rank 0)")
    if len(points) != steps + 1:
        raise RuntimeError(f"expected {steps + 1} progress lines from dinv embed, got {len(points)}")
    return benchlib.rates([points[0], points[-1]])[0]


def method_stage1(a, data, batch, steps):
    """The method's Stage 1 loop (bench/embed_steps.py's method_loop) on the device, random images in [-1, 1]."""
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    dev = torch.device(a.device)
    unet = UNet2DConditionModel.from_pretrained(a.model, subfolder="unet").to(dev)
    vae = AutoencoderKL.from_pretrained(a.model, subfolder="vae").to(dev)
    unet.requires_grad_(False), vae.requires_grad_(False)
    scheduler = DDPMScheduler.from_pretrained(a.model, subfolder="scheduler")
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(batch, 3, 128, 128, generator=g) * 2 - 1).to(dev)
    dim, tokens = unet.config.cross_attention_dim, 5
    table = torch.nn.Linear(batch, tokens * dim, bias=False).to(dev)
    opt = torch.optim.AdamW(table.parameters(), lr=3e-2, weight_decay=1e-2)
    one_hot = F.one_hot(torch.arange(batch), batch).float().to(dev)
    times = []
    for _ in range(steps + 1):
        latents = vae.encode(images).latent_dist.sample() * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=dev)
        noisy = scheduler.add_noise(latents, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=table(one_hot).view(batch, tokens, dim)).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.item()
        times.append(time.perf_counter())
    return steps / (times[-1] - times[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dinv", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="fp16")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 64, 256])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--embed-batch", type=int, default=50)
    ap.add_argument("--embed-steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--results", required=True)
    a = ap.parse_args()
    a.dinv, a.model, a.work = str(Path(a.dinv).resolve()), str(Path(a.model).resolve()), str(Path(a.work).resolve())
    Path(a.work).mkdir(parents=True, exist_ok=True)
    gpu = a.device == "cuda"
    diffusers_ok = have("diffusers")
    data = Path(a.work) / "shapes"
    subprocess.run([a.dinv, "data", "shapes", "--out", str(data), "--train", str(max(a.embed_batch, 10)), "--test", "10"],
                   check=True, capture_output=True)
    # embeddings for stage 2: one embed step on 8 images
    store = Path(a.work) / "store.h5"
    subprocess.run([a.dinv, "embed", f"--model.path={a.model}", f"--store.path={store}", "--data.format=cifar10",
                    f"--data.root={data}", "--embed.num_images=8", "--embed.group_size=8", "--embed.batch_size=8",
                    "--embed.steps=1", "--embed.resolution=128", f"--run.device={a.device}", f"--run.threads={a.threads}",
                    "--run.progress=off"], check=True, capture_output=True)
    models = {}
    for batch in a.batches:
        what = f"stage 2 images/s {a.device} {a.dtype}, batch {batch}, {a.steps} steps, 128->32 px"
        try:
            ours = dinv_stage2(a, store, batch)
        except Exception as e:  # noqa: BLE001
            row(a.results, what, f"dinv failed: {dinv_error(e)}", "-", "FAIL")
            continue
        tflops = ours * 2 * a.steps * UNET_TFLOP
        if gpu:
            row(a.results, f"{what}: UNet TFLOP/s (lower bound)", f"{tflops:.0f} ({100 * tflops / PEAK_FP16:.1f}% of 989)",
                "≥ 40% of dense fp16 peak", "PASS" if tflops >= 0.4 * PEAK_FP16 else "FAIL")
        if not diffusers_ok:
            row(a.results, f"{what}: dinv / diffusers eager", f"dinv {ours:.2f} images/s", "≥ 1.5", "SKIP (no diffusers)")
            continue
        try:
            theirs = diffusers_stage2(a, batch, models)
        except Exception as e:  # noqa: BLE001
            row(a.results, f"{what}: dinv / diffusers eager", f"dinv {ours:.2f}; diffusers failed: {str(e)[:60]}",
                "≥ 1.5", "SKIP (reference failed)")
            continue
        ratio = ours / theirs
        row(a.results, f"{what}: dinv / diffusers eager", f"{ratio:.2f} (dinv {ours:.2f}, diffusers {theirs:.2f} images/s)",
            "≥ 1.5", ("PASS" if ratio >= 1.5 else "FAIL") if gpu else "SKIP (CPU: not a measurement)")
        if gpu:
            torch.cuda.empty_cache()
    models.clear()
    what = f"stage 1 steps/s {a.device} fp32, batch {a.embed_batch}, 128 px: dinv / method's loop"
    try:
        ours = dinv_stage1(a, data, a.embed_batch, a.embed_steps)
    except Exception as e:  # noqa: BLE001
        row(a.results, what, f"dinv failed: {dinv_error(e)}", "-", "FAIL")
        return 0
    if not diffusers_ok:
        row(a.results, what, f"dinv {ours:.2f} steps/s", "≥ 1.0", "SKIP (no diffusers)")
        return 0
    try:
        theirs = method_stage1(a, data, a.embed_batch, a.embed_steps)
    except Exception as e:  # noqa: BLE001
        row(a.results, what, f"dinv {ours:.2f}; method failed: {str(e)[:60]}", "≥ 1.0", "SKIP (reference failed)")
        return 0
    row(a.results, what, f"{ours / theirs:.2f} (dinv {ours:.2f}, method {theirs:.2f} steps/s)", "≥ 1.0",
        ("PASS" if ours >= theirs else "FAIL") if gpu else "SKIP (CPU: not a measurement)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
