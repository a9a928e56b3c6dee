"""The real `dinv` CLI: help, version, and every kind of configuration error
gives exit code 2 and one message naming the key, value, file and line."""
import os
import re

from conftest import DINV, mpirun_cmd, run


def test_version_reports_real_library_versions():
    r = run([DINV, "--version"])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^dinv \d+\.\d+\.\d+ \(git [0-9a-f]{7,}|unknown\)", out, re.M), out
    assert "LibTorch 2.11.0" in out
    assert re.search(r"MPI\s+Open MPI v\d", out), out
    assert re.search(r"HDF5\s+1\.\d+\.\d+ \(parallel\)", out), out
    assert re.search(r"NCCL\s+(\d+\.\d+\.\d+|not built)", out), out


def test_help_lists_commands_and_command_help_lists_keys():
    r = run([DINV, "--help"])
    assert r.returncode == 0
    for cmd in ["embed", "generate", "train", "sweep", "model", "info"]:
        assert re.search(rf"^\s+{cmd}\s", r.stdout, re.M), cmd
    r = run([DINV, "info", "--help"])
    assert r.returncode == 0
    assert "--run.seed" in r.stdout and "--store.path" in r.stdout


def test_unknown_command():
    r = run([DINV, "embedd"])
    assert r.returncode == 2
    assert "unknown command 'embedd'" in r.stderr


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def expect_config_error(args, pattern):
    r = run([DINV, "info", *map(str, args)])
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert re.search(pattern, r.stderr), r.stderr
    return r


def test_unknown_key_in_file_names_file_and_line(tmp_path):
    f = write(tmp_path, "a.ini", "[run]\nseed = 3\nsed = 4\n")
    expect_config_error(["--config", f], rf"{re.escape(str(f))}:3: unknown configuration key 'run.sed'; did you mean run.seed")


def test_unknown_key_on_command_line():
    expect_config_error(["--run.sede=1"], r"command line: unknown configuration key 'run.sede'")


def test_bad_type(tmp_path):
    f = write(tmp_path, "b.ini", "[run]\n\nthreads = four\n")
    expect_config_error(["--config", f], rf"{re.escape(str(f))}:3: run.threads = 'four' is not an integer \(allowed: an integer >= 0 and <= 1024\)")


def test_out_of_range_and_bad_choice():
    expect_config_error(["--run.progress_interval=0"], r"run.progress_interval = '0' is out of range \(allowed: a number > 0\)")
    expect_config_error(["--run.log_level=loud"], r"run.log_level = 'loud' is not one of the choices \(allowed: one of debug, info, warn, error, off\)")


def test_bad_device():
    expect_config_error(["--run.device=gpu"], r"run.device = 'gpu' is not a device \(allowed: auto, cpu, cuda, cuda:N\)")
    import torch
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        expect_config_error([f"--run.device=cuda:{gpus}"], rf"run.device = 'cuda:{gpus}' but rank 0's node has {gpus} GPU")
    else:
        expect_config_error(["--run.device=cuda:1"], r"run.device = 'cuda:1' but no CUDA device is available to rank 0")


def test_automatic_threads_follow_the_environment_and_the_binding():
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    debug = ["info", "--run.log_level=debug"]
    r = run([DINV, *debug], env=dict(base, OMP_NUM_THREADS="3", SLURM_CPUS_PER_TASK="2"))
    assert "run.threads = 0: 3 intra-op threads per rank (from OMP_NUM_THREADS)" in r.stdout, r.stdout
    r = run([DINV, *debug], env=dict(base, SLURM_CPUS_PER_TASK="2"))
    assert "run.threads = 0: 2 intra-op threads per rank (from SLURM_CPUS_PER_TASK)" in r.stdout, r.stdout
    # Bound to one CPU (as mpirun binds 1 or 2 ranks), a rank runs one thread, not one per core of the node.
    r = run(["taskset", "-c", "0", DINV, *debug], env=base)
    assert "run.threads = 0: 1 intra-op threads per rank (1 CPUs this rank may run on" in r.stdout, r.stdout
    r = run([DINV, *debug, "--run.threads=2"], env=base)
    assert "intra-op threads per rank" not in r.stdout, "an explicit run.threads is used as it is"


def test_unreadable_file(tmp_path):
    expect_config_error(["--config", tmp_path / "missing.ini"], r"cannot read configuration file '.*missing.ini'")


def test_later_file_and_command_line_win(tmp_path):
    a = write(tmp_path, "a.ini", "[run]\nlog_level = error\n")
    b = write(tmp_path, "b.ini", "[run]\nlog_level = info\n")
    r = run([DINV, "info", "--config", a, "--config", b, "--run.log_level=debug"])
    assert r.returncode == 0, r.stderr
    # debug level prints the resolved configuration
    assert "log_level = debug" in r.stdout


def test_config_error_under_mpi_exits_2_with_one_message(tmp_path):
    r = run(mpirun_cmd(2, DINV, "info", "--run.seed=-5"), timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("run.seed = '-5' is out of range") == 1, r.stderr


def test_missing_store_is_runtime_error_and_aborts_all_ranks(tmp_path):
    r = run(mpirun_cmd(2, DINV, "info", f"--store.path={tmp_path}/nope.h5"), timeout=60)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "does not exist" in r.stderr
