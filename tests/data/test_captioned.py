# Captioned folders (metadata.jsonl + images, the Hugging Face ImageFolder
# layout) and the captioned shapes corpus: layout, determinism, captions and
# their class distribution, the reader's checks through `dinv data info`, the
# labelled stages refusing a captioned [data], and the labelled shapes data
# unchanged by the renderer's refactoring.
import hashlib
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import dinv_run

CLASSES = ["disk", "square", "triangle", "plus", "ring", "diamond", "frame", "x cross", "bars", "crescent"]
EXTRAS = ["star", "hexagon", "arrow", "semicircle"]
CAPTION = re.compile(r"^an? (?:(small|medium|large) )?(?:(?P<color>[a-z ]+?) )?(?P<shape>" + "|".join(CLASSES + EXTRAS) +
                     r")(?: on an? (?P<bg>[a-z ]+) background)?(?:, (?P<pos>top left|top|top right|left|center|right|"
                     r"bottom left|bottom|bottom right))?$")


def corpus(path, count, *extra):
    dinv_run("data", "shapes", "--captioned", "--out", path, "--count", count, *extra)
    return [json.loads(line) for line in (path / "metadata.jsonl").read_text().splitlines()]


def tree_bytes(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def shape_of(text):
    m = CAPTION.match(text)
    assert m, f"caption does not follow the pattern: {text!r}"
    return m["shape"]


def test_corpus_layout_captions_and_determinism(tmp_path):
    rows = corpus(tmp_path / "a", 1000, "--seed", 5)
    corpus(tmp_path / "b", 1000, "--seed=5")
    corpus(tmp_path / "c", 1000, "--seed", 6)
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")  # same (seed, count, resolution): same bytes
    assert (tmp_path / "a" / "metadata.jsonl").read_bytes() != (tmp_path / "c" / "metadata.jsonl").read_bytes()
    assert len(rows) == 1000
    assert [r["file_name"] for r in rows] == [f"images/{i:06d}.png" for i in range(1000)]
    assert all(set(r) == {"file_name", "text"} and isinstance(r["text"], str) for r in rows)
    assert len(list((tmp_path / "a" / "images").iterdir())) == 1000
    for r in rows[:50]:
        image = Image.open(tmp_path / "a" / r["file_name"])
        assert image.size == (32, 32) and image.mode == "RGB"
    # Captions: class names as in shapes_class_names() with '_' -> ' ', the
    # extras at most ~20%, every class well represented, and the bare
    # "a {class}" prompt of the prompt baseline present for every class.
    shapes = [shape_of(r["text"]) for r in rows]
    counts = {name: shapes.count(name) for name in CLASSES + EXTRAS}
    print(counts)
    extras = sum(counts[n] for n in EXTRAS) / len(rows)
    assert 0.05 <= extras <= 0.2
    for name in CLASSES:
        assert 0.6 * 85 <= counts[name] <= 1.4 * 85, (name, counts[name])
        assert f"a {name}" in {r["text"] for r in rows}
    texts = [r["text"] for r in rows]
    assert sum(" background" in t for t in texts) > 500 and sum(", top left" in t for t in texts) > 30
    assert len(set(texts)) > 600  # captions describe each image, not only its class
    assert not any(" a o" in t or t.startswith("a o") for t in texts)  # "an orange", "an olive"
    # The size option; prefixes are stable (image i depends only on seed, i, resolution).
    rows24 = corpus(tmp_path / "d", 10, "--seed", 5, "--resolution", 24)
    assert Image.open(tmp_path / "d" / rows24[0]["file_name"]).size == (24, 24)
    small = corpus(tmp_path / "e", 10, "--seed", 5)
    assert small == rows[:10]
    assert (tmp_path / "e" / "images" / "000009.png").read_bytes() == (tmp_path / "a" / "images" / "000009.png").read_bytes()


def labelled_images(folder):
    records = np.concatenate([np.fromfile(folder / f, np.uint8).reshape(-1, 3073)
                              for f in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]])
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_corpus_covers_the_labelled_distribution_and_is_disjoint(tmp_path):
    rows = corpus(tmp_path / "corpus", 1500)
    dinv_run("data", "shapes", "--out", tmp_path / "labelled", "--train", 1000, "--test", 200)
    labelled = labelled_images(tmp_path / "labelled")
    ours = class_images(tmp_path / "corpus", rows)
    # Same colour / background / noise ranges: the pixel statistics agree.
    for stat in (mean, std, edges):
        assert_same_statistic(stat(labelled), stat(ours))
    # Its own random stream: no image of the corpus is a labelled image.
    seen = {x.tobytes() for x in labelled}
    assert not any(x.tobytes() in seen for x in ours)


def test_striped_fraction_of_the_corpus(tmp_path):
    plain = corpus(tmp_path / "plain", 1500)
    rows = corpus(tmp_path / "corpus", 1500, "--striped-fraction", 0.2)
    assert rows == plain  # the captions never mention the stripes
    changed = [(tmp_path / "plain" / r["file_name"]).read_bytes() != (tmp_path / "corpus" / r["file_name"]).read_bytes()
               for r in rows]
    assert 0.16 <= np.mean(changed) <= 0.24, np.mean(changed)  # the other images stay as they were
    # The pixel statistics agree with a 4:1 mix of the labelled set's
    # gradient and striped backgrounds.
    dinv_run("data", "shapes", "--out", tmp_path / "gradient", "--train", 1000, "--test", 200)
    dinv_run("data", "shapes", "--out", tmp_path / "striped", "--train", 1000, "--test", 200, "--seed", 1,
             "--background", "striped")
    gradient, striped = labelled_images(tmp_path / "gradient"), labelled_images(tmp_path / "striped")
    n_striped = round(0.2 * len(gradient))
    mix = np.concatenate([gradient[n_striped:], striped[:n_striped]])
    ours = class_images(tmp_path / "corpus", rows)
    for stat in (mean, std, edges):
        assert_same_statistic(stat(mix), stat(ours))
    assert edges(ours).mean() > 1.1 * edges(gradient).mean()


def labelled_images(folder):
    records = np.concatenate([np.fromfile(folder / f, np.uint8).reshape(-1, 3073)
                              for f in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]])
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def class_images(folder, rows):
    """The corpus images of the 10 labelled classes (not the extra kinds)."""
    return np.stack([np.asarray(Image.open(folder / r["file_name"])) for r in rows if shape_of(r["text"]) in CLASSES])


def mean(x):
    return x.mean(axis=(1, 2, 3))


def std(x):
    return x.std(axis=(1, 2, 3))


def edges(x):
    return np.abs(np.diff(x.astype(float), axis=2)).mean(axis=(1, 2, 3))


def assert_same_statistic(a, b):
    """Per-image statistics `a` and `b`: close means and spreads over the images."""
    assert abs(a.mean() - b.mean()) < 0.05 * a.mean() + 1 and abs(a.std() - b.std()) < 0.15 * a.std() + 1, \
        (a.mean(), b.mean(), a.std(), b.std())


def test_corpus_bad_options(tmp_path):
    proc = dinv_run("data", "shapes", "--captioned", "--out", tmp_path / "x", "--count", "0", check=False)
    assert proc.returncode == 2 and "--count must be at least 1" in proc.stderr
    proc = dinv_run("data", "shapes", "--captioned", "--out", tmp_path / "x", "--train", "10", check=False)
    assert proc.returncode == 2 and "unknown option --train" in proc.stderr
    proc = dinv_run("data", "shapes", "--out", tmp_path / "x", "--count", "10", check=False)
    assert proc.returncode == 2 and "--count is an option of --captioned" in proc.stderr
    proc = dinv_run("data", "shapes", "--captioned", "--out", tmp_path / "x", "--background", "striped", check=False)
    assert proc.returncode == 2 and "unknown option --background" in proc.stderr
    proc = dinv_run("data", "shapes", "--out", tmp_path / "x", "--striped-fraction", "0.2", check=False)
    assert proc.returncode == 2 and "--striped-fraction is an option of --captioned" in proc.stderr
    for bad in ("1.5", "-0.1", "x"):
        proc = dinv_run("data", "shapes", "--captioned", "--out", tmp_path / "x", "--striped-fraction", bad,
                        check=False)
        assert proc.returncode == 2 and "--striped-fraction" in proc.stderr, proc.stderr


# The labelled shapes data must not change: these digests were computed with
# dinv before the renderer became shared with the captioned corpus.
def test_labelled_shapes_unchanged(tmp_path):
    dinv_run("data", "shapes", "--out", tmp_path / "a", "--train", 50, "--test", 20, "--seed", 7)
    h = hashlib.sha256()
    for f in sorted((tmp_path / "a").iterdir()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    assert h.hexdigest() == "1ec61f79cd7fc6b923131956ec75442d2041ea321893ffda38b1cef48a9e0750"
    dinv_run("data", "shapes", "--out", tmp_path / "b", "--train", 20, "--test", 10, "--seed", 5, "--resolution", 24)
    h = hashlib.sha256()  # decoded pixels: independent of the libpng / zlib version
    for f in sorted((tmp_path / "b").rglob("*.png")):
        h.update(str(f.relative_to(tmp_path / "b")).encode())
        h.update(np.asarray(Image.open(f).convert("RGB")).tobytes())
    assert h.hexdigest() == "3d0fae94c00edff4b2c2697e3d281711aa4da35f84ec898c4d0294f7d1ffe24d"


def info(root, *extra, check=True):
    return dinv_run("data", "info", "--data.format=captioned", f"--data.root={root}", *extra, check=check)


def test_data_info_describes_a_captioned_folder(tmp_path):
    corpus(tmp_path / "c", 20)
    out = info(tmp_path / "c", "--verify").stdout
    assert f"captioned folder {tmp_path / 'c'}/ (20 images, 32x32)" in out
    fingerprint = re.search(r"fingerprint: (\S+)", out)[1]
    assert fingerprint.startswith("captioned:n=20:32x32:")
    # Stable: the same after a move; different when a caption changes.
    shutil.copytree(tmp_path / "c", tmp_path / "moved")
    assert re.search(r"fingerprint: (\S+)", info(tmp_path / "moved").stdout)[1] == fingerprint
    meta = tmp_path / "moved" / "metadata.jsonl"
    meta.write_text(meta.read_text().replace('"text":"a', '"text":"A', 1))
    assert re.search(r"fingerprint: (\S+)", info(tmp_path / "moved").stdout)[1] != fingerprint
    # JPEG images, extra keys, blank lines and a trailing line without newline are fine.
    jpeg = tmp_path / "jpeg"
    (jpeg / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(jpeg / "sub" / f"{i}.jpg", quality=90)
    lines = [json.dumps({"file_name": f"sub/{i}.jpg", "text": f"caption {i} \u00e9\u4e2d", "score": i}) for i in range(3)]
    (jpeg / "metadata.jsonl").write_text(lines[0] + "\n\n" + lines[1] + "\n" + lines[2], encoding="utf-8")
    out = info(jpeg, "--verify").stdout
    assert "(3 images, 16x16)" in out and "first caption: caption 0 \u00e9\u4e2d" in out


def png(path, w=32, h=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


def good_line(i):
    return json.dumps({"file_name": f"images/{i}.png", "text": f"a ring {i}"})


# (what to do to a 3-image folder, the line named, a fragment of the message)
BAD = {
    "missing_metadata": (lambda d: (d / "metadata.jsonl").unlink(), None, "metadata.jsonl' is missing"),
    "not_json": (lambda d: lines(d, 1, '{"file_name": "images/1.png", "text": '), 2, "invalid JSON"),
    "not_an_object": (lambda d: lines(d, 1, '["images/1.png", "a ring"]'), 2, "expected a JSON object"),
    "no_file_name": (lambda d: lines(d, 2, '{"text": "a ring"}'), 3, "missing key 'file_name'"),
    "no_text": (lambda d: lines(d, 1, '{"file_name": "images/1.png"}'), 2, "missing key 'text'"),
    "text_not_string": (lambda d: lines(d, 1, '{"file_name": "images/1.png", "text": 7}'), 2,
                        "key 'text': expected a string"),
    "file_name_not_string": (lambda d: lines(d, 0, '{"file_name": ["images/0.png"], "text": "a"}'), 1,
                             "key 'file_name': expected a string"),
    "bad_utf8": (lambda d: lines(d, 1, b'{"file_name": "images/1.png", "text": "a r\xffing"}'), 2, "not valid UTF-8"),
    "missing_image": (lambda d: (d / "images" / "2.png").unlink(), 3, "missing file"),
    "undecodable_image": (lambda d: (d / "images" / "1.png").write_bytes(b"not an image at all"), 2,
                          "neither PNG nor JPEG"),
    "truncated_png": (lambda d: (d / "images" / "1.png").write_bytes((d / "images" / "1.png").read_bytes()[:60]), 2,
                      "PNG decoding failed"),
    "mixed_sizes": (lambda d: png(d / "images" / "2.png", 16, 16), 3, "(line 1) is 32x32"),
    "not_square": (lambda d: png(d / "images" / "0.png", 32, 16), 1, "not square"),
    "duplicate": (lambda d: lines(d, 2, json.dumps({"file_name": "./images/0.png", "text": "b"})), 3,
                  "already listed on line 1"),
    "absolute_path": (lambda d: lines(d, 1, json.dumps({"file_name": str(d / "images" / "1.png"), "text": "b"})), 2,
                      "absolute path"),
    "dotdot": (lambda d: lines(d, 1, json.dumps({"file_name": "images/../../outside.png", "text": "b"})), 2,
               "leaves the folder"),
    "empty_file_name": (lambda d: lines(d, 1, json.dumps({"file_name": "", "text": "b"})), 2, "is empty"),
    "empty_corpus": (lambda d: (d / "metadata.jsonl").write_text("\n  \n"), None, "the corpus is empty"),
}


def lines(d, index, replacement):
    meta = d / "metadata.jsonl"
    rows = meta.read_bytes().split(b"\n")
    rows[index] = replacement if isinstance(replacement, bytes) else replacement.encode()
    meta.write_bytes(b"\n".join(rows))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_captioned_folders_name_file_and_line(tmp_path, case):
    d = tmp_path / "bad"
    for i in range(3):
        png(d / "images" / f"{i}.png")
    (d / "metadata.jsonl").write_text("".join(good_line(i) + "\n" for i in range(3)))
    png(tmp_path / "outside.png")
    info(d, "--verify")  # the intact folder opens
    change, line, fragment = BAD[case]
    change(d)
    proc = info(d, "--verify", check=False)
    assert proc.returncode == 1, proc.stderr
    assert fragment in proc.stderr, proc.stderr
    assert str(d / "metadata.jsonl") in proc.stderr, proc.stderr
    if line is not None:
        assert f"metadata.jsonl' line {line}" in proc.stderr, proc.stderr


@pytest.mark.parametrize("stage", ["embed", "generate", "train"])
def test_labelled_stages_refuse_captioned(tmp_path, stage):
    corpus(tmp_path / "c", 5)
    proc = dinv_run(stage, "--data.format=captioned", f"--data.root={tmp_path / 'c'}", check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"dinv {stage}: data.format = captioned has no class labels; embed/generate/train need a labelled format" \
        in proc.stderr
    proc = dinv_run("data", "export", "--out", tmp_path / "x", "--data.format=captioned",
                    f"--data.root={tmp_path / 'c'}", check=False)
    assert proc.returncode == 2 and "data.format = captioned has no class labels" in proc.stderr
