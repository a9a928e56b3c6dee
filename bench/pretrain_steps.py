#!/usr/bin/env python3
"""`dinv pretrain` UNet steps/s against diffusers' text-to-image training loop,
in one run: same model (`dinv model init --preset tiny`), corpus, global batch,
thread count, 1 rank.

    python bench/pretrain_steps.py --dinv build/dinv [--steps 40] [--batch 32] [--threads 2] [--rounds 3]

Sides, alternating in every round:
  * dinv:      `dinv pretrain --pretrain.component=unet` with cached latents,
               EMA and gradient clipping; the time is the training loop's, as
               dinv records it in dinv_pretrain.json (model loading and the
               latent cache excluded);
  * diffusers: the loop of diffusers' examples/text_to_image/train_text_to_image.py
               with the same pieces: latents cached (posterior mean and std,
               a fresh sample per step), the frozen CLIP text encoder on the
               batch's captions (10% dropped to ""), DDPM add_noise, the UNet,
               MSE, backward, clip_grad_norm_, AdamW, EMAModel.step; timed
               from the end of the first step to the end of the last;
  * diffusers, captions cached: the same loop with the text encoder's output
               kept per caption (each encoded alone the first time it is
               drawn), as dinv does; the corpus is small enough (512 captions
               against 40 x 32 draws) for the cache to matter.
Ratio = diffusers time / dinv time (> 1: dinv faster). Medians over rounds.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import ensure_model, machine, median, thread_env  # noqa: E402

CONFIG = """
[run]
threads = {threads}
progress = off
[data]
format = captioned
root = {corpus}
[pretrain]
init = {model}
output = {output}
component = unet
steps = {steps}
batch_size = {batch}
checkpoint_every = 0
"""


def run_dinv(args, work, model, corpus, round_):
    out = work / f"dinv_out_{round_}"
    ini = work / f"bench_{round_}.ini"
    ini.write_text(CONFIG.format(threads=args.threads, corpus=corpus, model=model, output=out, steps=args.steps,
                                 batch=args.batch))
    subprocess.run([args.dinv, "pretrain", "--config", str(ini)], check=True, capture_output=True,
                   env=thread_env(args.threads))
    record = json.loads((out / "dinv_pretrain.json").read_text())
    return record["phases"]["unet"]["seconds"]


def run_diffusers(args, model, corpus, cache_captions):
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.training_utils import EMAModel
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer
    import numpy as np

    torch.set_num_threads(args.threads)
    lines = [json.loads(l) for l in (corpus / "metadata.jsonl").read_text().splitlines() if l.strip()]
    images = torch.from_numpy(np.stack([np.asarray(Image.open(corpus / l["file_name"]).convert("RGB"))
                                        for l in lines])).permute(0, 3, 1, 2).float() / 127.5 - 1
    captions = [l["text"] for l in lines]
    vae = AutoencoderKL.from_pretrained(model / "vae").eval()
    with torch.no_grad():
        dist = vae.encode(images).latent_dist
        mean, std = dist.mean, dist.std
    tokenizer = CLIPTokenizer.from_pretrained(model / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(model / "text_encoder").eval().requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(model / "unet").train()
    scheduler = DDPMScheduler.from_pretrained(model / "scheduler")
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=1e-2)
    ema = EMAModel(unet.parameters(), decay=0.999)
    g = torch.Generator().manual_seed(0)
    encodings = {}

    def encode(prompts):
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        return text_encoder(ids)[0]

    def encode_cached(prompts):
        for p in prompts:
            if p not in encodings:
                encodings[p] = encode([p])
        return torch.cat([encodings[p] for p in prompts])

    start = None
    for step in range(args.steps):
        idx = torch.randint(0, len(captions), (args.batch,), generator=g)
        prompts = ["" if torch.rand(1, generator=g).item() < 0.1 else captions[i] for i in idx.tolist()]
        with torch.no_grad():
            cond = encode_cached(prompts) if cache_captions else encode(prompts)
        latents = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)) * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), generator=g)
        pred = unet(scheduler.add_noise(latents, noise, t), t, cond, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        ema.step(unet.parameters())
        if step == 0:
            start = time.perf_counter()
    return (time.perf_counter() - start) * args.steps / (args.steps - 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dinv", required=True)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--corpus-size", type=int, default=512)
    args = p.parse_args()
    args.dinv = str(Path(args.dinv).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = ensure_model(args.dinv, "tiny", work / "model")
        corpus = work / "corpus"
        subprocess.run([args.dinv, "data", "shapes", "--captioned", "--out", str(corpus), "--count",
                        str(args.corpus_size), "--seed", "3"], check=True, capture_output=True)
        ours, ref, ref_cached = [], [], []
        for r in range(args.rounds):
            ours.append(run_dinv(args, work, model, corpus, r))
            ref.append(run_diffusers(args, model, corpus, cache_captions=False))
            ref_cached.append(run_diffusers(args, model, corpus, cache_captions=True))
            print(f"round {r}: dinv {ours[-1]:.2f} s, diffusers {ref[-1]:.2f} s, "
                  f"diffusers with captions cached {ref_cached[-1]:.2f} s", flush=True)
    d, f, fc = median(ours), median(ref), median(ref_cached)
    print(machine())
    print("| model | batch | steps | device | dinv steps/s | diffusers steps/s | ratio | "
          "diffusers, captions cached, steps/s | ratio |")
    print(f"| tiny | {args.batch} | {args.steps} | cpu ({args.threads} threads) | {args.steps / d:.2f} | "
          f"{args.steps / f:.2f} | {f / d:.2f} | {args.steps / fc:.2f} | {fc / d:.2f} |")


if __name__ == "__main__":
    main()
