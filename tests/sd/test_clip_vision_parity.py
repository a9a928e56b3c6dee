"""CLIPVisionModelWithProjection parity: image_embeds and last_hidden_state vs
transformers, fp32 CPU, relative error <= 1e-4, on configs that transformers
saves (random weights): a tiny one, and the ViT-B/32 and ViT-L/14 layouts
(224 px, patch 32 / 14) at tiny widths. CLIP's preprocessing (shortest-side
bicubic resize, centre crop, rescale, normalise) vs transformers' image
processor on real-sized PNGs."""
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

TOOL = os.environ["DINV_CLIP_VISION"]
TOLERANCE = 1e-4

CONFIGS = {
    "tiny": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
                 image_size=30, patch_size=6, projection_dim=16, hidden_act="gelu"),
    # openai/clip-vit-base-patch32's layout (224 px, patch 32, quick_gelu), tiny widths
    "vit_b32": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    image_size=224, patch_size=32, projection_dim=24, hidden_act="quick_gelu"),
    # openai/clip-vit-large-patch14's layout (224 px, patch 14, quick_gelu), tiny widths
    "vit_l14": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6,
                    image_size=224, patch_size=14, projection_dim=32, hidden_act="quick_gelu"),
}


def make_model(root, name, crop=None):
    """A random CLIPVisionModelWithProjection + CLIPImageProcessor folder, saved by transformers."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    path = os.path.join(root, name)
    torch.manual_seed(len(name))
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**CONFIGS[name])).eval()
    with torch.no_grad():  # LayerNorms away from 1/0 so that their weights are tested too
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.normal_(1.0, 0.2)
                mod.bias.normal_(0.0, 0.2)
    model.save_pretrained(path, safe_serialization=True)
    size = CONFIGS[name]["image_size"]
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(path)
    return path


def rel_err(ours, ref):
    return ((ours.double() - ref.double()).norm() / ref.double().norm()).item()


def run(*args):
    r = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("name", list(CONFIGS))
def test_outputs_match_transformers(name, tmp_path):
    from transformers import CLIPVisionModelWithProjection

    path = make_model(str(tmp_path), name)
    ref = CLIPVisionModelWithProjection.from_pretrained(path, attn_implementation="eager").eval()
    size = CONFIGS[name]["image_size"]
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    save_file({"pixel_values": pixels}, str(tmp_path / "in.safetensors"))
    run("encode", path, tmp_path / "in.safetensors", tmp_path / "out.safetensors")
    ours = load_file(str(tmp_path / "out.safetensors"))
    with torch.no_grad():
        out = ref(pixel_values=pixels)
    for key in ("image_embeds", "last_hidden_state"):
        expected = getattr(out, key)
        assert ours[key].shape == expected.shape, key
        err = rel_err(ours[key], expected)
        print(f"{name} {key}: relative error {err:.2e}")
        assert err <= TOLERANCE, f"{name} {key}: relative error {err:.2e} > {TOLERANCE}"


def write_images(folder):
    """Photo-sized PNGs (landscape, portrait, square, small, grey): smooth gradients plus noise."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w, mode) in enumerate([(375, 500, "RGB"), (640, 427, "RGB"), (224, 224, "RGB"), (97, 250, "RGB"),
                                      (300, 301, "L")]):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], -1)
        img = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
        pil = Image.fromarray(img).convert(mode)
        paths.append(str(folder / f"img{i}.png"))
        pil.save(paths[-1])
    return paths


PROCESSORS = {
    "clip": {},  # CLIP's defaults: 224, bicubic, OpenAI mean/std
    "custom": dict(size={"shortest_edge": 64}, crop_size={"height": 48, "width": 56}, image_mean=[0.5, 0.4, 0.3],
                   image_std=[0.2, 0.25, 0.3], resample=3),
}


@pytest.mark.parametrize("proc", list(PROCESSORS))
def test_preprocessing_matches_image_processor(proc, tmp_path):
    """Equal to the Pillow backend (CLIPImageProcessorPil, the resize original CLIP uses) up to float rounding."""
    from transformers import CLIPImageProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    CLIPImageProcessor(**PROCESSORS[proc]).save_pretrained(str(tmp_path))
    images = write_images(tmp_path)
    run("preprocess", tmp_path / "preprocessor_config.json", tmp_path / "pre.safetensors", *images)
    ours = load_file(str(tmp_path / "pre.safetensors"))
    pil = CLIPImageProcessorPil.from_pretrained(str(tmp_path))
    for i, path in enumerate(images):
        expected = torch.from_numpy(np.asarray(pil(Image.open(path), return_tensors="np")["pixel_values"][0]))
        assert ours[str(i)].shape == expected.shape, path
        diff = (ours[str(i)] - expected).abs().max().item()
        assert diff <= 1e-5, f"{path}: max difference {diff} from CLIPImageProcessorPil"


def test_preprocessing_close_to_torchvision_backend(tmp_path):
    """transformers 5's CLIPImageProcessor resizes with torchvision's
    antialiased bicubic when torchvision is installed, which differs from
    Pillow's by a uint8 level here and there: the inputs agree to within that.
    Without torchvision (as in dinv's venv) it falls back to the Pillow backend
    and agrees exactly."""
    from transformers import CLIPImageProcessor

    proc = CLIPImageProcessor()
    proc.save_pretrained(str(tmp_path))
    images = write_images(tmp_path)
    run("preprocess", tmp_path / "preprocessor_config.json", tmp_path / "pre.safetensors", *images)
    ours = load_file(str(tmp_path / "pre.safetensors"))
    for i, path in enumerate(images):
        expected = proc(Image.open(path), return_tensors="pt")["pixel_values"][0]
        err = rel_err(ours[str(i)], expected)
        levels = ((ours[str(i)] - expected).abs() * torch.tensor(proc.image_std).view(3, 1, 1) * 255).max().item()
        print(f"{os.path.basename(path)}: relative error {err:.2e}, max {levels:.2f} uint8 levels")
        assert levels <= 2.01 and err <= 1e-2, path


def test_features_of_image_files_match_transformers(tmp_path):
    """Files -> preprocessing -> model, as `dinv retrieve` computes image features."""
    from transformers import CLIPVisionModelWithProjection
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    path = make_model(str(tmp_path), "vit_b32")
    images = write_images(tmp_path)
    run("features", path, tmp_path / "f.safetensors", *images)
    ours = load_file(str(tmp_path / "f.safetensors"))["image_embeds"]
    ref = CLIPVisionModelWithProjection.from_pretrained(path).eval()
    pixels = CLIPImageProcessorPil.from_pretrained(path)([Image.open(p) for p in images], return_tensors="pt")
    with torch.no_grad():
        expected = ref(**pixels).image_embeds
    assert rel_err(ours, expected) <= TOLERANCE


def test_bad_model_folder_is_named(tmp_path):
    path = make_model(str(tmp_path), "tiny")
    cfg = json.load(open(os.path.join(path, "config.json")))
    cfg["patch_size"] = 7  # 30 is not a multiple of 7
    json.dump(cfg, open(os.path.join(path, "config.json"), "w"))
    r = subprocess.run([TOOL, "encode", path, "x", "y"], capture_output=True, text=True)
    assert r.returncode == 1 and "config.json" in r.stderr and "patch_size" in r.stderr, r.stderr
    r = subprocess.run([TOOL, "encode", str(tmp_path / "absent"), "x", "y"], capture_output=True, text=True)
    assert r.returncode == 1 and "absent" in r.stderr, r.stderr
