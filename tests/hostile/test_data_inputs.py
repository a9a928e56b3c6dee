"""Hostile dataset files (issue 19): truncated JPEGs (accepted before),
image headers declaring huge sizes, malformed .npy headers and zip members
in MedMNIST .npz files, a directory where a file belongs. Every file is made
here; `dinv data export` must refuse it naming the file (and the array)."""
import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from hostile_util import dinv, refused


def export(tmp_path, *keys):
    return dinv("data", "export", "--out", tmp_path / "out", *keys)


def folder_with(tmp_path, name, data):
    cls = tmp_path / "images" / "cls"
    cls.mkdir(parents=True, exist_ok=True)
    (cls / name).write_bytes(data)
    return tmp_path / "images"


def jpeg_bytes(h=64, w=64):
    g = np.random.default_rng(3)
    buf = io.BytesIO()
    Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_valid_jpeg_is_decoded(tmp_path):
    root = folder_with(tmp_path, "a.jpg", jpeg_bytes())
    r = export(tmp_path, "--data.format=folder", f"--data.root={root}")
    assert r.returncode == 0, r.stderr


def test_truncated_jpeg_is_refused(tmp_path):
    data = jpeg_bytes()
    root = folder_with(tmp_path, "cut.jpg", data[: len(data) // 2])
    with pytest.raises(OSError):  # Pillow refuses it too
        Image.open(io.BytesIO(data[: len(data) // 2])).load()
    refused(export(tmp_path, "--data.format=folder", f"--data.root={root}"), 1, "cut.jpg", "Premature end of JPEG file")


def test_jpeg_declaring_a_huge_size_is_refused_before_decoding(tmp_path):
    data = bytearray(jpeg_bytes())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5: sof + 9] = struct.pack(">HH", 65000, 65000)  # height, width
    root = folder_with(tmp_path, "huge.jpg", bytes(data))
    refused(export(tmp_path, "--data.format=folder", f"--data.root={root}"), 1, "huge.jpg", "65000x65000")


def png_declaring(width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) +
            chunk(b"IEND", b""))


@pytest.mark.parametrize("width,height,needle", [
    (1_000_000, 1_000_000, "IHDR"),  # libpng: "Invalid IHDR data" (over the user limit)
    (16_000, 16_000, "16000x16000 pixels"),
])
def test_png_declaring_a_huge_size_is_refused_before_allocating(tmp_path, width, height, needle):
    root = folder_with(tmp_path, "huge.png", png_declaring(width, height))
    refused(export(tmp_path, "--data.format=folder", f"--data.root={root}"), 1, "huge.png", needle)


# ---- MedMNIST .npz ---------------------------------------------------------------------

def npy_with_header(header, data=b""):
    h = header.encode("latin1")
    pad = 64 - (10 + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data


def npz(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def good_labels():
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 1), np.int64))
    return buf.getvalue()


@pytest.mark.parametrize("header,needle", [
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (-1, 28, 28), }", "not a non-negative integer"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999999, 28, 28), }", "not a non-negative"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", "shape"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296, 4294967296), }", "shape"),
    ("{'descr': '|u1', 'fortran_order': False, 'shape': 12}", "not a tuple"),
    ("{'descr': <u1, 'fortran_order': False, 'shape': (2, 28, 28), }", "descr"),
    ("{'descr': '|u1', 'fortran_order': maybe, 'shape': (2, 28, 28), }", "fortran_order"),
    ("{'descr': '|u1', 'shape': (2, 28, 28), }", "lacks 'fortran_order'"),
])
def test_malformed_npy_headers_are_refused_naming_the_array(tmp_path, header, needle):
    path = npz(tmp_path / "m.npz", {"train_images.npy": npy_with_header(header, bytes(2 * 28 * 28)),
                                    "train_labels.npy": good_labels()})
    refused(export(tmp_path, "--data.format=medmnist", f"--data.root={path}"), 1, "m.npz", "train_images", needle)


def test_npz_member_declaring_more_bytes_than_it_holds(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 28, 28), np.uint8))
    path = npz(tmp_path / "m.npz", {"train_images.npy": buf.getvalue(), "train_labels.npy": good_labels()})
    data = bytearray(path.read_bytes())
    cd = data.find(b"PK\x01\x02")  # first central directory entry
    data[cd + 24: cd + 28] = struct.pack("<I", 0xFFFFFFF0)  # uncompressed size
    path.write_bytes(bytes(data))
    refused(export(tmp_path, "--data.format=medmnist", f"--data.root={path}"), 1, "m.npz", "train_images.npy",
            "declares 4294967280 bytes")


def test_npz_labels_far_beyond_any_class_count(tmp_path):
    images, labels = io.BytesIO(), io.BytesIO()
    np.save(images, np.zeros((2, 28, 28), np.uint8))
    np.save(labels, np.array([[0], [10 ** 12]], np.int64))
    path = npz(tmp_path / "m.npz", {"train_images.npy": images.getvalue(), "train_labels.npy": labels.getvalue()})
    refused(export(tmp_path, "--data.format=medmnist", f"--data.root={path}"), 1, "m.npz", "train_labels",
            "1000000000000")


def test_a_directory_where_the_npz_belongs(tmp_path):
    (tmp_path / "d.npz").mkdir()
    refused(export(tmp_path, "--data.format=medmnist", f"--data.root={tmp_path / 'd.npz'}"), 1, "d.npz",
            "not a regular file")
