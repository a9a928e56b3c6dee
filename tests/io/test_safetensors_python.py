"""dinv's safetensors reader/writer against the Python `safetensors` package:
files written by Python are read by dinv and vice versa, bit-exact, and dinv's
writer produces the same bytes as the reference writer."""
import os
import struct
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

BUILD = Path(os.environ.get("DINV_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))
TOOL = BUILD / "tests" / "dinv_safetensors_tool"


def tool(*args, check=True):
    r = subprocess.run([str(TOOL), *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{args}: rc {r.returncode}: {r.stderr}")
    return r


def bits(t):
    """A tensor's raw bytes (bit-exact comparison, NaN-safe)."""
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def python_tensors():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, generator=g)
    x[0, 0, 0] = float("nan")
    x[0, 0, 1] = float("inf")
    x[0, 0, 2] = -0.0
    return {
        "model.f32": x,
        "model.f16": x.half(),
        "model.bf16": x.bfloat16(),
        "model.f64": x.double(),
        "i64": torch.randint(-(2**62), 2**62, (9,), generator=g),
        "i32": torch.randint(-(2**31), 2**31 - 1, (4, 4), generator=g, dtype=torch.int32),
        "i16": torch.arange(-3, 3, dtype=torch.int16),
        "i8": torch.arange(-3, 3, dtype=torch.int8),
        "u8": torch.arange(0, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "zero": torch.zeros(0, 4),
        "unicode.é": torch.ones(2),
    }


@pytest.fixture(scope="module")
def built():
    if not TOOL.exists():
        pytest.fail(f"{TOOL} not built")


def test_python_written_read_by_dinv_bit_exact(built, tmp_path):
    src, out = tmp_path / "py.safetensors", tmp_path / "dinv.safetensors"
    tensors = python_tensors()
    save_file(tensors, src)
    tool("copy", src, out)
    back = load_file(out)
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype, k
        assert back[k].shape == v.shape, k
        assert bits(back[k]) == bits(v), k
    # Same layout as the reference writer: byte-identical file.
    assert out.read_bytes() == src.read_bytes()


def test_metadata_round_trip(built, tmp_path):
    src, out = tmp_path / "py.safetensors", tmp_path / "dinv.safetensors"
    save_file({"w": torch.ones(3)}, src, metadata={"format": "pt", "note": "a \"quoted\" ü"})
    tool("copy", src, out)
    with safe_open(out, "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "a \"quoted\" ü"}
        assert torch.equal(f.get_tensor("w"), torch.ones(3))


def test_dinv_written_read_by_python(built, tmp_path):
    out = tmp_path / "made.safetensors"
    tool("make", out)
    t = load_file(out)
    x = (torch.arange(-12, 12, dtype=torch.float64) / 7).reshape(2, 3, 4)
    want = {
        "f32": x.float(), "f16": x.half(), "bf16": x.bfloat16(), "f64": x,
        "i64": torch.arange(-5, 5, dtype=torch.int64) * 1000000007,
        "i32": torch.arange(-5, 5, dtype=torch.int32), "i16": torch.arange(-5, 5, dtype=torch.int16),
        "i8": torch.arange(-5, 5, dtype=torch.int8), "u8": torch.arange(0, 256).to(torch.uint8),
        "bool": torch.arange(6) % 3 == 0, "scalar": torch.tensor(1.5), "zero_size": torch.empty(0, 4),
    }
    assert t.keys() == want.keys()
    for k, v in want.items():
        assert t[k].dtype == v.dtype and t[k].shape == v.shape, k
        assert bits(t[k]) == bits(v), k
    with safe_open(out, "pt") as f:
        assert f.metadata() == {"format": "pt"}
    # Re-saving with Python gives the same bytes (same layout and padding).
    again = tmp_path / "again.safetensors"
    save_file(t, again, metadata={"format": "pt"})
    assert again.read_bytes() == out.read_bytes()


def test_header_alignment_matches_reference(built, tmp_path):
    for n in range(1, 12):
        src, out = tmp_path / f"a{n}.safetensors", tmp_path / f"b{n}.safetensors"
        save_file({"x" * n: torch.ones(n, dtype=torch.uint8)}, src)
        tool("copy", src, out)
        data = out.read_bytes()
        (hlen,) = struct.unpack("<Q", data[:8])
        assert (8 + hlen) % 8 == 0
        assert data == src.read_bytes()


def test_invalid_files_refused(built, tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"a": torch.ones(4), "b": torch.zeros(2)}, good)
    data = good.read_bytes()
    (hlen,) = struct.unpack("<Q", data[:8])
    cases = {
        "truncated": data[:-3],
        "short": data[:5],
        "length_too_big": struct.pack("<Q", len(data)) + data[8:],
        "bad_json": data[:8] + b"{" + b" " * (hlen - 1) + data[8 + hlen:],
    }
    for name, blob in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(blob)
        r = tool("check", p, check=False)
        assert r.returncode == 1, name
        assert str(p) in r.stderr, (name, r.stderr)
        # The reference refuses them too.
        with pytest.raises(Exception):
            load_file(p)
