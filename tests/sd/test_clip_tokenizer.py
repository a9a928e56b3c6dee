"""CLIP tokenizer parity: our ids vs transformers' CLIPTokenizer built from the
same tokenizer/ folder (the real CLIP merges), SD 1.x and SD 2.x padding."""
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from clip_prompts import prompts  # noqa: E402

TOOL = os.environ["DINV_SD_TEXT"]
PADS = {"sd15": "<|endoftext|>", "sd21": "!"}


@pytest.fixture(scope="module", params=sorted(PADS))
def folder(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "tokenizer"
    subprocess.run([TOOL, "make-tokenizer", str(out), PADS[request.param]], check=True)
    return out


def run_tool(folder, texts, tmp_path):
    src, dst = tmp_path / "prompts.json", tmp_path / "ids.json"
    src.write_text(json.dumps(texts))
    subprocess.run([TOOL, "tokenize", str(folder), str(src), str(dst)], check=True)
    return json.loads(dst.read_text())


def test_folder_matches_clip_vocabulary(folder):
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version") and len(merges) == 1 + 48894


def test_ids_identical_to_transformers(folder, tmp_path):
    from transformers import CLIPTokenizer

    ref = CLIPTokenizer.from_pretrained(str(folder))
    texts = prompts(1200)
    ours = run_tool(folder, texts, tmp_path)
    expected = ref(texts, padding="max_length", max_length=ref.model_max_length, truncation=True).input_ids
    unpadded = ref(texts).input_ids
    mismatches = [(t, e, o) for t, e, o in zip(texts, expected, ours["ids"]) if e != o]
    for t, e, o in mismatches[:5]:
        print(repr(t), "\n  expected", e, "\n  ours    ", o)
    assert not mismatches, f"{len(mismatches)} of {len(texts)} prompts differ"
    truncated_ref = [len(u) > ref.model_max_length for u in unpadded]
    assert ours["truncated"] == truncated_ref
    assert any(truncated_ref) and not all(truncated_ref)
    print(f"tokenised {len(texts)} prompts in {ours['seconds']:.3f} s (load {ours['load_seconds']:.3f} s)")
