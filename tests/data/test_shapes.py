# The procedural shapes dataset: format, determinism, and "learnable but not
# trivially linear" (a ridge least-squares classifier on pixels stays far below 90%).
import numpy as np
from PIL import Image

from conftest import dinv_run, export


def read_cifar(files):
    records = np.concatenate([np.fromfile(f, np.uint8).reshape(-1, 3073) for f in files])
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), records[:, 0]


def test_cifar_format_balanced_and_deterministic(tmp_path):
    dinv_run("data", "shapes", "--out", tmp_path / "a", "--train", 1000, "--test", 200, "--seed", 3)
    dinv_run("data", "shapes", "--out", tmp_path / "b", "--train=1000", "--test=200", "--seed=3")
    dinv_run("data", "shapes", "--out", tmp_path / "c", "--train", 1000, "--test", 200, "--seed", 4)
    names = (tmp_path / "a" / "batches.meta.txt").read_text().split()
    assert names == ["disk", "square", "triangle", "plus", "ring", "diamond", "frame", "x_cross", "bars", "crescent"]
    for k in range(1, 6):
        assert (tmp_path / "a" / f"data_batch_{k}.bin").stat().st_size == 200 * 3073
        assert (tmp_path / "a" / f"data_batch_{k}.bin").read_bytes() == (tmp_path / "b" / f"data_batch_{k}.bin").read_bytes()
    assert (tmp_path / "a" / "test_batch.bin").stat().st_size == 200 * 3073
    assert (tmp_path / "a" / "test_batch.bin").read_bytes() != (tmp_path / "c" / "test_batch.bin").read_bytes()
    x, y = read_cifar([tmp_path / "a" / f"data_batch_{k}.bin" for k in range(1, 6)])
    assert np.bincount(y, minlength=10).tolist() == [100] * 10
    assert x.std() > 30  # real images, not a constant
    # The CIFAR-10 reader gives back exactly these pixels and labels.
    images, labels, info = export(tmp_path, "--data.format=cifar10", f"--data.root={tmp_path / 'a'}")
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)
    assert "CIFAR-10 train (1000 images, 32x32" in info


def test_counts_that_leave_batches_empty_write_fewer_files(tmp_path):
    # 11 images in batches of ceil(11/5) = 3: four files (3, 3, 3, 2 images),
    # no empty fifth one, and the reader finds all eleven images.
    dinv_run("data", "shapes", "--out", tmp_path / "a", "--train", 11, "--test", 10, "--seed", 0)
    files = sorted(p.name for p in tmp_path.glob("a/data_batch_*.bin"))
    assert files == [f"data_batch_{k}.bin" for k in range(1, 5)]
    assert [(tmp_path / "a" / f).stat().st_size // 3073 for f in files] == [3, 3, 3, 2]
    images, labels, _ = export(tmp_path, "--data.format=cifar10", f"--data.root={tmp_path / 'a'}")
    assert len(images) == 11 and len(labels) == 11


def test_linear_classifier_on_pixels_stays_below_90_percent(tmp_path):
    dinv_run("data", "shapes", "--out", tmp_path, "--train", 4000, "--test", 1000, "--seed", 0)
    x, y = read_cifar([tmp_path / f"data_batch_{k}.bin" for k in range(1, 6)])
    xt, yt = read_cifar([tmp_path / "test_batch.bin"])
    features = lambda a: np.c_[a.reshape(len(a), -1) / 255.0, np.ones(len(a))]
    X, Xt = features(x), features(xt)
    best = 0.0
    for ridge in (0.1, 10.0, 1000.0):
        W = np.linalg.solve(X.T @ X + ridge * np.eye(X.shape[1]), X.T @ np.eye(10)[y])
        best = max(best, float((np.argmax(Xt @ W, 1) == yt).mean()))
    print("best linear test accuracy", best)
    assert 0.1 <= best < 0.9


def test_other_resolutions_write_png_folders(tmp_path):
    dinv_run("data", "shapes", "--out", tmp_path, "--train", 20, "--test", 10, "--resolution", 48)
    files = sorted((tmp_path / "train").rglob("*.png"))
    assert len(files) == 20 and len(sorted((tmp_path / "test").rglob("*.png"))) == 10
    assert Image.open(files[0]).size == (48, 48)
    images, labels, info = export(tmp_path, "--data.format=folder", f"--data.root={tmp_path}", "--data.split=test")
    assert images.shape == (10, 48, 48, 3) and np.bincount(labels).tolist() == [1] * 10


def folder_images(root):
    files = sorted(root.rglob("*.png"), key=lambda f: f.name)
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]), [f.parent.name for f in files]


def test_striped_background_keeps_the_shape_and_changes_only_the_background(tmp_path):
    dinv_run("data", "shapes", "--out", tmp_path / "g", "--train", 100, "--test", 10, "--resolution", 16, "--seed", 3)
    dinv_run("data", "shapes", "--out", tmp_path / "s", "--train", 100, "--test", 10, "--resolution", 16, "--seed", 3,
             "--background", "striped")
    dinv_run("data", "shapes", "--out", tmp_path / "s2", "--train", 100, "--test", 10, "--resolution", 16,
             "--seed", 3, "--background=striped")
    g, g_labels = folder_images(tmp_path / "g" / "train")
    s, s_labels = folder_images(tmp_path / "s" / "train")
    assert g_labels == s_labels  # the same classes, image by image
    assert (s == folder_images(tmp_path / "s2" / "train")[0]).all()  # deterministic
    # Twins: the pixels inside the shape (colour and noise) are equal, the
    # background differs, and stripes add edges that a gradient has not.
    same = (g == s).all(axis=3).mean(axis=(1, 2))
    assert (same > 0.05).all() and (same < 0.9).all(), same
    edges = lambda x: np.abs(np.diff(x.astype(float), axis=2)).mean()
    assert edges(s) > 1.5 * edges(g), (edges(s), edges(g))


def test_bad_options_are_usage_errors(tmp_path):
    proc = dinv_run("data", "shapes", "--out", tmp_path, "--train", "x", check=False)
    assert proc.returncode == 2 and "--train=x" in proc.stderr
    proc = dinv_run("data", "shapes", "--train", "10", check=False)
    assert proc.returncode == 2 and "--out" in proc.stderr
    proc = dinv_run("data", "shapes", "--out", tmp_path, "--colours", "3", check=False)
    assert proc.returncode == 2 and "unknown option '--colours'" in proc.stderr
    proc = dinv_run("data", "shapes", "--out", tmp_path, "--background", "dots", check=False)
    assert proc.returncode == 2 and "--background = 'dots' is not a background: expected gradient or striped" in proc.stderr
    proc = dinv_run("data", "shuffle", check=False)
    assert proc.returncode == 2 and "unknown subcommand 'shuffle'" in proc.stderr
    proc = dinv_run("data", "export", "--out", tmp_path / "x", "--data.format=cifar10", check=False)
    assert proc.returncode == 2 and "data.root" in proc.stderr
