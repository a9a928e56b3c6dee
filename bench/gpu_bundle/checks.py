#!/usr/bin/env python3
"""Helpers of run_checks.sh (the GPU bundle's check script). Needs only the
Python standard library and torch, so that the correctness checks run on an
image that has torch and nothing else of the project's Python stack.

    checks.py inputs KIND MODEL OUT [--batch B] [--latent S] [--tokens T] [--seed N]
        KIND: unet | vae-encode | vae-decode | text-encoder (inputs of `dinv model run`)
    checks.py compare REF OUT NAME TOL         relative L2 error of tensor NAME; prints it, exit 1 above TOL
    checks.py images REF OUT TOL               max |difference| of uint8 "images" (levels); exit 1 above TOL
    checks.py losses REF_LOG OUT_LOG TOL [PHASE]  per-step losses of two dinv logs' progress lines of PHASE
                                               (default "embed (rank 0)"); max relative difference
    checks.py metrics REF_LOG OUT_LOG TOL      the metric rows printed by two `dinv evaluate` runs; max relative difference
    checks.py accuracy LOG                     the final accuracy printed by `dinv train`
    checks.py table RESULTS.tsv                the summary table
safetensors files are read and written here directly (8-byte header length,
JSON header, raw little-endian data), without the safetensors package."""
import ctypes
import json
import math
import re
import struct
import sys

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        if end > begin:
            t = torch.frombuffer(bytearray(data[8 + n + begin:8 + n + end]), dtype=dtype)
        else:
            t = torch.empty(0, dtype=dtype)
        out[key] = t.reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for key, t in tensors.items():
        t = t.detach().cpu().contiguous()
        blob = ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()) if t.numel() else b""
        header[key] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def config(model, component):
    with open(f"{model}/{component}/config.json") as f:
        return json.load(f)


def make_inputs(kind, model, out, batch=2, latent=16, tokens=77, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "unet":
        u = config(model, "unet")
        dim = u["cross_attention_dim"]
        dim = dim[0] if isinstance(dim, list) else dim
        t = {"sample": torch.randn(batch, u["in_channels"], latent, latent, generator=g),
             "timestep": torch.linspace(50, 950, batch),
             "encoder_hidden_states": torch.randn(batch, tokens, dim, generator=g)}
    elif kind == "vae-encode":
        factor = 2 ** (len(config(model, "vae")["block_out_channels"]) - 1)
        t = {"sample": torch.rand(batch, 3, latent * factor, latent * factor, generator=g) * 2 - 1}
    elif kind == "vae-decode":
        v = config(model, "vae")
        t = {"latents": torch.randn(batch, v["latent_channels"], latent, latent, generator=g)}
    elif kind == "text-encoder":
        c = config(model, "text_encoder")
        length = min(tokens, c.get("max_position_embeddings", 77))
        ids = torch.randint(0, c["vocab_size"] - 2, (batch, length), generator=g)
        ids[:, 0] = c.get("bos_token_id", 49406) if c["vocab_size"] > 49407 else c["vocab_size"] - 2
        ids[:, length // 2] = c["vocab_size"] - 1  # the end token (the largest id in CLIP's vocabulary)
        t = {"input_ids": ids.long()}
    else:
        raise SystemExit(f"checks.py inputs: unknown kind {kind}")
    write_safetensors(out, t)


def rel_err(ref, out):
    ref, out = ref.double(), out.double()
    if ref.shape != out.shape:
        raise SystemExit(f"shapes differ: {list(ref.shape)} vs {list(out.shape)}")
    if not torch.isfinite(out).all():
        return math.inf
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def main(argv):
    cmd = argv[0] if argv else ""
    if cmd == "inputs":
        opts = dict(zip(argv[4::2], argv[5::2]))
        make_inputs(argv[1], argv[2], argv[3], int(opts.get("--batch", 2)), int(opts.get("--latent", 16)),
                    int(opts.get("--tokens", 77)), int(opts.get("--seed", 0)))
    elif cmd == "compare":
        ref, out, name, tol = argv[1], argv[2], argv[3], float(argv[4])
        e = rel_err(read_safetensors(ref)[name], read_safetensors(out)[name])
        print(f"{e:.3g}")
        return 0 if e <= tol else 1
    elif cmd == "images":
        ref, out, tol = read_safetensors(argv[1])["images"], read_safetensors(argv[2])["images"], float(argv[3])
        d = (ref.int() - out.int()).abs()
        print(f"max {d.max().item()} levels, mean {d.double().mean().item():.3g}")
        return 0 if d.max().item() <= tol else 1
    elif cmd == "losses":
        phase = argv[4] if len(argv) > 4 else "embed (rank 0)"
        pattern = re.compile(re.escape(phase) + r": (\d+)/\d+.*?loss ([-+0-9.eE]+|nan|inf)")
        def losses(path):
            found = {}
            for line in open(path, errors="replace"):
                m = pattern.search(line)
                if m:
                    found[int(m.group(1))] = float(m.group(2))
            return found
        a, b, tol = losses(argv[1]), losses(argv[2]), float(argv[3])
        steps = sorted(set(a) & set(b))
        if not steps:
            print(f"no common steps (reference {len(a)} lines, run {len(b)})")
            return 1
        worst = max(abs(b[s] - a[s]) / max(abs(a[s]), 1e-12) for s in steps)
        print(f"{worst:.3g} over {len(steps)} steps (loss {a[steps[-1]]:.4g} vs {b[steps[-1]]:.4g} at step {steps[-1]})")
        return 0 if worst <= tol else 1
    elif cmd == "metrics":
        def rows(path):
            lines = [l.rstrip("\n").split("\t") for l in open(path, errors="replace")]
            head = next((l for l in lines if l[:2] == ["tag", "fid"]), None)
            if head is None:
                return {}
            return {l[0]: dict(zip(head[1:], map(float, l[1:]))) for l in lines
                    if len(l) == len(head) and l[0] != "tag" and all(re.fullmatch(r"[-+0-9.eE]+|nan|inf", v) for v in l[1:])}
        a, b, tol = rows(argv[1]), rows(argv[2]), float(argv[3])
        if not a or a.keys() != b.keys():
            print(f"tags differ: {sorted(a)} vs {sorted(b)}")
            return 1
        diffs = {(t, k): abs(b[t][k] - v) / max(abs(v), 1e-6) for t in a for k, v in a[t].items()}
        t, k = max(diffs, key=diffs.get)
        print(f"{diffs[t, k]:.3g} ({t} {k}: {a[t][k]:.6g} vs {b[t][k]:.6g}; {len(diffs)} values)")
        return 0 if diffs[t, k] <= tol else 1
    elif cmd == "accuracy":
        for line in open(argv[1], errors="replace"):
            m = re.search(r"final accuracy[^0-9]*([0-9.]+)", line)
            if m:
                value = m.group(1)
        print(value if "value" in locals() else "none")
    elif cmd == "table":
        rows = [l.rstrip("\n").split("\t") for l in open(argv[1]) if l.strip()]
        head = ["check", "value", "tolerance / goal", "result"]
        widths = [max(len(r[i]) if i < len(r) else 0 for r in rows + [head]) for i in range(4)]
        widths[1] = min(widths[1], 60)
        line = lambda r: " | ".join((r[i] if i < len(r) else "").ljust(widths[i]) for i in range(4))
        print(line(head))
        print("-+-".join("-" * w for w in widths))
        for r in rows:
            print(line(r))
        counts = {k: sum(1 for r in rows if len(r) > 3 and r[3].startswith(k)) for k in ("PASS", "FAIL", "SKIP")}
        print(f"{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['SKIP']} SKIP")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
