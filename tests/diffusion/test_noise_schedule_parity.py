"""The training noise schedule against diffusers' DDPMScheduler: betas and
alphas_cumprod bitwise equal (same float32 operations), add_noise and
get_velocity for a batch of per-sample timesteps within relative error 1e-6,
and the training target chosen by prediction_type."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

TOOL = Path(os.environ.get("DINV_BUILD_DIR", "build")) / "tests" / "dinv_diffusion_tool"

CONFIGS = [
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "epsilon"},
    {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "prediction_type": "v_prediction"},
    {"beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample", "num_train_timesteps": 500},
]


@pytest.mark.parametrize("config", CONFIGS)
def test_schedule_matches_diffusers(tmp_path, config):
    config = dict(config, _class_name="DDPMScheduler")
    (tmp_path / "scheduler_config.json").write_text(json.dumps(config))
    ref = DDPMScheduler.from_config(config)
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((6, 4, 8, 8)).astype(np.float32)
    noise = rng.standard_normal((6, 4, 8, 8)).astype(np.float32)
    t = rng.integers(0, ref.config.num_train_timesteps, size=6).astype(np.int64)
    t[0], t[1] = 0, ref.config.num_train_timesteps - 1
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir(), out.mkdir()
    for name, value in (("x0", x0), ("noise", noise), ("t", t)):
        np.save(inp / f"{name}.npy", value)
    subprocess.run([str(TOOL), "schedule", "--config", str(tmp_path / "scheduler_config.json"), "--out", str(out),
                    "--in", str(inp)], check=True)
    np.testing.assert_array_equal(np.load(out / "betas.npy"), ref.betas.numpy())
    np.testing.assert_array_equal(np.load(out / "alphas_cumprod.npy"), ref.alphas_cumprod.numpy())
    tx0, tnoise, tt = torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t)
    noisy = ref.add_noise(tx0, tnoise, tt).numpy()
    velocity = ref.get_velocity(tx0, tnoise, tt).numpy()
    np.testing.assert_allclose(np.load(out / "noisy.npy"), noisy, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.load(out / "velocity.npy"), velocity, rtol=1e-6, atol=1e-6)
    target = {"epsilon": noise, "v_prediction": velocity, "sample": x0}[config["prediction_type"]]
    np.testing.assert_allclose(np.load(out / "target.npy"), target, rtol=1e-6, atol=1e-6)


def test_timestep_out_of_range_is_an_error(tmp_path):
    (tmp_path / "scheduler_config.json").write_text(json.dumps({"num_train_timesteps": 100}))
    inp = tmp_path / "in"
    inp.mkdir()
    np.save(inp / "x0.npy", np.zeros((2, 1, 2, 2), np.float32))
    np.save(inp / "noise.npy", np.zeros((2, 1, 2, 2), np.float32))
    np.save(inp / "t.npy", np.array([3, 100], np.int64))
    r = subprocess.run([str(TOOL), "schedule", "--config", str(tmp_path / "scheduler_config.json"), "--out",
                        str(tmp_path), "--in", str(inp)], capture_output=True, text=True)
    assert r.returncode != 0 and "timestep 100" in r.stderr and "[0, 99]" in r.stderr
