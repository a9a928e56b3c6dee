# Readers of the published formats: files written here in each format, decoded
# by dinv (`dinv data export`), compared pixel for pixel with what was written.
import io

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import dinv_run, export

rng = np.random.default_rng(7)


def random_images(n, h, w):
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def cifar_records(images, *label_columns):
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([np.stack(label_columns, 1).astype(np.uint8), planes], 1).tobytes()


def test_cifar10_batches_and_test_split(tmp_path):
    names = [f"c{i}" for i in range(10)]
    (tmp_path / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    parts = [(random_images(7, 32, 32), rng.integers(0, 10, 7)) for _ in range(3)]
    for k, (x, y) in enumerate(parts, 1):
        (tmp_path / f"data_batch_{k}.bin").write_bytes(cifar_records(x, y))
    xt, yt = random_images(5, 32, 32), rng.integers(0, 10, 5)
    (tmp_path / "test_batch.bin").write_bytes(cifar_records(xt, yt))
    images, labels, info = export(tmp_path, "--data.format=cifar10", f"--data.root={tmp_path}")
    np.testing.assert_array_equal(images, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(labels, np.concatenate([p[1] for p in parts]))
    assert "classes: " + " ".join(names) in info
    images, labels, _ = export(tmp_path, "--data.format=cifar10", f"--data.root={tmp_path}", "--data.split=test")
    np.testing.assert_array_equal(images, xt)
    np.testing.assert_array_equal(labels, yt)


@pytest.mark.parametrize("kind", ["fine", "coarse"])
def test_cifar100_fine_and_coarse_labels(tmp_path, kind):
    (tmp_path / "fine_label_names.txt").write_text("\n".join(f"f{i}" for i in range(100)))
    (tmp_path / "coarse_label_names.txt").write_text("\n".join(f"g{i}" for i in range(20)))
    x, coarse, fine = random_images(9, 32, 32), rng.integers(0, 20, 9), rng.integers(0, 100, 9)
    (tmp_path / "train.bin").write_bytes(cifar_records(x, coarse, fine))
    images, labels, info = export(tmp_path, "--data.format=cifar100", f"--data.root={tmp_path}", f"--data.labels={kind}")
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, fine if kind == "fine" else coarse)


def test_stl10_column_major_layout_and_one_based_labels(tmp_path):
    x, y = random_images(4, 96, 96), rng.integers(0, 10, 4)
    # STL-10 stores each image as 3x96x96 in column-major order: numpy's
    # reading recipe is reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1).
    (tmp_path / "test_X.bin").write_bytes(x.transpose(0, 3, 2, 1).tobytes())
    (tmp_path / "test_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
    (tmp_path / "class_names.txt").write_text("\n".join(f"s{i}" for i in range(10)))
    images, labels, _ = export(tmp_path, "--data.format=stl10", f"--data.root={tmp_path}", "--data.split=test")
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)
    # The recipe applied to the file gives the same images.
    raw = np.fromfile(tmp_path / "test_X.bin", np.uint8).reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)
    np.testing.assert_array_equal(images, raw)


def smooth_image(h, w, seed):
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (h + w)], -1)
    return np.clip(base + g.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def test_image_folder_png_and_jpeg_decoded_as_pillow_does(tmp_path):
    root = tmp_path / "train"
    expected = []
    specs = [("cat", "a.png", "RGB"), ("cat", "b.jpg", "RGB"), ("dog", "c.jpeg", "L"), ("dog", "d.png", "RGBA"),
             ("dog", "e.png", "P"), ("dog", "f.jpg", "RGB420")]
    for i, (cls, name, mode) in enumerate(specs):
        (root / cls).mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(smooth_image(21 + i, 17 + 2 * i, i))
        if mode == "L":
            img = img.convert("L")
        elif mode == "RGBA":
            img = img.convert("RGBA")
            img.putalpha(128)
        elif mode == "P":
            img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=50)
        kwargs = {"quality": 90, "subsampling": 2} if mode == "RGB420" else ({"quality": 85, "subsampling": 0} if name.endswith("jpg") else {})
        img.save(root / cls / name, **kwargs)
        expected.append((cls, np.asarray(Image.open(root / cls / name).convert("RGB"))))
    # Export needs equal sizes: decode one file at a time through a one-image folder.
    for k, (cls, pixels) in enumerate(expected):
        single = tmp_path / f"single{k}" / cls
        single.mkdir(parents=True)
        src = root / specs[k][0] / specs[k][1]
        (single / src.name).write_bytes(src.read_bytes())
        images, labels, info = export(tmp_path / f"single{k}", "--data.format=folder", f"--data.root={tmp_path / f'single{k}'}")
        np.testing.assert_array_equal(images[0], pixels, err_msg=f"{specs[k]}")
    # The whole folder: classes sorted, files sorted within a class.
    proc = dinv_run("data", "export", "--out", tmp_path / "all", "--data.format=folder", f"--data.root={tmp_path}", check=False)
    assert proc.returncode == 1 and "export needs equal sizes" in proc.stderr
    # A root with split folders: the missing split is an error, not the other split.
    proc = dinv_run("data", "export", "--out", tmp_path / "all", "--data.format=folder", f"--data.root={tmp_path}",
                    "--data.split=test", check=False)
    assert proc.returncode == 1 and "test' is missing" in proc.stderr


def test_image_folder_labels_and_class_names(tmp_path):
    for cls, count in (("b_second", 2), ("a_first", 3)):
        (tmp_path / cls).mkdir()
        for i in range(count):
            Image.fromarray(smooth_image(8, 8, i)).save(tmp_path / cls / f"{i}.png")
    images, labels, info = export(tmp_path, "--data.format=folder", f"--data.root={tmp_path}")
    assert labels.tolist() == [0, 0, 0, 1, 1] and "classes: a_first b_second" in info
    np.testing.assert_array_equal(images[3], smooth_image(8, 8, 0))


def fingerprint(*keys):
    out = dinv_run("data", "info", *keys).stdout
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("fingerprint: "))


def test_fingerprints_say_what_the_data_is_not_where_it_lives(tmp_path):
    # An image folder and a WebDataset shard folder, each copied elsewhere:
    # the same fingerprint (a store made from one follows the other, as with
    # CIFAR); one file of another size: another fingerprint.
    import shutil
    import tarfile

    folder = tmp_path / "a" / "train"
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(smooth_image(8, 8, i)).save(folder / cls / f"{i}.png")
    shards = tmp_path / "a" / "shards"
    shards.mkdir()
    with tarfile.open(shards / "pool-00000.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(3):
            data = io.BytesIO()
            Image.fromarray(smooth_image(8, 8, i)).save(data, format="PNG")
            info = tarfile.TarInfo(f"{i:04d}.png")
            info.size = len(data.getvalue())
            tar.addfile(info, io.BytesIO(data.getvalue()))
    shutil.copytree(tmp_path / "a", tmp_path / "moved" / "b")
    keys = {"folder": ("--data.format=folder", "--data.split=train"), "webdataset": ("--data.format=webdataset",)}
    roots = {"folder": ("a", "moved/b/"), "webdataset": ("a/shards", "moved/b/shards/")}
    for fmt, (here, there) in roots.items():
        first = fingerprint(*keys[fmt], f"--data.root={tmp_path / here}")
        assert first == fingerprint(*keys[fmt], f"--data.root={tmp_path / there}"), fmt
        assert str(tmp_path) not in first, first
    Image.fromarray(smooth_image(9, 9, 0)).save(tmp_path / "moved" / "b" / "train" / "dog" / "1.png")
    assert fingerprint(*keys["folder"], f"--data.root={tmp_path / 'a'}") != fingerprint(
        *keys["folder"], f"--data.root={tmp_path / 'moved' / 'b'}")


def write_shards(root, images, labels, per_shard):
    """WebDataset shards as webdataset's TarWriter writes them (KEY.png or KEY.jpg, then KEY.cls per
    sample); returns each sample's encoded image."""
    import tarfile

    def member(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    root.mkdir(parents=True)
    encoded = []
    for s in range(0, len(images), per_shard):
        with tarfile.open(root / f"pool-{s // per_shard:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(s, min(s + per_shard, len(images))):
                ext = "jpg" if i % 3 == 2 else "png"
                buf = io.BytesIO()
                Image.fromarray(images[i]).save(buf, format="JPEG" if ext == "jpg" else "PNG", quality=90)
                encoded.append(buf.getvalue())
                member(tar, f"sample{i:06d}.{ext}", encoded[-1])
                member(tar, f"sample{i:06d}.cls", str(labels[i]).encode())
    return encoded


def test_webdataset_shards_decoded_in_order_and_streamed(tmp_path):
    # Two shards of samples (PNG and JPEG images, .cls labels): decoded as
    # Pillow decodes them, in shard order; reading them in order opens each
    # shard twice (the header index pass, then one stream), not once per image.
    import os
    import shutil
    import subprocess

    images = np.stack([smooth_image(12, 10, i) for i in range(30)])
    labels = [i % 4 for i in range(30)]
    encoded = write_shards(tmp_path / "shards", images, labels, per_shard=16)
    got, got_labels, info = export(tmp_path, "--data.format=webdataset", f"--data.root={tmp_path / 'shards'}")
    np.testing.assert_array_equal(got_labels, labels)
    for i, data in enumerate(encoded):
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(got[i], expected, err_msg=f"sample {i}")
    if shutil.which("strace") is None:
        pytest.skip("no strace: the open count is not checked")
    trace = tmp_path / "trace"
    subprocess.run(["strace", "-f", "-e", "trace=openat", "-o", trace, os.environ["DINV"], "data", "export", "--out",
                    tmp_path / "x", "--data.format=webdataset", f"--data.root={tmp_path / 'shards'}"], check=True,
                   capture_output=True)
    opens = [line for line in trace.read_text().splitlines() if ".tar\"" in line and "= -1" not in line]
    assert len(opens) <= 4, "\n".join(opens)


@pytest.mark.parametrize("compressed", [False, True])
def test_medmnist_npz_grayscale_and_rgb(tmp_path, compressed):
    gray, rgb = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), random_images(4, 28, 28)
    arrays = dict(train_images=gray, train_labels=rng.integers(0, 5, (6, 1)).astype(np.uint8),
                  val_images=rgb, val_labels=np.array([0, 1, 2, 3]), test_images=gray[:2], test_labels=np.array([[6], [1]]))
    path = tmp_path / "blood.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    images, labels, info = export(tmp_path, "--data.format=medmnist", f"--data.root={path}")
    np.testing.assert_array_equal(images, np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(labels, arrays["train_labels"][:, 0])
    assert "classes: 0 1 2 3 4 5 6" in info  # every split's labels count
    images, labels, _ = export(tmp_path, "--data.format=medmnist", f"--data.root={path}", "--data.split=val")
    np.testing.assert_array_equal(images, rgb)
    np.testing.assert_array_equal(labels, [0, 1, 2, 3])


def write_store(path, tags):
    with h5py.File(path, "w") as f:
        f.create_group("source").attrs["class_names"] = ["plane", "car", "bird"]
        for tag, (x, y) in tags.items():
            g = f.create_group(f"samples/{tag}")
            g["images"], g["label"] = x, y
            g["done"] = np.ones(1, np.uint8)  # the generate ledger: one finished chunk


def test_store_samples_one_or_several_tags(tmp_path):
    a, b = (random_images(3, 16, 16), np.array([0, 2, 1])), (random_images(2, 16, 16), np.array([1, 1]))
    store = tmp_path / "store.h5"
    write_store(store, {"s42": a, "s43": b})
    images, labels, info = export(tmp_path, "--data.format=store", f"--data.root={store}", "--data.tags=s43,s42")
    np.testing.assert_array_equal(images, np.concatenate([b[0], a[0]]))
    np.testing.assert_array_equal(labels, [1, 1, 0, 2, 1])
    assert "classes: plane car bird" in info


# ---- bad input: exit code 1 and a message naming the file and what is wrong ----

def fails(tmp_path, *keys):
    proc = dinv_run("data", "export", "--out", tmp_path / "x", *keys, check=False)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def test_truncated_and_missing_cifar_files(tmp_path):
    (tmp_path / "batches.meta.txt").write_text("\n".join("abcdefghij"))
    (tmp_path / "data_batch_1.bin").write_bytes(cifar_records(random_images(2, 32, 32), [1, 2])[:-100])
    err = fails(tmp_path, "--data.format=cifar10", f"--data.root={tmp_path}")
    assert "data_batch_1.bin" in err and "6046 bytes" in err and "expected 6146 bytes" in err
    err = fails(tmp_path, "--data.format=cifar10", f"--data.root={tmp_path}", "--data.split=test")
    assert "test_batch.bin" in err and "missing" in err
    (tmp_path / "data_batch_1.bin").write_bytes(cifar_records(random_images(2, 32, 32), [1, 12]))
    err = fails(tmp_path, "--data.format=cifar10", f"--data.root={tmp_path}")
    assert "data_batch_1.bin' record 1 (byte 3073): label 12, expected 0..9" in err
    (tmp_path / "batches.meta.txt").unlink()
    assert "batches.meta.txt" in fails(tmp_path, "--data.format=cifar10", f"--data.root={tmp_path}")


def test_bad_stl10_folder_npz_and_store(tmp_path):
    (tmp_path / "class_names.txt").write_text("\n".join("abcdefghij"))
    (tmp_path / "train_y.bin").write_bytes(bytes([1, 2, 3]))
    (tmp_path / "train_X.bin").write_bytes(bytes(3 * 27648 - 5))
    err = fails(tmp_path, "--data.format=stl10", f"--data.root={tmp_path}")
    assert "train_X.bin" in err and "82939 bytes, expected 82944" in err
    (tmp_path / "train_X.bin").write_bytes(bytes(3 * 27648))
    (tmp_path / "train_y.bin").write_bytes(bytes([1, 0, 3]))
    assert "byte 1: label 0, expected 1..10" in fails(tmp_path, "--data.format=stl10", f"--data.root={tmp_path}")

    folder = tmp_path / "folder"
    (folder / "empty").mkdir(parents=True)
    assert "class 'empty'" in fails(tmp_path, "--data.format=folder", f"--data.root={folder}")
    (folder / "empty" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(10))
    assert "bad.png" in fails(tmp_path, "--data.format=folder", f"--data.root={folder}")

    npz = tmp_path / "m.npz"
    np.savez(npz, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.zeros((2, 1), np.uint8))
    npz.write_bytes(npz.read_bytes()[:-40])
    assert "m.npz" in fails(tmp_path, "--data.format=medmnist", f"--data.root={npz}")
    np.savez(npz, train_images=np.zeros((2, 28, 28), np.float32), train_labels=np.zeros((2, 1), np.uint8))
    assert "train_images" in fails(tmp_path, "--data.format=medmnist", f"--data.root={npz}")

    store = tmp_path / "store.h5"
    write_store(store, {"s42": (random_images(1, 8, 8), np.array([0]))})
    err = fails(tmp_path, "--data.format=store", f"--data.root={store}", "--data.tags=s42,nope")
    assert "samples/nope" in err
    write_store(store, {"s42": (random_images(1, 8, 8), np.array([3]))})
    assert "label of example 0 is 3" in fails(tmp_path, "--data.format=store", f"--data.root={store}", "--data.tags=s42")
