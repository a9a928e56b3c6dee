"""CLIPTextModel parity: last and penultimate hidden states (and diffusers'
clip_skip=1 conditioning) vs transformers, fp32 CPU, relative error <= 1e-4,
for a tiny config and the real SD 1.5 and SD 2.1 text-encoder configs (random
weights, made by transformers and cached under build/fixtures/)."""
import json
import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file

TOOL = os.environ["DINV_SD_TEXT"]
FIXTURES = os.path.join(os.environ["DINV_BUILD_DIR"], "fixtures", "clip_text")
TOLERANCE = 1e-4

CONFIGS = {
    "tiny": dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=3,
                 num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu"),
    # runwayml/stable-diffusion-v1-5 text_encoder/config.json
    "sd15": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768),
    # stabilityai/stable-diffusion-2-1 text_encoder/config.json
    "sd21": dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                 num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512),
}


def make_encoder(name):
    """A random-weight CLIPTextModel saved by transformers (cached: the SD ones are large)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    path = os.path.join(FIXTURES, name)
    stamp = os.path.join(path, "done.json")
    if os.path.exists(stamp) and json.load(open(stamp)) == CONFIGS[name]:
        return path
    torch.manual_seed(len(name))
    model = CLIPTextModel(CLIPTextConfig(**CONFIGS[name])).eval()
    with torch.no_grad():  # LayerNorms away from 1/0 so that their weights are tested too
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.normal_(1.0, 0.2)
                mod.bias.normal_(0.0, 0.2)
    model.save_pretrained(path, safe_serialization=True)
    json.dump(CONFIGS[name], open(stamp, "w"))
    return path


def final_norm(model):
    """diffusers' clip_skip applies text_model.final_layer_norm; transformers 5 has no text_model level."""
    return getattr(model, "text_model", model).final_layer_norm


def rel_err(ours, ref):
    return ((ours - ref).norm() / ref.norm()).item()


@pytest.fixture(scope="module", params=["tiny", "sd15", "sd21"])
def encoder(request):
    from transformers import CLIPTextModel

    path = make_encoder(request.param)
    return path, CLIPTextModel.from_pretrained(path, attn_implementation="eager").eval()


@pytest.mark.parametrize("batch", [1, 3])
def test_hidden_states_match_transformers(encoder, batch, tmp_path):
    path, ref = encoder
    gen = torch.Generator().manual_seed(batch)
    ids = torch.randint(0, 49408, (batch, 77), generator=gen)
    ids[:, 0] = 49406
    ids[0, 20:] = 49407  # an end token followed by padding, as the pipelines feed it
    save_file({"input_ids": ids}, str(tmp_path / "in.safetensors"))
    subprocess.run([TOOL, "encode", path, str(tmp_path / "in.safetensors"), str(tmp_path / "out.safetensors")],
                   check=True)
    ours = load_file(str(tmp_path / "out.safetensors"))
    with torch.no_grad():
        out = ref(ids, output_hidden_states=True)
        expected = {
            "last_hidden_state": out.last_hidden_state,
            "penultimate_hidden_state": out.hidden_states[-2],
            "clip_skip_1": final_norm(ref)(out.hidden_states[-2]),
        }
    for key, value in expected.items():
        assert ours[key].shape == value.shape, key
        err = rel_err(ours[key], value)
        print(f"{os.path.basename(path)} batch {batch} {key}: relative error {err:.2e}")
        assert err <= TOLERANCE, f"{key}: relative error {err:.2e} > {TOLERANCE}"


def test_encode_prompts_matches_pipeline_conditioning(tmp_path):
    """encode_prompts = tokenizer (padding to 77) + encoder, as SD pipelines compute prompt_embeds."""
    from transformers import CLIPTextModel, CLIPTokenizer

    path = make_encoder("tiny")
    tok_dir = tmp_path / "tokenizer"
    subprocess.run([TOOL, "make-tokenizer", str(tok_dir), "<|endoftext|>"], check=True)
    prompts = ["a photo of an astronaut riding a horse", "", "Ölgemälde, 8k! " * 30]
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    ref = CLIPTextModel.from_pretrained(path).eval()
    ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        out = ref(ids, output_hidden_states=True)
    for layer, expected in [("last", out.last_hidden_state),
                            ("penultimate", final_norm(ref)(out.hidden_states[-2]))]:
        dst = tmp_path / f"{layer}.safetensors"
        subprocess.run([TOOL, "encode-prompts", str(tok_dir), path, str(tmp_path / "p.json"), layer, str(dst)],
                       check=True)
        ours = load_file(str(dst))["conditioning"]
        assert ours.shape == (3, 77, 32)
        assert rel_err(ours, expected) <= TOLERANCE


def test_published_layout_loads(tmp_path):
    """Hub SD folders name the weights text_model.*; transformers 5 saves them bare. Both load alike."""
    import shutil

    from transformers import CLIPTextModel

    path = make_encoder("tiny")
    published = tmp_path / "text_encoder"
    published.mkdir()
    shutil.copy(os.path.join(path, "config.json"), published / "config.json")
    tensors = load_file(os.path.join(path, "model.safetensors"))
    save_file({"text_model." + k: v for k, v in tensors.items()}, str(published / "model.safetensors"))
    ids = torch.randint(0, 49408, (2, 77), generator=torch.Generator().manual_seed(7))
    save_file({"input_ids": ids}, str(tmp_path / "in.safetensors"))
    outs = []
    for folder in (path, str(published)):
        subprocess.run([TOOL, "encode", folder, str(tmp_path / "in.safetensors"), str(tmp_path / "out.safetensors")],
                       check=True)
        outs.append(load_file(str(tmp_path / "out.safetensors"))["last_hidden_state"])
    with torch.no_grad():
        ref = CLIPTextModel.from_pretrained(str(published)).eval()(ids).last_hidden_state
    assert torch.equal(outs[0], outs[1])
    assert rel_err(outs[1], ref) <= TOLERANCE
