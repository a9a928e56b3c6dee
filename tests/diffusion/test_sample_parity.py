"""`dinv model sample` (the full guided loop: UNet with classifier-free
guidance, sampler, VAE decode, uint8 images) against the same loop written
with diffusers, on the tiny random model that `dinv model init --preset tiny`
writes (diffusers loads the same weights).

Both start from the same initial latents (--latents); the stochastic samplers
(DDIM eta = 1, Euler-ancestral) get the same noise: the reference draws it the
way dinv does, from one torch CPU generator per sample seeded with
sample_seed(seed, index) (splitmix64, see src/diffusion/sampling.cpp), one
[1, C, h, w] standard normal draw per sample and step. LibTorch's and
PyTorch's CPU generators are the same Mersenne Twister, so the numbers match.

Tolerances: final latents relative error max|a - b| / max|b| <= 1e-4 (fp32);
images (uint8) within 1 grey level everywhere.

The same comparison on the SD 1.5 architecture (random 3.4 GB model, 8x8
latents, one sample) runs when DINV_TEST_SD15=1 (minutes of CPU, several GB of
memory and disk): test_sd15_full_loop_matches_diffusers.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from diffusers import (AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, PNDMScheduler, UNet2DConditionModel)
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module

DINV = os.environ.get("DINV", str(Path(os.environ.get("DINV_BUILD_DIR", "build")) / "dinv"))
CLASSES = {"ddim": DDIMScheduler, "pndm": PNDMScheduler, "dpmpp": DPMSolverMultistepScheduler,
           "euler": EulerDiscreteScheduler, "euler_a": EulerAncestralDiscreteScheduler}
MASK = (1 << 64) - 1


def splitmix(z):
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def sample_seed(seed, index):
    return splitmix(splitmix(seed) ^ index)


def make_model(root, preset, batch, tokens, latent):
    model = root / "model"
    subprocess.run([DINV, "model", "init", "--preset", preset, "--seed", "3", str(model)], check=True)
    unet = UNet2DConditionModel.from_pretrained(str(model / "unet")).eval()
    vae = AutoencoderKL.from_pretrained(str(model / "vae")).eval()
    rng = torch.Generator().manual_seed(0)
    cond = torch.randn(batch, tokens, unet.config.cross_attention_dim, generator=rng)
    uncond = torch.randn(1, tokens, unet.config.cross_attention_dim, generator=rng)
    latents = torch.randn(batch, unet.config.in_channels, latent, latent, generator=rng)
    save_file({"cond": cond}, str(root / "cond.safetensors"))
    save_file({"uncond": uncond}, str(root / "uncond.safetensors"))
    save_file({"latents": latents}, str(root / "latents.safetensors"))
    config = json.loads((model / "scheduler" / "scheduler_config.json").read_text())
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return dict(root=root, model=model, cond=cond, uncond=uncond, latents=latents, unet=unet, vae=vae, config=config,
                pixels=latent * factor)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("tiny"), "tiny", batch=3, tokens=5, latent=16)


@torch.no_grad()
def reference_loop(t, sampler, steps, guidance, seed, eta):
    s = CLASSES[sampler].from_config(t["config"])
    s.set_timesteps(steps)
    cond, batch = t["cond"], t["cond"].shape[0]
    both = torch.cat([t["uncond"].expand_as(cond), cond])
    gens = [torch.Generator().manual_seed(sample_seed(seed, b)) for b in range(batch)]
    one = (1,) + tuple(t["latents"].shape[1:])
    draw = lambda: torch.cat([torch.randn(one, generator=g) for g in gens])
    x = t["latents"] * s.init_noise_sigma
    original = euler_a_module.randn_tensor
    try:
        for step_t in s.timesteps:
            inp = s.scale_model_input(torch.cat([x, x]), step_t)
            eps = t["unet"](inp, step_t, encoder_hidden_states=both).sample
            eu, ec = eps.chunk(2)
            eps = eu + guidance * (ec - eu)
            if sampler == "ddim":
                x = s.step(eps, step_t, x, eta=eta, variance_noise=draw() if eta > 0 else None).prev_sample
            elif sampler == "euler_a":
                noise = draw()
                euler_a_module.randn_tensor = lambda *a, **k: noise
                x = s.step(eps, step_t, x).prev_sample
            else:
                x = s.step(eps, step_t, x).prev_sample
    finally:
        euler_a_module.randn_tensor = original
    image = t["vae"].decode(x / t["vae"].config.scaling_factor).sample
    image = (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()
    return x.numpy(), (image * 255).round().astype("uint8")


def run_dinv(t, sampler, steps, guidance, seed, eta, out_name, extra=()):
    out = t["root"] / out_name
    cmd = [DINV, "model", "sample", str(t["model"]), "--cond", str(t["root"] / "cond.safetensors"),
           "--uncond", str(t["root"] / "uncond.safetensors"), "--latents", str(t["root"] / "latents.safetensors"),
           "--sampler", sampler, "--steps", str(steps), "--guidance", str(guidance), "--seed", str(seed),
           "--eta", str(eta), "--height", str(t["pixels"]), "--width", str(t["pixels"]), "--output", str(out), *extra]
    subprocess.run(cmd, check=True)
    return load_file(str(out))


CASES = [("ddim", 10, 0.0), ("ddim", 8, 1.0), ("pndm", 10, 0.0), ("dpmpp", 10, 0.0), ("euler", 10, 0.0),
         ("euler_a", 8, 0.0)]


def check_against_diffusers(t, sampler, steps, eta):
    ours = run_dinv(t, sampler, steps, 2.0, 11, eta, f"{sampler}_{eta}.safetensors")
    latents, images = reference_loop(t, sampler, steps, 2.0, 11, eta)
    got = ours["latents"].numpy()
    assert got.shape == latents.shape
    rel = np.abs(got - latents).max() / np.abs(latents).max()
    print(f"{sampler} steps={steps} eta={eta}: final latents relative error {rel:.2e}")
    assert rel <= 1e-4, f"{sampler}: final latents relative error {rel}"
    assert ours["images"].dtype == torch.uint8 and tuple(ours["images"].shape) == images.shape
    diff = np.abs(ours["images"].numpy().astype(int) - images.astype(int))
    assert diff.max() <= 1, f"{sampler}: images differ by up to {diff.max()}"


@pytest.mark.parametrize("sampler,steps,eta", CASES)
def test_full_loop_matches_diffusers(tiny, sampler, steps, eta):
    check_against_diffusers(tiny, sampler, steps, eta)


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    if os.environ.get("DINV_TEST_SD15") != "1":
        pytest.skip("set DINV_TEST_SD15=1 to run the SD 1.5-architecture loop (3.4 GB model, minutes of CPU)")
    return make_model(tmp_path_factory.mktemp("sd15"), "sd15", batch=1, tokens=5, latent=8)


@pytest.mark.parametrize("sampler", ["ddim", "pndm", "dpmpp", "euler"])
def test_sd15_full_loop_matches_diffusers(sd15, sampler):
    check_against_diffusers(sd15, sampler, 3, 0.0)


def test_png_output_and_folder_default_sampler(tiny, tmp_path):
    from PIL import Image
    ours = run_dinv(tiny, "folder", 4, 2.0, 1, 0.0, "folder.safetensors", ("--png", str(tmp_path / "png")))
    files = sorted((tmp_path / "png").glob("*.png"))
    assert [f.name for f in files] == ["000000.png", "000001.png", "000002.png"]
    for b, f in enumerate(files):
        np.testing.assert_array_equal(np.asarray(Image.open(f).convert("RGB")), ours["images"][b].numpy())


def test_save_size_resizes_like_pillow(tiny):
    from PIL import Image
    full = run_dinv(tiny, "ddim", 3, 2.0, 5, 0.0, "full.safetensors")["images"].numpy()
    small = run_dinv(tiny, "ddim", 3, 2.0, 5, 0.0, "small.safetensors", ("--save-size", "12x9"))["images"].numpy()
    assert small.shape == (3, 12, 9, 3)
    for b in range(3):
        np.testing.assert_array_equal(small[b], np.asarray(Image.fromarray(full[b]).resize((9, 12), Image.BICUBIC)))


def test_bad_input_names_the_value(tiny):
    def fails(*args):
        r = subprocess.run([DINV, "model", "sample", str(tiny["model"]), "--cond",
                            str(tiny["root"] / "cond.safetensors"), "--output", str(tiny["root"] / "x.safetensors"),
                            *args], capture_output=True, text=True)
        assert r.returncode != 0
        return r.stderr
    assert "'heun'" in fails("--sampler", "heun")
    assert "1001" in fails("--steps", "1001")
    assert "guidance scale -1" in fails("--guidance", "-1")
    assert "height 33" in fails("--height", "33")
    assert "'12y9'" in fails("--save-size", "12y9")
    save_file({"cond": torch.zeros(2, 5, 16)}, str(tiny["root"] / "narrow.safetensors"))
    r = subprocess.run([DINV, "model", "sample", str(tiny["model"]), "--cond", str(tiny["root"] / "narrow.safetensors"),
                        "--output", str(tiny["root"] / "x.safetensors")], capture_output=True, text=True)
    assert r.returncode != 0 and "width 16" in r.stderr and "cross_attention_dim 32" in r.stderr
