# `dinv train` and `dinv sweep` end to end on small shapes data: the results
# file (read with h5py), resumable runs (kill -9 and rerun), sweeps (local and
# Slurm script), the analysis script, and bad inputs.
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import store_fixture

DINV = os.environ["DINV"]
SOURCE = pathlib.Path(os.environ["DINV_SOURCE_DIR"])
SHAPES = ["disk", "square", "triangle", "plus", "ring", "diamond", "frame", "x_cross", "bars", "crescent"]


def dinv(*args, cwd, check=True, launcher=()):
    proc = subprocess.run([*launcher, DINV, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"dinv {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    dinv("data", "shapes", "--out", root, "--train", 400, "--test", 100, "--seed", 0, cwd=root)
    return root


def small_run(shapes, steps=12):
    return [f"--data.format=cifar10", f"--data.root={shapes}", "--data.resolution=16", "--data.real_bs=8",
            "--data.eval_bs=50", "--data.workers=1", f"--train.steps={steps}", "--train.num_evals=3",
            "--train.warmup_steps=2", "--train.lr=0.02", "--run.progress=off", "--run.threads=1"]


def test_train_writes_a_complete_results_file_and_skips_it_next_time(shapes, tmp_path):
    dinv("train", *small_run(shapes), "--train.run_name=r1", cwd=tmp_path)
    path = tmp_path / "results" / "r1.h5"
    with h5py.File(path, "r") as f:
        assert f.attrs["complete"] == 1 and f.attrs["schema"] == "dinv-train-results/1"
        assert "[train]" in f.attrs["config"] and "steps = 12" in f.attrs["config"]
        assert list(f["history/step"][:]) == list(range(12))
        assert f["history/lr"][0] < f["history/lr"][2]  # warm-up
        assert np.all(np.isfinite(f["history/train_loss"][:]))
        assert list(f["eval/step"][:]) == [4, 8, 12]
        assert f["eval/per_class_accuracy"].shape == (3, 10)
        assert f["final/per_class_accuracy"].shape == (10,)
        assert 0 <= f.attrs["final_accuracy"] <= 1 and f.attrs["best_accuracy"] >= f.attrs["final_accuracy"]
        assert f.attrs["final_accuracy"] == pytest.approx(f["eval/accuracy"][-1])
        assert [n.decode() if isinstance(n, bytes) else n for n in f.attrs["class_names"]] == SHAPES
        assert "CIFAR" in f.attrs["fingerprint.test"] or len(f.attrs["fingerprint.test"]) > 0
        assert f.attrs["images_per_second"] > 0
    assert not (tmp_path / "checkpoints" / "r1.ckpt").exists()
    again = dinv("train", *small_run(shapes), "--train.run_name=r1", cwd=tmp_path)
    assert "skipped" in again.stdout + again.stderr


def test_a_real_subset_smaller_than_one_batch_is_visited_several_times_per_step(shapes, tmp_path):
    # 20 real images in global batches of 32: each epoch passes over them
    # twice (docs/method.md, "Real and synthetic data"), the same on 1 and 2
    # ranks (synchronised BatchNorm: the statistics of the global batch).
    args = small_run(shapes, steps=6) + ["--data.num_data=20", "--data.group_size=10", "--data.real_bs=32",
                                         "--train.sync_bn=true"]
    dinv("train", *args, "--train.run_name=one", cwd=tmp_path)
    dinv("train", *args, "--train.run_name=two", cwd=tmp_path, launcher=("mpirun", "--oversubscribe", "-np", "2"))
    with h5py.File(tmp_path / "results" / "one.h5") as a, h5py.File(tmp_path / "results" / "two.h5") as b:
        assert len(a["selection/real_index"]) == 20
        assert np.isfinite(a["history/train_loss"][:]).all()
        # The same batches: the first steps agree to float precision (later
        # ones drift apart as the all-reduce sums in another order).
        np.testing.assert_allclose(a["history/train_loss"][:3], b["history/train_loss"][:3], rtol=1e-5)


def test_an_evaluation_batch_that_does_not_divide_by_the_rank_count_sees_every_test_image(shapes, tmp_path):
    # 3 ranks: eval_bs 50 (17 per rank, rounded up) against 48 (16 per rank)
    # after the same training: the same predictions on all 100 test images.
    args = small_run(shapes, steps=3) + ["--data.real_bs=6", "--train.num_evals=1"]
    mpirun = ("mpirun", "--oversubscribe", "-np", "3")
    for bs in (48, 50):
        dinv("train", *args, f"--data.eval_bs={bs}", f"--train.run_name=eval{bs}", cwd=tmp_path, launcher=mpirun)
    with h5py.File(tmp_path / "results" / "eval48.h5") as a, h5py.File(tmp_path / "results" / "eval50.h5") as b:
        np.testing.assert_array_equal(a["final/per_class_accuracy"][:], b["final/per_class_accuracy"][:])
        np.testing.assert_allclose(a["eval/loss"][:], b["eval/loss"][:], rtol=1e-5)


def test_kill_9_during_training_then_rerun_gives_the_uninterrupted_metrics(shapes, tmp_path):
    args = small_run(shapes, steps=12) + ["--train.checkpoint_every=4", "--train.num_evals=2", "--train.lr=0.005",
                                          "--data.real_bs=16"]
    dinv("train", *args, "--train.run_name=straight", cwd=tmp_path)
    proc = subprocess.Popen([DINV, "train", *args, "--train.run_name=killed"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "checkpoints" / "killed.ckpt"
    deadline = time.time() + 300
    # The checkpoint appears complete (written aside, then renamed): kill at
    # once, before a fast machine finishes the remaining steps.
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed: make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "results" / "killed.h5").exists()
    dinv("train", *args, "--train.run_name=killed", cwd=tmp_path)
    with h5py.File(tmp_path / "results" / "straight.h5") as a, h5py.File(tmp_path / "results" / "killed.h5") as b:
        resumed = int(b.attrs["resumed_from"])
        assert resumed > 0
        np.testing.assert_array_equal(a["history/train_loss"][:], b["history/train_loss"][:])
        np.testing.assert_array_equal(a["eval/step"][:], b["eval/step"][:])
        np.testing.assert_array_equal(a["eval/accuracy"][:], b["eval/accuracy"][:])
        np.testing.assert_array_equal(a["final/per_class_accuracy"][:], b["final/per_class_accuracy"][:])
        np.testing.assert_array_equal(a["eval/loss"][:], b["eval/loss"][:])
        assert a.attrs["final_accuracy"] == b.attrs["final_accuracy"]


def write_store(path, shapes):
    """One sample of each of the 400 shapes images, by the store layout generate writes."""
    store_fixture.write_store(path, store_fixture.dataset_fingerprint(DINV, shapes), {"default": (range(400), 1)})


def test_sweep_runs_the_grid_skips_finished_points_and_feeds_the_analysis(shapes, tmp_path):
    write_store(tmp_path / "store.h5", shapes)
    grid = ["--syn.format=store", f"--syn.root={tmp_path / 'store.h5'}", "--syn.tags=default",
            "--sweep.name=sc", "--sweep.num_data=100,200", "--sweep.source=real,mixed", "--data.group_size=100"]
    dinv("sweep", *small_run(shapes, steps=6), *grid, cwd=tmp_path)
    names = sorted(p.name for p in (tmp_path / "results").glob("*.h5"))
    assert names == ["sc_n100_mixed.h5", "sc_n100_real.h5", "sc_n200_mixed.h5", "sc_n200_real.h5"]
    with h5py.File(tmp_path / "results" / "sc_n100_mixed.h5") as f:
        assert "num_data = 100" in f.attrs["config"] and "syn_bs = 4" in f.attrs["config"]
        assert "fingerprint.synthetic" in f.attrs
    again = dinv("sweep", *small_run(shapes, steps=6), *grid, cwd=tmp_path)
    assert (again.stdout + again.stderr).count("skipped") == 4
    table = subprocess.run([sys.executable, SOURCE / "analysis" / "sample_complexity.py", tmp_path / "results",
                            "--out", tmp_path / "curves.png", "--table", tmp_path / "table.csv"],
                           capture_output=True, text=True, check=True)
    assert "mixed" in table.stdout and (tmp_path / "curves.png").stat().st_size > 1000
    assert len((tmp_path / "table.csv").read_text().splitlines()) == 5


def test_sweep_writes_a_slurm_job_array(shapes, tmp_path):
    dinv("sweep", *small_run(shapes), "--sweep.name=arr", "--sweep.seed=0,1,2", "--sweep.mode=slurm",
         f"--sweep.template={SOURCE / 'slurm' / 'sweep.sbatch.in'}", cwd=tmp_path)
    script = (tmp_path / "results" / "arr.sbatch").read_text()
    assert "#SBATCH --array=0-2" in script and "--sweep.task=${SLURM_ARRAY_TASK_ID}" in script
    assert "@" not in re.sub(r"--signal=(B:)?USR2@\d+", "", script)
    assert "[sweep]" in (tmp_path / "results" / "arr.ini").read_text()


def failure(shapes, tmp_path, *extra, launcher=()):
    proc = dinv("train", *small_run(shapes), *extra, cwd=tmp_path, check=False, launcher=launcher)
    assert proc.returncode != 0
    return proc.stderr


def test_bad_inputs_are_clear_errors(shapes, tmp_path):
    assert "num_data" in failure(shapes, tmp_path, "--data.num_data=1000", "--data.group_size=100")
    write_store(tmp_path / "store.h5", shapes)
    err = failure(shapes, tmp_path, "--data.syn_bs=4", "--syn.format=store", f"--syn.root={tmp_path / 'store.h5'}",
                  "--syn.tags=default,nope")
    assert "samples/nope" in err
    err = failure(shapes, tmp_path, "--train.lr=1e30", "--train.warmup_steps=0", "--train.checkpoint_every=2")
    assert "diverged" in err and "at step" in err
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*.h5"))
    mpirun = [os.environ["MPIEXEC"], "--oversubscribe", "-np", "2"]
    err = failure(shapes, tmp_path, "--data.real_bs=7", launcher=mpirun)
    assert "data.real_bs" in err and "2 ranks" in err


def test_a_sweep_whose_mixed_split_does_not_divide_over_the_ranks_is_refused_before_any_point(shapes, tmp_path):
    # 4 + 2 = 6 images per step: source mixed trains on 3 + 3, which 2 ranks cannot split.
    mpirun = [os.environ["MPIEXEC"], "--oversubscribe", "-np", "2"]
    write_store(tmp_path / "store.h5", shapes)
    proc = dinv("sweep", *small_run(shapes), "--data.real_bs=4", "--data.syn_bs=2", "--syn.format=store",
                f"--syn.root={tmp_path / 'store.h5'}", "--syn.tags=default", "--sweep.name=odd",
                "--sweep.source=real,mixed", cwd=tmp_path, check=False, launcher=mpirun)
    assert proc.returncode == 2, proc.stderr
    assert "odd_mixed trains on 3 real + 3 synthetic" in proc.stderr and "multiple of 4" in proc.stderr, proc.stderr
    assert not list((tmp_path / "results").glob("*.h5"))  # the real point did not run either


@pytest.mark.parametrize("mode", ["local", "slurm"])
def test_a_sweep_point_larger_than_the_data_is_refused_before_any_point_runs_or_is_submitted(shapes, tmp_path, mode):
    proc = dinv("sweep", *small_run(shapes), "--sweep.name=big", "--sweep.num_data=100,1000", "--data.group_size=100",
                "--sweep.source=real", f"--sweep.mode={mode}", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "sweep.num_data" in proc.stderr and "point big_n1000_real" in proc.stderr, proc.stderr
    assert "larger than the dataset's 400 images" in proc.stderr, proc.stderr
    assert not list((tmp_path / "results").glob("*.h5")) and not list((tmp_path / "results").glob("*.sbatch"))


def test_a_sweep_point_on_a_missing_tag_or_store_is_refused_before_any_point_runs(shapes, tmp_path):
    write_store(tmp_path / "store.h5", shapes)
    grid = ["--sweep.name=tg", "--sweep.source=real,mixed", "--data.syn_bs=4", "--syn.format=store"]
    proc = dinv("sweep", *small_run(shapes), *grid, f"--syn.root={tmp_path / 'store.h5'}",
                "--sweep.syn_tags=default,nope", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "sweep.syn_tags" in proc.stderr and "point tg_mixed_nope" in proc.stderr, proc.stderr
    assert "/samples/nope (tag 'nope' was never generated)" in proc.stderr, proc.stderr
    proc = dinv("sweep", *small_run(shapes), *grid, f"--syn.root={tmp_path / 'none.h5'}", "--syn.tags=default",
                cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "syn.root" in proc.stderr and "none.h5' does not exist" in proc.stderr, proc.stderr
    assert not list((tmp_path / "results").glob("*.h5"))
    # Submitted as an array, the store is not there yet: the jobs before the sweep make it.
    proc = dinv("sweep", *small_run(shapes), *grid, f"--syn.root={tmp_path / 'none.h5'}", "--syn.tags=default",
                "--sweep.mode=slurm", cwd=tmp_path, check=False)
    assert proc.returncode == 0 and (tmp_path / "results" / "tg.sbatch").exists(), proc.stderr
    # the same missing store named as plainly by dinv train
    err = failure(shapes, tmp_path, "--data.syn_bs=4", "--syn.format=store", f"--syn.root={tmp_path / 'none.h5'}",
                  "--syn.tags=default")
    assert "none.h5' does not exist" in err and "HDF5 error stack" not in err, err
