"""`dinv model init|info|run` and the diffusers-folder loader: folders written
by dinv load in diffusers with equal outputs, folders written by diffusers
(single file, sharded, fp16 variant) load in dinv, and every kind of bad input
is refused with a message that names the file, the key or the tensor."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import sdconfigs
from conftest import make_fixture, perturb_, rel_err, run_dinv

TOL = 1e-4


def unet_inputs(cross_dim, B=2, S=16, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"sample": torch.randn(B, 4, S, S, generator=g), "timestep": torch.tensor([3, 870])[:B],
            "encoder_hidden_states": torch.randn(B, T, cross_dim, generator=g)}


def run_unet(folder, inputs, tmp_path, *extra, check=True):
    src, out = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_file(inputs, src)
    r = run_dinv("model", "run", folder, "--component", "unet", "--inputs", src, "--output", out, *extra, check=check)
    return (load_file(out)["sample"] if r.returncode == 0 else None), r


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory):
    out = tmp_path_factory.mktemp("init") / "tiny"
    r = run_dinv("model", "init", "--preset", "tiny", "--seed", "7", out)
    assert "text_encoder/ and tokenizer/ were not written" in r.stdout or (out / "text_encoder").is_dir()
    return out


def test_init_tiny_loads_in_diffusers(tiny_init, tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.schedulers import PNDMScheduler

    index = json.loads((tiny_init / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    sched = PNDMScheduler.from_pretrained(tiny_init / "scheduler")
    assert sched.config.skip_prk_steps and sched.config.steps_offset == 1
    unet = UNet2DConditionModel.from_pretrained(tiny_init / "unet").eval()
    assert unet.config.cross_attention_dim == 32
    inputs = unet_inputs(32)
    ours, _ = run_unet(tiny_init, inputs, tmp_path)
    with torch.no_grad():
        ref = unet(**inputs).sample
    assert rel_err(ours, ref) <= TOL
    vae = AutoencoderKL.from_pretrained(tiny_init / "vae").eval()
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    save_file({"sample": img}, tmp_path / "img.safetensors")
    run_dinv("model", "run", tiny_init, "--component", "vae-encode", "--inputs", tmp_path / "img.safetensors",
             "--output", tmp_path / "post.safetensors", "--seed", "5")
    post = load_file(tmp_path / "post.safetensors")
    with torch.no_grad():
        ref = vae.encode(img).latent_dist
    assert rel_err(post["mean"], ref.mean) <= TOL and rel_err(post["std"], ref.std) <= TOL
    assert post["latents"].shape == ref.mean.shape
    # A posterior sample: mean + std * N(0, 1) from the CPU generator seeded 5.
    noise = torch.randn(ref.mean.shape, generator=torch.Generator().manual_seed(5))
    assert rel_err(post["latents"], ref.mean + ref.std * noise) <= TOL
    # Deterministic: the same seed writes the same bytes.
    r2 = tmp_path / "again"
    run_dinv("model", "init", "--preset", "tiny", "--seed", "7", r2)
    for comp in ("unet", "vae"):
        f = f"{comp}/diffusion_pytorch_model.safetensors"
        assert (r2 / f).read_bytes() == (tiny_init / f).read_bytes()


@pytest.mark.parametrize("preset,unet_cfg,vae_cfg,scheduler", [
    ("tiny", sdconfigs.TINY_UNET, sdconfigs.TINY_VAE, "PNDMScheduler"),
    ("sd15", sdconfigs.SD15_UNET, sdconfigs.SD15_VAE, "PNDMScheduler"),
    ("sd21", sdconfigs.SD21_UNET, sdconfigs.SD21_VAE, "DDIMScheduler"),
])
def test_preset_configs_are_the_published_ones(preset, unet_cfg, vae_cfg, scheduler, tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    import inspect

    out = tmp_path / preset
    run_dinv("model", "init", "--preset", preset, "--configs-only", out)
    for comp, want, cls in (("unet", unet_cfg, UNet2DConditionModel), ("vae", vae_cfg, AutoencoderKL)):
        got = json.loads((out / comp / "config.json").read_text())
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
        # Every architecture key resolves to the published value.
        for k in set(defaults) | set(want):
            assert norm(got.get(k, defaults.get(k))) == norm(want.get(k, defaults.get(k))), (preset, comp, k)
    s = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert s["_class_name"] == scheduler
    assert (s["beta_start"], s["beta_end"], s["beta_schedule"]) == (0.00085, 0.012, "scaled_linear")
    if preset == "sd21":
        assert s["prediction_type"] == "v_prediction"


def test_info(tiny_init):
    r = run_dinv("model", "info", tiny_init, "--json")
    info = json.loads(r.stdout)
    assert info["pipeline"] == "StableDiffusionPipeline"
    unet = info["components"]["unet"]
    from diffusers import UNet2DConditionModel
    n = sum(p.numel() for p in UNet2DConditionModel.from_pretrained(tiny_init / "unet").parameters())
    assert unet["parameters"] == n
    assert unet["dtype"] == ["Float"]
    assert info["fingerprint"].startswith("sha256:") and len(info["fingerprint"]) == 71
    text = run_dinv("model", "info", tiny_init).stdout
    assert info["fingerprint"] in text and "UNet2DConditionModel" in text and "AutoencoderKL" in text


def test_fingerprint_follows_weights_and_config_not_layout(tmp_path):
    """Resaving with diffusers (other file layout, sharded) keeps the
    fingerprint; changing one weight or one config value changes it."""
    from diffusers import UNet2DConditionModel

    fixture = make_fixture("tiny")
    base = json.loads(run_dinv("model", "info", fixture, "--json").stdout)
    a = tmp_path / "a"
    shutil.copytree(fixture, a, ignore=shutil.ignore_patterns("cases"))
    unet = UNet2DConditionModel.from_pretrained(a / "unet")
    shutil.rmtree(a / "unet")
    unet.save_pretrained(a / "unet", safe_serialization=True, max_shard_size="1MB")
    assert (a / "unet" / "diffusion_pytorch_model.safetensors.index.json").exists()
    sharded = json.loads(run_dinv("model", "info", a, "--json").stdout)
    assert len(sharded["components"]["unet"]["files"]) > 1
    assert sharded["components"]["unet"]["fingerprint"] == base["components"]["unet"]["fingerprint"]
    # Sharded folders also run, with the same outputs.
    inputs = unet_inputs(32)
    o1, _ = run_unet(fixture, inputs, tmp_path)
    o2, _ = run_unet(a, inputs, tmp_path)
    assert torch.equal(o1, o2)
    # One changed weight.
    b = tmp_path / "b"
    shutil.copytree(fixture, b, ignore=shutil.ignore_patterns("cases"))
    f = b / "unet" / "diffusion_pytorch_model.safetensors"
    t = load_file(f)
    t["conv_in.bias"][0] += 1e-3
    save_file(t, f)
    changed = json.loads(run_dinv("model", "info", b, "--json").stdout)
    assert changed["components"]["unet"]["fingerprint"] != base["components"]["unet"]["fingerprint"]
    assert changed["fingerprint"] != base["fingerprint"]
    # One changed config value that does not change the architecture.
    c = tmp_path / "c"
    shutil.copytree(fixture, c, ignore=shutil.ignore_patterns("cases"))
    cfg = json.loads((c / "vae" / "config.json").read_text())
    cfg["scaling_factor"] = 0.2
    (c / "vae" / "config.json").write_text(json.dumps(cfg))
    changed = json.loads(run_dinv("model", "info", c, "--json").stdout)
    assert changed["components"]["vae"]["fingerprint"] != base["components"]["vae"]["fingerprint"]
    assert changed["components"]["unet"]["fingerprint"] == base["components"]["unet"]["fingerprint"]


def test_fp16_variant(tmp_path):
    """diffusers' variant files (diffusion_pytorch_model.fp16.safetensors):
    read with --variant fp16 (or as the only weights present), converted to
    the requested dtype; strict dtype checks name the tensor."""
    from diffusers import UNet2DConditionModel

    fixture = make_fixture("tiny")
    d = tmp_path / "m"
    unet = UNet2DConditionModel.from_pretrained(fixture / "unet").half()
    unet.save_pretrained(d / "unet", safe_serialization=True, variant="fp16")
    assert (d / "unet" / "diffusion_pytorch_model.fp16.safetensors").exists()
    inputs = unet_inputs(32)
    with torch.no_grad():
        ref = unet.float().eval()(**inputs).sample
    ours, _ = run_unet(d, inputs, tmp_path, "--variant", "fp16")
    assert rel_err(ours, ref) <= TOL
    ours2, _ = run_unet(d, inputs, tmp_path)  # the only variant present
    assert torch.equal(ours, ours2)
    _, r = run_unet(d, inputs, tmp_path, "--variant", "bf16", check=False)
    assert r.returncode == 1 and "no weights for variant 'bf16'" in r.stderr


def test_pickle_refused(tmp_path):
    from diffusers import UNet2DConditionModel

    fixture = make_fixture("tiny")
    d = tmp_path / "m"
    UNet2DConditionModel.from_pretrained(fixture / "unet").save_pretrained(d / "unet", safe_serialization=False)
    pkl = d / "unet" / "diffusion_pytorch_model.bin"
    assert pkl.exists()
    _, r = run_unet(d, unet_inputs(32), tmp_path, check=False)
    assert r.returncode == 1
    assert str(pkl) in r.stderr and "pickle" in r.stderr
    assert "diffusion_pytorch_model.safetensors" in r.stderr and "safe_serialization=True" in r.stderr


def test_info_stops_on_a_pickle_in_any_component(tmp_path):
    """`model info` describes a component without usable weights by its folder,
    but a pickle checkpoint stops it (a typed error, not a message search)."""
    fixture = make_fixture("tiny")
    d = tmp_path / "m"
    shutil.copytree(fixture, d, ignore=shutil.ignore_patterns("cases"))
    index = json.loads((d / "model_index.json").read_text())
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    (d / "model_index.json").write_text(json.dumps(index))
    (d / "safety_checker").mkdir()
    (d / "safety_checker" / "config.json").write_text("{}")
    (d / "safety_checker" / "notes.txt").write_text("no weights here")
    info = json.loads(run_dinv("model", "info", d, "--json").stdout)
    assert "parameters" not in info["components"]["safety_checker"]
    assert info["components"]["safety_checker"]["fingerprint"]  # the folder's, as before
    pkl = d / "safety_checker" / "pytorch_model.bin"
    pkl.write_bytes(b"not unpickled")
    r = run_dinv("model", "info", d, check=False)
    assert r.returncode == 1 and str(pkl) in r.stderr and "pickle checkpoint" in r.stderr


def make_broken(tmp_path, edit_weights=None, edit_config=None, component="unet"):
    fixture = make_fixture("tiny")
    d = tmp_path / "broken"
    shutil.copytree(fixture, d, ignore=shutil.ignore_patterns("cases"))
    if edit_weights:
        f = d / component / "diffusion_pytorch_model.safetensors"
        t = load_file(f)
        edit_weights(t)
        save_file(t, f)
    if edit_config:
        f = d / component / "config.json"
        c = json.loads(f.read_text())
        edit_config(c)
        f.write_text(json.dumps(c))
    return d


def unet_error(tmp_path, **kw):
    d = make_broken(tmp_path, **kw)
    _, r = run_unet(d, unet_inputs(32), tmp_path, check=False)
    assert r.returncode != 0
    return r.returncode, r.stderr


WEIGHT_FILE = "unet/diffusion_pytorch_model.safetensors"


@pytest.mark.parametrize("edit,expect", [
    (lambda t: t.pop("conv_in.weight"), ["missing tensor 'conv_in.weight'", "expected Float [32, 4, 3, 3]"]),
    (lambda t: t.update(extra=torch.ones(2)), [WEIGHT_FILE, "tensor 'extra'", "unexpected"]),
    (lambda t: t.update({"conv_in.bias": torch.ones(31)}),
     [WEIGHT_FILE, "tensor 'conv_in.bias'", "expected shape [32], found [31]"]),
    (lambda t: t.update({"conv_in.bias": torch.ones(32, dtype=torch.int32)}),
     [WEIGHT_FILE, "tensor 'conv_in.bias'", "expected dtype Float, found Int"]),
])
def test_weight_errors_name_file_and_tensor(tmp_path, edit, expect):
    code, err = unet_error(tmp_path, edit_weights=edit)
    assert code == 1
    for e in expect:
        assert e in err, (e, err)


@pytest.mark.parametrize("edit,expect", [
    (lambda c: c.update(down_block_types=["SimpleCrossAttnDownBlock2D", "DownBlock2D"]),
     "key 'down_block_types' value \"SimpleCrossAttnDownBlock2D\" is not supported"),
    (lambda c: c.update(up_block_types=["UpBlock2D", "KCrossAttnUpBlock2D"]),
     "key 'up_block_types' value \"KCrossAttnUpBlock2D\" is not supported"),
    (lambda c: c.update(mid_block_type="UNetMidBlock2DSimpleCrossAttn"),
     "key 'mid_block_type' value \"UNetMidBlock2DSimpleCrossAttn\" is not supported"),
    (lambda c: c.update(class_embed_type="timestep"), "key 'class_embed_type' value \"timestep\" is not supported"),
    (lambda c: c.update(addition_embed_type="text_time"), "key 'addition_embed_type'"),
    (lambda c: c.update(time_embedding_type="fourier"), "key 'time_embedding_type' value \"fourier\""),
    (lambda c: c.update(attention_type="gated"), "key 'attention_type' value \"gated\""),
    (lambda c: c.update(act_fn="tanh"), "key 'act_fn' value \"tanh\" is not supported"),
    (lambda c: c.update(attention_head_dim=[2, 3, 4]), "key 'attention_head_dim'"),
    (lambda c: c.update(attention_head_dim=5), "key 'attention_head_dim' value 5"),
    (lambda c: c.update(block_out_channels=[32]), "key 'block_out_channels'"),
    (lambda c: c.update(layers_per_block="two"), "key 'layers_per_block': expected an integer, found a string"),
    (lambda c: c.update(_class_name="UNet2DModel"), "key '_class_name' value \"UNet2DModel\""),
    (lambda c: c.update(cross_attention_dim=64), "expected shape [64, 64], found [64, 32]"),
])
def test_unet_config_errors_name_key_and_value(tmp_path, edit, expect):
    code, err = unet_error(tmp_path, edit_config=edit)
    assert code == 1
    assert expect in err, err
    assert "unet/config.json" in err or "diffusion_pytorch_model.safetensors" in err


@pytest.mark.parametrize("edit,expect", [
    (lambda c: c.update(down_block_types=["DownBlock2D", "DownEncoderBlock2D"]), "key 'down_block_types' value \"DownBlock2D\""),
    (lambda c: c.update(up_block_types=["UpDecoderBlock2D"]), "key 'up_block_types'"),
    (lambda c: c.update(norm_num_groups=7), "key 'block_out_channels'"),
    (lambda c: c.update(latents_mean=[0, 0, 0, 0]), "key 'latents_mean'"),
])
def test_vae_config_errors(tmp_path, edit, expect):
    d = make_broken(tmp_path, edit_config=edit, component="vae")
    save_file({"latents": torch.randn(1, 4, 8, 8)}, tmp_path / "z.safetensors")
    r = run_dinv("model", "run", d, "--component", "vae-decode", "--inputs", tmp_path / "z.safetensors",
                 "--output", tmp_path / "o.safetensors", check=False)
    assert r.returncode == 1 and expect in r.stderr and "vae/config.json" in r.stderr, r.stderr


def test_bad_files(tmp_path):
    d = make_broken(tmp_path)
    f = d / WEIGHT_FILE
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    _, r = run_unet(d, unet_inputs(32), tmp_path, check=False)
    assert r.returncode == 1 and str(f) in r.stderr and "not a valid safetensors file" in r.stderr
    (d / "unet" / "config.json").write_text("{ not json")
    _, r = run_unet(d, unet_inputs(32), tmp_path, check=False)
    assert r.returncode == 1 and "unet/config.json: invalid JSON" in r.stderr
    shutil.rmtree(d / "unet")
    _, r = run_unet(d, unet_inputs(32), tmp_path, check=False)
    assert r.returncode == 1 and "component folder not found" in r.stderr
    r = run_dinv("model", "info", tmp_path, check=False)
    assert r.returncode == 1 and "model_index.json not found" in r.stderr


def test_cli_usage_errors(tmp_path):
    fixture = make_fixture("tiny")
    save_file({"sample": torch.randn(1, 4, 8, 8)}, tmp_path / "x.safetensors")
    cases = [
        (["model"], 2, "usage"),
        (["model", "frobnicate"], 2, "unknown subcommand 'frobnicate'"),
        (["model", "run", fixture, "--component", "unet"], 2, "--inputs is required"),
        (["model", "run", fixture, "--component", "clip", "--inputs", tmp_path / "x.safetensors", "--output",
          tmp_path / "o"], 2, "unknown --component 'clip'"),
        (["model", "run", fixture, "--component", "unet", "--inputs", tmp_path / "x.safetensors", "--output",
          tmp_path / "o"], 2, "has no tensor 'timestep'"),
        (["model", "run", fixture, "--component", "unet", "--dtype", "fp8", "--inputs", tmp_path / "x.safetensors",
          "--output", tmp_path / "o"], 2, "--dtype 'fp8'"),
        (["model", "init", "--preset", "huge", tmp_path / "m"], 2, "unknown model preset 'huge'"),
        (["model", "info", fixture, "--bogus"], 2, "unknown option '--bogus'"),
    ]
    for args, code, msg in cases:
        r = run_dinv(*args, check=False)
        assert r.returncode == code, (args, r.returncode, r.stderr)
        assert msg in r.stderr + r.stdout, (args, r.stderr)
    assert run_dinv("model", "--help").stdout.count("vae-encode") == 1


def test_bad_input_shapes(tmp_path):
    fixture = make_fixture("tiny")
    bad = [
        ({"sample": torch.randn(2, 3, 8, 8), "timestep": torch.tensor(1), "encoder_hidden_states": torch.randn(2, 5, 32)},
         "sample must be [B, 4, h, w]"),
        ({"sample": torch.randn(2, 4, 8, 8), "timestep": torch.tensor([1, 2, 3]),
          "encoder_hidden_states": torch.randn(2, 5, 32)}, "timestep must be"),
        ({"sample": torch.randn(2, 4, 8, 8), "timestep": torch.tensor(1), "encoder_hidden_states": torch.randn(2, 5, 16)},
         "encoder_hidden_states has D = 16"),
        ({"sample": torch.randn(2, 4, 8, 8), "timestep": torch.tensor(1), "encoder_hidden_states": torch.randn(1, 5, 32)},
         "encoder_hidden_states must be [B=2, T, D]"),
    ]
    for inputs, msg in bad:
        _, r = run_unet(fixture, inputs, tmp_path, check=False)
        assert r.returncode == 1 and msg in r.stderr, r.stderr
