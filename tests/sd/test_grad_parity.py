"""Gradients through dinv's UNet with respect to the conditioning (the
embedding-learning stage's only trainable input) against diffusers' autograd
on the same weights and inputs."""
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import BUILD, make_fixture, rel_err

TOOL = BUILD / "tests" / "dinv_sd_tool"


@pytest.mark.parametrize("model", ["tiny", "tiny2"])
def test_unet_gradient_wrt_conditioning(model, tmp_path):
    from diffusers import UNet2DConditionModel

    fixture = make_fixture(model)
    unet = UNet2DConditionModel.from_pretrained(fixture / "unet").eval().requires_grad_(False)
    g = torch.Generator().manual_seed(11)
    D = unet.config.cross_attention_dim
    inputs = {"sample": torch.randn(3, 4, 8, 8, generator=g), "timestep": torch.tensor([5, 400, 999]),
              "encoder_hidden_states": torch.randn(3, 6, D, generator=g),
              "weight": torch.randn(3, 4, 8, 8, generator=g)}
    save_file(inputs, tmp_path / "in.safetensors")
    r = subprocess.run([str(TOOL), "unet-grad", str(fixture), str(tmp_path / "in.safetensors"),
                        str(tmp_path / "out.safetensors")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ours = load_file(tmp_path / "out.safetensors")
    ctx = inputs["encoder_hidden_states"].clone().requires_grad_(True)
    out = unet(inputs["sample"], inputs["timestep"], ctx).sample
    (out * inputs["weight"]).sum().backward()
    assert rel_err(ours["sample"], out.detach()) <= 1e-4
    assert rel_err(ours["grad"], ctx.grad) <= 1e-4
