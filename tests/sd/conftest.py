"""Shared helpers of the Stable Diffusion tests: the dinv binary, and model
fixtures made by diffusers itself (random weights, save_pretrained with
safe_serialization) together with reference outputs, generated once per build
folder under build/fixtures/ (regenerated when the generator or the library
versions change)."""
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sdconfigs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("DINV_BUILD_DIR") or ROOT / "build")
DINV = os.environ.get("DINV") or str(BUILD / "dinv")
FIXTURES = BUILD / "fixtures"
THREADS = 2

torch.set_num_threads(THREADS)


def run_dinv(*args, check=True, env=None):
    e = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    e.update(env or {})
    r = subprocess.run([DINV, *map(str, args)], capture_output=True, text=True, env=e)
    if check and r.returncode != 0:
        raise AssertionError(f"dinv {' '.join(map(str, args))}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def perturb_(model, seed):
    """Random norm scales/shifts too (diffusers initialises them to 1 and 0),
    so that swapped or ignored norm parameters are caught."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.empty(p.shape).uniform_(-0.1, 0.1, generator=g))


def _generator_stamp(name):
    import diffusers
    src = Path(__file__).read_bytes() + Path(sdconfigs.__file__).read_bytes()
    return {"name": name, "diffusers": diffusers.__version__, "torch": torch.__version__,
            "source": hashlib.sha256(src).hexdigest()}


def _make_cases(name, unet, vae, latent, image, tokens):
    g = torch.Generator().manual_seed(1234)
    D = unet.config.cross_attention_dim
    cases = {}
    # UNet: batch 1 with a scalar timestep, batch 3 with three timesteps.
    cases["unet_b1"] = {"sample": torch.randn(1, 4, latent, latent, generator=g),
                        "timestep": torch.tensor(999), "encoder_hidden_states": torch.randn(1, tokens, D, generator=g)}
    cases["unet_b3"] = {"sample": torch.randn(3, 4, latent, latent, generator=g),
                        "timestep": torch.tensor([0, 421, 980]),
                        "encoder_hidden_states": torch.randn(3, tokens, D, generator=g)}
    if name.startswith("tiny"):
        # Sizes that are not multiples of the up factor; fractional timesteps.
        cases["unet_odd"] = {"sample": torch.randn(2, 4, latent - 3, latent + 1, generator=g),
                             "timestep": torch.tensor([10.5, 733.25], dtype=torch.float32),
                             "encoder_hidden_states": torch.randn(2, tokens, D, generator=g)}
    C = vae.config.latent_channels
    f = 2 ** (len(vae.config.block_out_channels) - 1)
    cases["vae_encode_b1"] = {"sample": torch.rand(1, 3, image, image, generator=g) * 2 - 1}
    cases["vae_encode_b3"] = {"sample": torch.rand(3, 3, image, image, generator=g) * 2 - 1}
    cases["vae_decode_b1"] = {"latents": torch.randn(1, C, image // f, image // f, generator=g)}
    cases["vae_decode_b3"] = {"latents": torch.randn(3, C, image // f, image // f, generator=g)}
    refs = {}
    with torch.no_grad():
        for k, v in cases.items():
            if k.startswith("unet"):
                refs[k] = {"sample": unet(v["sample"], v["timestep"], v["encoder_hidden_states"]).sample}
            elif k.startswith("vae_encode"):
                post = vae.encode(v["sample"]).latent_dist
                refs[k] = {"mean": post.mean, "std": post.std}
            else:
                refs[k] = {"sample": vae.decode(v["latents"]).sample}
    return cases, refs


def make_fixture(name):
    """build/fixtures/<name>: a diffusers folder (unet/, vae/, model_index.json)
    saved by diffusers, and cases/<case>.{in,ref}.safetensors."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file

    out = FIXTURES / name
    stamp = _generator_stamp(name)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    with open(FIXTURES / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp_file = out / "stamp.json"
        if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
            return out
        tmp = FIXTURES / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        unet_cfg, vae_cfg, latent, image, tokens = sdconfigs.MODELS[name]
        torch.manual_seed(sum(map(ord, name)))
        unet = UNet2DConditionModel(**unet_cfg).eval()
        vae = AutoencoderKL(**vae_cfg).eval()
        perturb_(unet, 1)
        perturb_(vae, 2)
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        vae.save_pretrained(tmp / "vae", safe_serialization=True)
        (tmp / "model_index.json").write_text(json.dumps({
            "_class_name": "StableDiffusionPipeline", "_diffusers_version": stamp["diffusers"],
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
        cases, refs = _make_cases(name, unet, vae, latent, image, tokens)
        (tmp / "cases").mkdir()
        for k in cases:
            save_file(cases[k], tmp / "cases" / f"{k}.in.safetensors")
            save_file({n: t.contiguous() for n, t in refs[k].items()}, tmp / "cases" / f"{k}.ref.safetensors")
        del unet, vae
        (tmp / "stamp.json").write_text(json.dumps(stamp))
        tmp.rename(out)
        return out


@pytest.fixture(scope="session")
def dinv_bin():
    if not Path(DINV).exists():
        pytest.fail(f"{DINV} is not built")
    return DINV
