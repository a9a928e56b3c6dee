"""Write the small seed corpora of the fuzz targets (tests/fuzz/seeds/<target>/):
valid inputs of each reader, as the tests make them. Run once; the seeds are
kept in the repository (a few KB in all)."""
import io
import json
import struct
import tarfile
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "seeds")
rng = np.random.default_rng(0)


def put(target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# JSON: a tiny UNet config, a tokenizer config, a sharded-weights index.
put("json", "unet_config.json", json.dumps({
    "_class_name": "UNet2DConditionModel", "in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32, "attention_head_dim": 8, "layers_per_block": 1, "norm_num_groups": 8,
    "sample_size": [16, 16], "norm_eps": 1e-5, "flip_sin_to_cos": True}))
put("json", "tokenizer_config.json", json.dumps({"bos_token": {"content": "<|startoftext|>"}, "model_max_length": 77}))
put("json", "index.json", json.dumps({"metadata": {"total_size": 10}, "weight_map": {"a.weight": "m-1.safetensors"}}))

# INI.
put("ini", "stage.ini", "[run]\nseed = 3\nthreads = 1\n[embed]\nlr = 0.05\ndtype = fp16\namp = true\n"
                        "[store]\npath = store.h5\n; comment\n# another\n[data]\nroot = /x\n")
put("ini", "dotted.ini", "embed.lr = 1e-3\n[run]\nrun.seed = 7\n")


# safetensors: two tensors.
def safetensors(tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, a) in tensors.items():
        b = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


put("safetensors", "two.safetensors", safetensors({"w": ("F32", np.arange(6, dtype=np.float32).reshape(2, 3)),
                                                  "b": ("I64", np.arange(2, dtype=np.int64))}, {"format": "pt"}))
put("safetensors", "half.safetensors", safetensors({"h": ("F16", np.ones(4, np.float16))}))


# npz: MedMNIST layout, stored and deflated.
def npz(images, labels, compressed):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, train_images=images, train_labels=labels)
    return buf.getvalue()


put("npz", "gray.npz", npz(rng.integers(0, 256, (2, 4, 4), dtype=np.uint8), np.array([[0], [1]]), False))
put("npz", "rgb.npz", npz(rng.integers(0, 256, (2, 3, 3, 3), dtype=np.uint8), np.array([1, 0]), True))


# Images: first byte 0 = PNG, 1 = JPEG.
def encoded(fmt, mode, **kw):
    img = Image.fromarray(rng.integers(0, 256, (8, 6, 3), dtype=np.uint8))
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


put("image", "rgb.png", b"\x00" + encoded("PNG", "RGB"))
put("image", "palette.png", b"\x00" + encoded("PNG", "P"))
put("image", "gray.png", b"\x00" + encoded("PNG", "L"))
put("image", "rgb.jpg", b"\x01" + encoded("JPEG", "RGB", quality=80))
put("image", "progressive.jpg", b"\x01" + encoded("JPEG", "RGB", quality=80, progressive=True))
put("image", "gray.jpg", b"\x01" + encoded("JPEG", "L"))

# CIFAR-10 (0), CIFAR-100 (1) records; STL-10 (2): one label byte count, labels, images.
img = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
put("cifar", "cifar10", b"\x00" + np.concatenate([np.array([[3], [9]], np.uint8), img], 1).tobytes())
put("cifar", "cifar100", b"\x01" + np.concatenate([np.array([[3, 40], [9, 99]], np.uint8), img], 1).tobytes())
put("cifar", "stl10", b"\x02" + bytes([1]) + bytes([5]) + rng.integers(0, 256, 27648 - 1, dtype=np.uint8).tobytes())

# Tokenizer: prompts (first byte even) and a vocab.json (odd).
for i, p in enumerate(["a photo of a cat", "A PHOTO of an  airplane, 2 dogs!", "naïve café ☕ <|endoftext|> x's",
                       "   "]):
    put("tokenizer", f"prompt{i}", b"\x00" + p.encode())
put("tokenizer", "vocab", b"\x01" + json.dumps({"a": 0, "b": 1, "ab": 2, "<|startoftext|>": 3,
                                                 "<|endoftext|>": 4}).encode())

# Captioned folders: metadata.jsonl against a.png, b.png (4x4), c.png (6x6), d.png (not an image).
put("captioned", "two.jsonl", '{"file_name": "a.png", "text": "a small red ring"}\n'
                              '{"file_name": "./b.png", "text": "a ring", "extra": 1}\n')
put("captioned", "blank_lines.jsonl", '\n{"file_name": "b.png", "text": "naïve café ☕"}\n\n')
put("captioned", "mixed_sizes.jsonl", '{"file_name": "a.png", "text": "x"}\n{"file_name": "c.png", "text": "y"}\n')


# WebDataset: one shard of two samples (an image and its class index; the second a JPEG without one).
def shard(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tiny_image(fmt):
    out_bytes = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(out_bytes, format=fmt)
    return out_bytes.getvalue()


put("webdataset", "two.tar", shard([("s/000.png", tiny_image("PNG")), ("s/000.cls", b"3"),
                                    ("s/001.jpg", tiny_image("JPEG"))]))

# Stores: programs of 4-byte edits [operation, target, type, size] to a valid
# store and results file (tests/fuzz/fuzz_store.cpp), then data bytes.
put("store", "valid", b"")
put("store", "chunk_unfinished", bytes([5, 8, 0, 1]))                   # /samples/t/done[0] = 0
put("store", "source_out_of_range", bytes([5, 7, 1, 5]))                # /samples/t/source[1] = 1000
put("store", "labels_as_floats", bytes([1, 6, 4, 1]) + bytes([4]) + bytes(32))
put("store", "schema_version_512", bytes([3, 0, 3, 220]) + bytes(8 * 520))
put("store", "class_names_scalar", bytes([3, 1, 6, 0]) + b"disk\0")
put("store", "results_complete_array", bytes([4, 0, 3, 200]) + bytes(8 * 470))

# Image folders: entries [kind, class, name, size] + content (tests/fuzz/fuzz_image_folder.cpp); two classes
# of valid images, then the same with a stray file at the top and a class folder linked to the top.
def entry(kind, cls, name, content=b""):
    return bytes([kind, cls, name, len(content)]) + content


two_classes = entry(0, 0, 0, tiny_image("PNG")) + entry(0, 1, 0, tiny_image("PNG")) + entry(0, 1, 1, tiny_image("PNG"))
put("image_folder", "two_classes", two_classes)
put("image_folder", "stray_file_and_link", two_classes + entry(2, 0, 4, b"notes") + entry(3, 2, 1))
