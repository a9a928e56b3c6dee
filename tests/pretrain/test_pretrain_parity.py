"""One training step of `dinv pretrain` against the reference on the same
weights and inputs: the UNet objective of diffusers'
examples/text_to_image/train_text_to_image.py (epsilon and v-prediction, with
and without min-SNR weighting) and the AutoencoderKL objective
(reconstruction + KL), loss and every parameter's gradient, fp32 CPU,
relative error <= 1e-4."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("DINV_BUILD_DIR") or ROOT / "build")
DINV = os.environ.get("DINV") or str(BUILD / "dinv")
TOOL = BUILD / "tests" / "dinv_sd_tool"
TOL = 1e-4

torch.set_num_threads(2)


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny Stable Diffusion folder written by dinv, with its weights
    perturbed by diffusers (so that no layer is at a special value) and saved
    back by diffusers."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    out = tmp_path_factory.mktemp("model") / "tiny"
    subprocess.run([DINV, "model", "init", "--preset", "tiny", "--seed", "3", str(out)], check=True,
                   capture_output=True)
    torch.manual_seed(0)
    for cls, sub in ((UNet2DConditionModel, "unet"), (AutoencoderKL, "vae")):
        m = cls.from_pretrained(out / sub)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))
        m.save_pretrained(out / sub, safe_serialization=True)
    return out


def with_prediction_type(model, tmp_path, prediction_type):
    if prediction_type == "epsilon":
        return model
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    cfg_path = copy / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["prediction_type"] = prediction_type
    cfg_path.write_text(json.dumps(cfg))
    return copy


def run_tool(verb, model, inputs, tmp_path, arg):
    save_file(inputs, tmp_path / "in.safetensors")
    r = subprocess.run([str(TOOL), verb, str(model), str(tmp_path / "in.safetensors"),
                        str(tmp_path / "out.safetensors"), str(arg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return load_file(tmp_path / "out.safetensors")


def compare_grads(ours, module):
    grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
    assert set(ours) - {"loss"} == {"grad/" + n for n in grads}, "gradients of different parameters"
    # Some gradients are zero in exact arithmetic (an attention key's bias
    # shifts every logit of a query alike, which softmax ignores): both sides
    # hold rounding noise there, so errors are taken relative to at least a
    # hundred-thousandth of the whole gradient's norm.
    total = torch.sqrt(sum(g.double().pow(2).sum() for g in grads.values())).item()
    worst = max((((ours["grad/" + n].double() - g.double()).norm() / max(g.double().norm().item(), 1e-5 * total)).item(),
                 n) for n, g in grads.items())
    assert worst[0] <= TOL, f"gradient of {worst[1]}: relative error {worst[0]:.3g}"
    return worst


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("snr_gamma", [0.0, 5.0])
def test_unet_step(model, tmp_path, prediction_type, snr_gamma):
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from diffusers.training_utils import compute_snr

    folder = with_prediction_type(model, tmp_path, prediction_type)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet").train()
    scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
    g = torch.Generator().manual_seed(5)
    b = 3
    latents = torch.randn(b, 4, 16, 16, generator=g) * 0.18215 * 4
    noise = torch.randn(b, 4, 16, 16, generator=g)
    timesteps = torch.tensor([3, 517, 998])
    cond = torch.randn(b, 77, unet.config.cross_attention_dim, generator=g)
    ours = run_tool("unet-train-step", folder,
                    {"latents": latents, "noise": noise, "timesteps": timesteps, "cond": cond}, tmp_path, snr_gamma)

    # The reference: the body of train_text_to_image.py's training step.
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = noise if prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
    pred = unet(noisy, timesteps, cond, return_dict=False)[0]
    if snr_gamma == 0:
        loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
    else:
        snr = compute_snr(scheduler, timesteps)
        weights = torch.stack([snr, snr_gamma * torch.ones_like(timesteps)], dim=1).min(dim=1)[0]
        weights = weights / snr if prediction_type == "epsilon" else weights / (snr + 1)
        loss = F.mse_loss(pred.float(), target.float(), reduction="none")
        loss = (loss.mean(dim=list(range(1, len(loss.shape)))) * weights).mean()
    loss.backward()
    assert rel_err(ours["loss"], loss.detach().reshape(1)) <= TOL
    compare_grads(ours, unet)


@pytest.mark.parametrize("kl_weight", [0.0, 1e-2])
def test_vae_step(model, tmp_path, kl_weight):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(model / "vae").train()
    g = torch.Generator().manual_seed(6)
    images = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    eps = torch.randn(2, 4, 16, 16, generator=g)
    ours = run_tool("vae-train-step", model, {"images": images, "eps": eps}, tmp_path, kl_weight)

    posterior = vae.encode(images).latent_dist
    z = posterior.mean + posterior.std * eps
    reconstruction = vae.decode(z).sample
    loss = F.mse_loss(reconstruction.float(), images.float()) + kl_weight * posterior.kl().mean()
    loss.backward()
    assert rel_err(ours["loss"], loss.detach().reshape(1)) <= TOL
    compare_grads(ours, vae)
