"""Stage 1 against the method's loop written with diffusers: the first 20
steps of one group give the same embeddings (relative error <= 1e-4) when
both are fed the same initial embeddings, posterior samples, noise and
timesteps. The reference is the authors' parameterisation: a bias-free
Linear from one-hot image ids, torch.optim.AdamW, MSE to the noise."""
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import load_file, save_file

from conftest import BUILD_DIR, DINV, run

TOOL = BUILD_DIR / "tests" / "dinv_embed_trajectory"
N, T, BATCH, STEPS, LR, WD = 6, 5, 3, 20, 3e-2, 1e-2


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "tiny"
    r = run([DINV, "model", "init", "--preset", "tiny", out])
    assert r.returncode == 0, r.stderr
    return out


def reference_trajectory(model, mean, std, init, draws):
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(model / "unet").eval().requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(model / "vae")
    scheduler = DDPMScheduler.from_pretrained(model / "scheduler")
    n, tokens, dim = init.shape
    embed = torch.nn.Linear(n, tokens * dim, bias=False)
    with torch.no_grad():
        embed.weight.copy_(init.reshape(n, tokens * dim).t())
    opt = torch.optim.AdamW(embed.parameters(), lr=LR, betas=(0.9, 0.999), weight_decay=WD, eps=1e-8)
    batches = [list(range(b, min(n, b + BATCH))) for b in range(0, n, BATCH)]
    losses = []
    for step, (eps, noise, t) in enumerate(draws):
        ids = torch.tensor(batches[step % len(batches)])
        latents = (mean[ids] + std[ids] * eps) * vae.config.scaling_factor
        noisy = scheduler.add_noise(latents, noise, t)
        cond = embed(torch.nn.functional.one_hot(ids, n).float()).view(len(ids), tokens, dim)
        pred = unet(noisy, t, cond).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise.float(), reduction="mean")
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return embed.weight.detach().t().reshape(n, tokens, dim), losses


def test_first_20_steps_match_the_diffusers_loop(model, tmp_path):
    torch.manual_seed(1234)
    vae = AutoencoderKL.from_pretrained(model / "vae")
    images = torch.rand(N, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        post = vae.encode(images).latent_dist
    mean, std = post.mean.contiguous(), post.std.contiguous()
    dim = UNet2DConditionModel.load_config(model / "unet")["cross_attention_dim"]
    init = ((torch.rand(N, T, dim) * 2 - 1) / N ** 0.5).contiguous()
    draws, tensors = [], {"mean": mean, "std": std, "init": init}
    for s in range(STEPS):
        b = len(range(0, N, BATCH)) and BATCH
        eps, noise = torch.randn(b, *mean.shape[1:]), torch.randn(b, *mean.shape[1:])
        t = torch.randint(0, 1000, (b,), dtype=torch.int64)
        draws.append((eps, noise, t))
        tensors.update({f"eps.{s}": eps, f"noise.{s}": noise, f"t.{s}": t})
    save_file(tensors, str(tmp_path / "in.safetensors"))
    r = run([TOOL, model, tmp_path / "in.safetensors", tmp_path / "out.safetensors", BATCH, STEPS, LR, WD])
    assert r.returncode == 0, r.stderr
    ours = load_file(str(tmp_path / "out.safetensors"))
    ref, ref_losses = reference_trajectory(model, mean, std, init, draws)
    rel = ((ours["embeddings"] - ref).norm() / ref.norm()).item()
    print(f"embeddings relative error after {STEPS} steps: {rel:.2e}")
    assert rel <= 1e-4
    assert np.allclose(ours["losses"].numpy(), ref_losses, rtol=1e-4, atol=1e-6)
    assert (ours["embeddings"] - init).abs().max() > 1e-3, "embeddings did not move"


def test_learned_embeddings_denoise_better_than_the_mean_embedding(model, tmp_path):
    """A real learning signal: per image, the denoising loss under its learned
    embedding is lower than under the group's mean embedding (same noise,
    timesteps and posterior samples), for most images."""
    import h5py
    r = run([DINV, "data", "shapes", "--out", tmp_path / "data", "--train", 20, "--test", 10])
    assert r.returncode == 0, r.stderr
    r = run([DINV, "embed", f"--data.root={tmp_path}/data", f"--model.path={model}",
             f"--store.path={tmp_path}/store.h5", "--embed.group_size=10", "--embed.batch_size=10",
             "--embed.steps=150", "--embed.resolution=32", "--embed.lr=0.05", "--run.threads=1",
             "--run.progress=off"], timeout=900)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "store.h5") as f:
        emb = torch.from_numpy(f["/embeddings/data"][:])
        mean = torch.from_numpy(f["/embeddings/posterior_mean"][:])
        std = torch.from_numpy(f["/embeddings/posterior_std"][:])
    unet = UNet2DConditionModel.from_pretrained(model / "unet").eval()
    scheduler = DDPMScheduler.from_pretrained(model / "scheduler")
    scaling = AutoencoderKL.load_config(model / "vae")["scaling_factor"]
    gen = torch.Generator().manual_seed(99)
    draws = 16
    better = 0
    with torch.no_grad():
        for i in range(emb.shape[0]):
            g0 = i // 10 * 10
            uncond = emb[g0:g0 + 10].mean(0)
            x0 = (mean[i] + std[i] * torch.randn(draws, *mean.shape[1:], generator=gen)) * scaling
            noise = torch.randn(draws, *mean.shape[1:], generator=gen)
            t = torch.randint(0, 1000, (draws,), generator=gen)
            noisy = scheduler.add_noise(x0, noise, t)
            loss_learned = ((unet(noisy, t, emb[i].expand(draws, -1, -1)).sample - noise) ** 2).mean().item()
            loss_mean = ((unet(noisy, t, uncond.expand(draws, -1, -1)).sample - noise) ** 2).mean().item()
            better += loss_learned < loss_mean
    print(f"{better} of {emb.shape[0]} images denoise better with their learned embedding")
    assert better >= 0.75 * emb.shape[0]
