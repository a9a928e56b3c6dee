"""`dinv model` text side: init writes text_encoder/ and tokenizer/ that
transformers loads; `run --component text-encoder` and `tokenize` match it."""
import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file

DINV = os.environ["DINV"]


def dinv(*args):
    return subprocess.run([DINV, *map(str, args)], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "model"
    dinv("model", "init", "--preset", "tiny", "--seed", "5", out)
    return out


def rel_err(ours, ref):
    return ((ours - ref).norm() / ref.norm()).item()


def test_init_writes_text_components_transformers_loads(model):
    from transformers import CLIPTextModel, CLIPTokenizer

    encoder = CLIPTextModel.from_pretrained(str(model / "text_encoder"))
    assert encoder.config.hidden_size == 32 and encoder.config.hidden_act == "quick_gelu"
    tokenizer = CLIPTokenizer.from_pretrained(str(model / "tokenizer"))
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.model_max_length == 77
    assert len(tokenizer) == 49408
    index = (model / "model_index.json").read_text()
    assert '"CLIPTextModel"' in index and '"CLIPTokenizer"' in index


def test_run_text_encoder_matches_transformers(model, tmp_path):
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(model / "tokenizer"))
    ids = tokenizer(["a red fox in the snow", ""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    save_file({"input_ids": ids}, str(tmp_path / "in.safetensors"))
    dinv("model", "run", model, "--component", "text-encoder", "--inputs", tmp_path / "in.safetensors",
         "--output", tmp_path / "out.safetensors")
    ours = load_file(str(tmp_path / "out.safetensors"))
    with torch.no_grad():
        ref = CLIPTextModel.from_pretrained(str(model / "text_encoder"))(ids, output_hidden_states=True)
    assert rel_err(ours["last_hidden_state"], ref.last_hidden_state) <= 1e-4
    assert rel_err(ours["penultimate_hidden_state"], ref.hidden_states[-2]) <= 1e-4


def test_tokenize_prints_ids_and_warns_when_truncated(model):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(model / "tokenizer"))
    text = "A photo of an astronaut, riding a horse!"
    r = dinv("model", "tokenize", model, text)
    ids_line = next(line for line in r.stdout.splitlines() if line.startswith("ids:"))
    assert [int(x) for x in ids_line.split()[1:]] == tokenizer(text).input_ids
    assert "<|startoftext|> a</w> photo</w>" in r.stdout
    assert "truncated" not in r.stderr
    r = dinv("model", "tokenize", model / "tokenizer", "word " * 100)
    assert "truncated" in r.stderr and "102 tokens" in r.stderr
    assert "length: 77 of 77" in r.stdout


def test_tokenize_refuses_non_utf8(model):
    r = subprocess.run([DINV.encode(), b"model", b"tokenize", str(model).encode(), b"caf\xe9"], capture_output=True)
    assert r.returncode != 0
    assert b"byte offset 3" in r.stderr


def test_info_describes_text_components(model):
    out = dinv("model", "info", model).stdout
    assert "CLIPTextModel: 5 layers, width 32, 4 heads, quick_gelu" in out
    assert "CLIPTokenizer: 49408 tokens, max length 77, pad '<|endoftext|>' (id 49407)" in out


def test_encode_prompts_matches_diffusers_pipeline(model, tmp_path):
    """Our conditioning for prompts and for the empty (unconditional) prompt = diffusers' encode_prompt."""
    import json

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model), safety_checker=None, requires_safety_checker=False)
    prompts = ["a cat", "A dog on the moon, 8k!"]
    cond, uncond = pipe.encode_prompt(prompts, "cpu", 1, True, negative_prompt=["", ""])
    (tmp_path / "p.json").write_text(json.dumps(prompts + [""]))
    dst = tmp_path / "c.safetensors"
    subprocess.run([os.environ["DINV_SD_TEXT"], "encode-prompts", model / "tokenizer", model / "text_encoder",
                    tmp_path / "p.json", "last", dst], check=True)
    ours = load_file(str(dst))["conditioning"]
    assert rel_err(ours[:2], cond) <= 1e-4
    assert rel_err(ours[2:], uncond[:1]) <= 1e-4
