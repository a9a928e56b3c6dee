"""The product stands alone: no product file names the development machines'
../shared folder, and an installed dinv runs the whole pipeline with the
source and build trees out of reach (docs/architecture.md, "Data files and
installation")."""
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD_DIR, SOURCE_DIR, run

# What a user gets: everything but the tests (which may read ../shared).
PRODUCT = ["CMakeLists.txt", "README.md", "cmake", "src", "include", "scripts", "configs", "jobs", "slurm",
           "analysis", "docs", "bench", ".ci"]
# ../shared by any spelling, and the names of the files that live only there.
OUTSIDE = re.compile(r"\.\./shared|shared/(data|reference|seeds|slurm-local|hooks)|\bMETHOD\.md|\bDESIGN\.md"
                     r"|paper-summary")
CLIP_MERGES = "clip/bpe_simple_vocab_16e6.txt.gz"
CMAKE = Path(os.environ.get("DINV_PYTHON", "python3")).parent / "cmake"
PIPELINE_INI = """\
[run]
threads = 1
progress = lines
[data]
format = cifar10
root = data
split = train
real_bs = 16
[model]
path = model
[store]
path = store.h5
[embed]
num_images = 20
group_size = 10
batch_size = 5
steps = 4
resolution = 32
[generate]
tag = t
num_samples = 2
sampling_resolution = 32
save_resolution = 32
chunk_size = 10
[sampler]
steps = 3
[syn]
format = store
root = store.h5
tags = t
[train]
model = resnet18
steps = 4
num_evals = 1
checkpoint_every = 2
"""


def product_files():
    listed = subprocess.run(["git", "-C", SOURCE_DIR, "ls-files", "--cached", "--others", "--exclude-standard", "--",
                             *PRODUCT], capture_output=True, text=True)
    if listed.returncode == 0:
        return [SOURCE_DIR / f for f in listed.stdout.splitlines()]
    return [p for top in PRODUCT for p in (SOURCE_DIR / top).rglob("*") if p.is_file()]


def test_no_product_file_names_the_development_folder():
    files = [f for f in product_files() if f.is_file()]
    assert len(files) > 50, "the product file list looks wrong"
    hits = []
    for f in files:
        text = f.read_bytes().decode("utf-8", errors="ignore")
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{f.relative_to(SOURCE_DIR)}:{n}: {line.strip()[:100]}")
    assert not hits, "product files point outside the repository:\n" + "\n".join(hits)


def declared_sha256():
    source = (SOURCE_DIR / "src/io/data_files.cpp").read_text()
    m = re.search(r'kClipMerges\{"([^"]+)",\s*"([0-9a-f]{64})"', source)
    assert m, "kClipMerges declaration not found"
    assert m.group(1) == CLIP_MERGES
    return m.group(2)


def test_shipped_clip_merges_match_their_declared_sha256():
    shipped = (SOURCE_DIR / "src/sd/clip/bpe_simple_vocab_16e6.txt.gz").read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == declared_sha256()
    assert "MIT License" in (SOURCE_DIR / "src/sd/clip/LICENSE").read_text()
    reference = SOURCE_DIR.parent / "shared/data/clip/bpe_simple_vocab_16e6.txt.gz"
    if reference.exists():  # the development machines' copy, where there is one
        assert reference.read_bytes() == shipped


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """An install, made in one folder and moved to another (relocatable)."""
    root = tmp_path_factory.mktemp("install")
    staged = root / "staged"
    r = run([CMAKE, "--install", BUILD_DIR, "--prefix", staged], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    moved = root / "moved"
    staged.rename(moved)
    return moved


def test_install_tree(prefix):
    assert os.access(prefix / "bin/dinv", os.X_OK)
    share = prefix / "share/dinv"
    for f in [CLIP_MERGES, "clip/LICENSE", "configs/cifar10.ini", "configs/demo.ini", "jobs", "slurm/submit.sh",
              "slurm/stage.sbatch", "slurm/sweep.sbatch.in", "analysis/sample_complexity.py"]:
        assert (share / f).exists(), f
    assert os.access(share / "slurm/submit.sh", os.X_OK)
    modulefiles = list((share / "modulefiles/dinv").iterdir())
    assert len(modulefiles) == 1
    text = modulefiles[0].read_text()
    assert text.startswith("#%Module") and "prepend-path PATH $prefix/bin" in text
    # No path of this machine's source or build tree is baked into the install.
    for f in share.rglob("*"):
        if f.is_file() and f.suffix != ".gz":
            assert str(SOURCE_DIR) not in f.read_text(errors="ignore"), f


def clean_env(prefix):
    """PATH with only the install and the system folders; no DINV_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINV")}
    env["PATH"] = f"{prefix}/bin:/usr/local/bin:/usr/bin:/bin"
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1")
    return env


def hidden_trees():
    """The source and build trees, covered by empty folders in a private mount namespace."""
    trees = {SOURCE_DIR.resolve(), BUILD_DIR.resolve()}
    return sorted(t for t in trees if not any(o != t and o in t.parents for o in trees))


def run_without_trees(script, cwd, env, timeout=900):
    """Run a bash script where the source and build trees cannot be reached."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("hiding the source tree needs root and unshare(1)")
    mounts = "".join(f"mount -t tmpfs -o size=1m dinv-hidden '{t}'\n" for t in hidden_trees())
    guard = "".join(f"[ -z \"$(ls -A '{t}')\" ] || {{ echo 'tree still visible: {t}'; exit 99; }}\n"
                    for t in hidden_trees())
    full = f"set -euo pipefail\n{mounts}{guard}cd '{cwd}'\n{script}"
    return run(["unshare", "--mount", "--propagation", "private", "bash", "-c", full], env=env, timeout=timeout)


def test_installed_pipeline_runs_without_source_or_build_tree(prefix, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "pipeline.ini").write_text(PIPELINE_INI)
    python = os.environ.get("DINV_PYTHON", "python3")
    script = f"""
dinv --version
dinv data shapes --out data --train 60 --test 20 --seed 0
dinv model init --preset tiny model
mpirun -np 2 dinv embed --config pipeline.ini
mpirun -np 2 dinv generate --config pipeline.ini
mpirun -np 2 dinv train --config pipeline.ini --syn.format=none --train.run_name=real
mpirun -np 2 dinv train --config pipeline.ini --data.real_bs=16 --data.syn_bs=16 --train.run_name=mixed
DINV= bash {prefix}/share/dinv/slurm/submit.sh pipeline.ini --dry-run > submit.out 2>&1
'{python}' {prefix}/share/dinv/analysis/sample_complexity.py results --out curves.png
"""
    r = run_without_trees(script, work, clean_env(prefix))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (work / "model/tokenizer/merges.txt").stat().st_size > 100_000
    assert (work / "results/real.h5").exists() and (work / "results/mixed.h5").exists()
    assert (work / "curves.png").stat().st_size > 0
    # The Slurm chain runs the installed dinv, found beside the script.
    submit = (work / "submit.out").read_text()
    assert f"dinv: {prefix}/bin/dinv\n" in submit, submit


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_data_file_names_file_and_sha256(prefix, tmp_path, damage):
    copy = tmp_path / "prefix"
    shutil.copytree(prefix, copy, symlinks=True)
    merges = copy / "share/dinv" / CLIP_MERGES
    if damage == "missing":
        merges.unlink()
    else:
        data = bytearray(merges.read_bytes())
        data[1000] ^= 0xFF
        merges.write_bytes(bytes(data))
    r = run([copy / "bin/dinv", "model", "init", "--preset", "tiny", tmp_path / "model"], env=clean_env(copy))
    assert r.returncode != 0
    assert str(merges) in r.stderr, r.stderr
    assert declared_sha256() in r.stderr, r.stderr
    assert ("missing" if damage == "missing" else "corrupt") in r.stderr, r.stderr


MODULES_INIT = Path("/usr/share/modules/init/bash")  # Debian's environment-modules


def test_module_load_puts_the_installed_dinv_on_path(prefix):
    if not MODULES_INIT.exists():
        pytest.skip("environment-modules is not installed (scripts/bootstrap.sh installs it)")
    script = (f"source {MODULES_INIT}\nmodule use {prefix}/share/dinv/modulefiles\nmodule load dinv\n"
              "command -v dinv\necho \"share=$DINV_SHARE\"\ndinv --version\n")
    r = run(["bash", "-c", script], env=clean_env("/nonexistent"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{prefix}/bin/dinv\n" in r.stdout
    assert f"share={prefix}/share/dinv\n" in r.stdout
