"""Hostile model folders (issue 19): component configs with sizes that divide
by zero, are negative, or ask for terabytes, and JSON nested 200,000 deep.
The tiny preset is made once by `dinv model init`; each test edits a copy of
one config and runs `dinv model info`, which builds the modules from their
configs (on the meta device) and checks the weights."""
import json
import shutil

import pytest

from hostile_util import dinv, refused


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("model") / "tiny"
    r = dinv("model", "init", "--preset", "tiny", root)
    assert r.returncode == 0, r.stderr
    return root


def edited(tiny, tmp_path, component, **changes):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    cfg = model / component / "config.json"
    data = json.loads(cfg.read_text())
    data.update(changes)
    cfg.write_text(json.dumps(data))
    return model


def test_valid_model_is_described(tiny):
    r = dinv("model", "info", tiny)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("component,changes,needles", [
    ("unet", {"norm_num_groups": 0}, ["norm_num_groups", "out of range"]),
    ("vae", {"norm_num_groups": 0}, ["norm_num_groups", "out of range"]),
    ("unet", {"norm_num_groups": -8}, ["norm_num_groups"]),
    ("unet", {"block_out_channels": [2 ** 36, 2 ** 36]}, ["block_out_channels", "out of range"]),
    ("unet", {"in_channels": -4}, ["in_channels"]),
    ("unet", {"cross_attention_dim": -1}, ["cross_attention_dim"]),
    ("unet", {"cross_attention_dim": 0}, ["cross_attention_dim"]),
    ("unet", {"attention_head_dim": 0}, ["attention_head_dim"]),
    ("unet", {"layers_per_block": 10 ** 9}, ["layers_per_block"]),
    ("unet", {"time_embedding_dim": 2 ** 40}, ["time_embedding_dim"]),
    ("unet", {"block_out_channels": [1e30, 1e30]}, ["block_out_channels"]),
    ("vae", {"latent_channels": 0}, ["latent_channels"]),
    ("vae", {"in_channels": -3}, ["in_channels"]),
    ("vae", {"block_out_channels": [2 ** 36, 2 ** 36]}, ["block_out_channels"]),
])
def test_bad_sizes_are_refused_naming_file_and_key(tiny, tmp_path, component, changes, needles):
    model = edited(tiny, tmp_path, component, **changes)
    refused(dinv("model", "info", model), 1, f"{component}/config.json", *needles)


def test_deeply_nested_json_is_refused(tiny, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    cfg = model / "unet" / "config.json"
    text = cfg.read_text().rstrip()
    depth = 200_000
    cfg.write_text(text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}")
    refused(dinv("model", "info", model), 1, "unet/config.json", "nested deeper than 128")


def test_model_whose_config_disagrees_with_its_weights_is_refused_before_allocating(tiny, tmp_path):
    # Valid sizes, but not those of the file: refused naming file and tensor.
    model = edited(tiny, tmp_path, "unet", block_out_channels=[64, 128])
    refused(dinv("model", "info", model), 1, "diffusion_pytorch_model.safetensors")
