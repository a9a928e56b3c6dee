"""[slurm] options without a cluster: `dinv slurm STAGE`, the sweep's job-array
script, slurm/submit.sh --dry-run, and `dinv sweep --status` / `--resubmit`
against stand-in sbatch and squeue programs on PATH (tests/slurm has the live
cluster)."""
import os
import re
import stat

from conftest import DINV, SOURCE_DIR, run

SLURM_INI = """\
[slurm]
partition = cpu
account = proj
time = 01:00:00
cpus_per_task = 2
mem = 8G
array_parallelism = 3
extra = --exclusive; #SBATCH --mail-type=END
[slurm.embed]
gpus_per_node = 4
time = 12:00:00
[slurm.sweep]
cpus_per_task = 1
mem = none
"""

SWEEP_INI = """\
[data]
format = cifar10
root = data
[sweep]
name = sc
num_data = 10,20
source = real,synthetic
"""


def write(path, text):
    path.write_text(text)
    return path


def options(stage, *args, cwd=None):
    r = run([DINV, "slurm", stage, *map(str, args), "--run.log_level=warn"], cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_stage_options_from_config_and_command_line(tmp_path):
    ini = write(tmp_path / "s.ini", SLURM_INI)
    assert options("embed", "--config", ini) == [
        "--partition=cpu", "--account=proj", "--time=12:00:00", "--cpus-per-task=2", "--gpus-per-node=4",
        "--mem=8G", "--exclusive", "--mail-type=END"]
    assert options("sweep", "--config", ini) == [
        "--partition=cpu", "--account=proj", "--time=01:00:00", "--cpus-per-task=1", "--exclusive",
        "--mail-type=END"]
    # command line wins; a stage key beats the [slurm] key; unset keys are left out
    assert options("generate", "--config", ini, "--slurm.partition=gpu", "--slurm.generate.qos=high",
                   "--slurm.extra=none") == [
        "--partition=gpu", "--account=proj", "--qos=high", "--time=01:00:00", "--cpus-per-task=2", "--mem=8G"]
    assert options("train") == []


def test_bad_slurm_values_are_configuration_errors(tmp_path):
    r = run([DINV, "slurm", "embed", "--slurm.cpus_per_task=four"])
    assert r.returncode == 2 and "slurm.cpus_per_task = 'four' is not a positive integer" in r.stderr, r.stderr
    r = run([DINV, "slurm", "sweep", "--slurm.extra=--exclusive; nodes=2"])
    assert r.returncode == 2 and "not an sbatch option" in r.stderr, r.stderr
    r = run([DINV, "slurm", "embedd"])
    assert r.returncode == 2 and "unknown stage 'embedd'" in r.stderr and "retrieve" in r.stderr, r.stderr
    assert options("pretrain", "--slurm.pretrain.time=02:00:00") == ["--time=02:00:00"]
    assert options("retrieve", "--slurm.retrieve.time=03:00:00", "--slurm.time=01:00:00") == ["--time=03:00:00"]
    assert options("evaluate", "--slurm.evaluate.mem=4G") == ["--mem=4G"]
    r = run([DINV, "slurm", "embed", "--slurm.embed.partitoin=x"])
    assert r.returncode == 2 and "did you mean" in r.stderr, r.stderr


def sweep_script(tmp_path, *args):
    r = run([DINV, "sweep", "--config", tmp_path / "sweep.ini", "--sweep.mode=slurm",
             f"--sweep.template={SOURCE_DIR}/slurm/sweep.sbatch.in", *args], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return (tmp_path / "results" / "sc.sbatch").read_text()


def sbatch_lines(script):
    return re.findall(r"^#SBATCH (.*)$", script, re.M)


def test_sweep_script_takes_slurm_sweep_options(tmp_path):
    write(tmp_path / "sweep.ini", SWEEP_INI)
    # nothing set: no fixed CPUs or time limit, the cluster's defaults apply
    lines = sbatch_lines(sweep_script(tmp_path))
    assert "--array=0-3" in lines
    assert not [x for x in lines if re.match(r"--(cpus-per-task|time|ntasks|partition)", x)], lines
    write(tmp_path / "sweep.ini", SWEEP_INI + SLURM_INI)
    script = sweep_script(tmp_path, "--slurm.sweep.time=00:20:00")
    lines = sbatch_lines(script)
    assert "--array=0-3%3" in lines
    for o in ["--partition=cpu", "--account=proj", "--time=00:20:00", "--cpus-per-task=1", "--exclusive",
              "--mail-type=END"]:
        assert o in lines, (o, lines)
    assert not [x for x in lines if x.startswith(("--mem", "--gpus"))], lines
    # every #SBATCH line comes before the first command (sbatch stops reading there)
    body = [l for l in script.splitlines()[1:] if l and not l.startswith("#")]
    assert script.index(body[0]) > script.rindex("#SBATCH")
    # the frozen configuration records neither [slurm] nor the transient sweep keys
    frozen = (tmp_path / "results" / "sc.ini").read_text()
    assert "[slurm]" not in frozen and "partition" not in frozen


def test_frozen_sweep_configuration_is_unchanged_without_slurm_keys(tmp_path):
    write(tmp_path / "sweep.ini", SWEEP_INI)
    sweep_script(tmp_path)
    frozen = (tmp_path / "results" / "sc.ini").read_text()
    r = run([DINV, "info", "--config", tmp_path / "sweep.ini", "--sweep.mode=slurm",
             f"--sweep.template={SOURCE_DIR}/slurm/sweep.sbatch.in"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # `info` logs the full resolved configuration: the frozen file is exactly it
    assert frozen in r.stdout
    assert "status" not in frozen and "resubmit" not in frozen


def fake_slurm(tmp_path, squeue_lines):
    """sbatch that logs its arguments and answers job id 700 + n; squeue printing `squeue_lines`."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    log = tmp_path / "sbatch.log"
    write(bin_ / "sbatch", f"""#!/bin/bash
echo "$@" >> {log}
n=$(wc -l < {log})
echo $((700 + n))
""")
    write(bin_ / "squeue", "#!/bin/bash\ncat <<'EOF'\n" + "".join(l + "\n" for l in squeue_lines) + "EOF\n")
    write(bin_ / "sacct", "#!/bin/bash\necho 'sacct: accounting storage is disabled' >&2\nexit 1\n")
    for f in bin_.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}"), log


def status(tmp_path, env, *args):
    r = run([DINV, "sweep", "--config", tmp_path / "sweep.ini", *args], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_status_and_resubmit_of_failed_and_missing_points(tmp_path):
    write(tmp_path / "sweep.ini", SWEEP_INI)
    r = run([DINV, "sweep", "--config", tmp_path / "sweep.ini", "--status"], cwd=tmp_path)
    assert r.returncode == 2 and "run `dinv sweep` first" in r.stderr, r.stderr
    env, log = fake_slurm(tmp_path, ["701 0 RUNNING None", "701 1 PENDING JobArrayTaskLimit",
                                     "701 2 CANCELLED None", "999 3 RUNNING None"])
    template = f"--sweep.template={SOURCE_DIR}/slurm/sweep.sbatch.in"
    status(tmp_path, env, "--sweep.mode=slurm", template)
    out = status(tmp_path, env, "--status")
    assert "4 points: 0 done, 0 running, 0 pending, 0 failed, 4 missing" in out, out
    out = status(tmp_path, env, "--sweep.mode=slurm", "--sweep.submit", "--sweep.after=42", template)
    assert "submitted sweep sc as job 701 (array 0-3)" in out
    assert "--dependency=afterok:42 --kill-on-invalid-dep=yes" in log.read_text()
    assert (tmp_path / "results" / "sc.jobs").read_text() == "701 0,1,2,3\n"
    # point 3 is not listed by squeue (job 999 is another one), but it left the reason it failed
    (tmp_path / "results" / "sc_n20_synthetic.failed").write_text("store.h5 has no tag 'x'\n")
    out = status(tmp_path, env, "--status")
    table = out[out.index("\npoint  name"):].splitlines()[2:]
    rows = {l.split()[0]: l.split() for l in table}
    assert "4 points: 0 done, 1 running, 1 pending, 2 failed, 0 missing" in out, out
    assert rows["0"][1:5] == ["sc_n10_real", "running", "701_0", "RUNNING"], out
    assert rows["1"][2:6] == ["pending", "701_1", "PENDING", "(JobArrayTaskLimit)"], out
    assert rows["2"][2:5] == ["failed", "701_2", "CANCELLED"], out
    assert rows["3"][2:5] == ["failed", "701_3", "unknown"], out
    assert "error: store.h5 has no tag 'x'" in out and "results/sc_n20_synthetic.h5" in out
    out = status(tmp_path, env, "--resubmit", "--slurm.sweep.time=00:05:00")
    assert "submitted sweep sc as job 702 (array 2-3)" in out
    script = (tmp_path / "results" / "sc.sbatch").read_text()
    assert "#SBATCH --array=2-3" in script and "#SBATCH --time=00:05:00" in script
    assert (tmp_path / "results" / "sc.jobs").read_text() == "701 0,1,2,3\n702 2,3\n"
    # the frozen sweep is what counts, not the configuration given now
    frozen = (tmp_path / "results" / "sc.ini").read_text()
    out = status(tmp_path, env, "--status", "--sweep.num_data=5")
    assert "4 points" in out
    assert (tmp_path / "results" / "sc.ini").read_text() == frozen


def test_a_sweep_larger_than_max_array_size_is_split_into_arrays(tmp_path):
    # Slurm refuses array indices of MaxArraySize or more: 4 points with
    # MaxArraySize 2 (as `scontrol show config` says) go out as two arrays,
    # the second counting its points from 2.
    write(tmp_path / "sweep.ini", SWEEP_INI)
    env, log = fake_slurm(tmp_path, ["701 0 RUNNING None", "701 1 RUNNING None", "702 0 RUNNING None",
                                     "702 1 PENDING Priority"])
    write(tmp_path / "bin" / "scontrol", "#!/bin/bash\necho 'MaxArrayCount           = 9'\n"
                                         "echo 'MaxArraySize            = 2'\n").chmod(0o755)
    template = f"--sweep.template={SOURCE_DIR}/slurm/sweep.sbatch.in"
    out = status(tmp_path, env, "--sweep.mode=slurm", "--sweep.submit", template)
    assert "submitted sweep sc as job 701 (array 0-1)" in out, out
    assert "submitted sweep sc as job 702 (array 0-1: points 2 + index)" in out, out
    first, second = (tmp_path / "results" / "sc.sbatch").read_text(), (tmp_path / "results" / "sc.2.sbatch").read_text()
    assert "#SBATCH --array=0-1" in first and "--sweep.task=${SLURM_ARRAY_TASK_ID}" in first
    assert "#SBATCH --array=0-1" in second and "--sweep.task=$((2 + SLURM_ARRAY_TASK_ID))" in second
    assert (tmp_path / "results" / "sc.jobs").read_text() == "701 0,1\n702 2,3 2\n"
    # --status names each point's own array task: point 3 is 702_1
    out = status(tmp_path, env, "--status")
    rows = {l.split()[0]: l.split() for l in out[out.index("\npoint  name"):].splitlines()[2:]}
    assert rows["2"][2:5] == ["running", "702_0", "RUNNING"], out
    assert rows["3"][2:6] == ["pending", "702_1", "PENDING", "(Priority)"], out
    # The task arithmetic runs point 3 (bash evaluates the command's argument).
    r = run(["bash", "-c", 'SLURM_ARRAY_TASK_ID=1; echo --sweep.task=$((2 + SLURM_ARRAY_TASK_ID))'])
    assert r.stdout.strip() == "--sweep.task=3"
    # Resubmitting the missing points 2 and 3: as they are under the key's
    # limit, and counted from 2 under Slurm's.
    (tmp_path / "results" / "sc.jobs").write_text("701 0,1\n")
    out = status(tmp_path, env, "--resubmit", "--sweep.max_array_size=4")
    assert "submitted sweep sc as job 703 (array 2-3)" in out, out
    (tmp_path / "results" / "sc.jobs").write_text("701 0,1\n")
    out = status(tmp_path, env, "--resubmit")
    assert "submitted sweep sc as job 704 (array 0-1: points 2 + index)" in out, out
    r = run([DINV, "sweep", "--config", tmp_path / "sweep.ini", "--resubmit", "--sweep.max_array_size=0"],
            cwd=tmp_path, env=env)
    assert r.returncode == 2 and "sweep.max_array_size" in r.stderr, r.stderr


def test_submit_dry_run_chains_stages_with_their_options(tmp_path):
    write(tmp_path / "sweep.ini", SWEEP_INI + SLURM_INI)
    env = dict(os.environ, DINV=DINV)
    r = run(["bash", SOURCE_DIR / "slurm" / "submit.sh", tmp_path / "sweep.ini", "--slurm.partition=gpu",
             "--ntasks", "2", "--dry-run"], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "submitted: embed DRYembed, generate DRYgenerate, sweep DRYsweep" in r.stdout
    embed = next(l for l in r.stderr.splitlines() if "stage.sbatch embed" in l)
    assert "--partition=gpu" in embed and "--gpus-per-node=4" in embed and "--ntasks 2" in embed, embed
    assert "--slurm.partition=gpu" in embed  # the overrides reach the stage too
    generate = next(l for l in r.stderr.splitlines() if "stage.sbatch generate" in l)
    assert "--dependency=afterok:DRYembed --kill-on-invalid-dep=yes" in generate and "gpus" not in generate
    sweep = next(l for l in r.stderr.splitlines() if " sweep --config" in l)
    assert "--sweep.after=DRYgenerate" in sweep
    lines = sbatch_lines((tmp_path / "results" / "sc.sbatch").read_text())
    assert "--partition=gpu" in lines and "--array=0-3%3" in lines


def test_submit_chains_the_stages_given_in_order(tmp_path):
    write(tmp_path / "sweep.ini", SWEEP_INI + SLURM_INI + "[slurm.retrieve]\ntime = 03:00:00\n")
    env = dict(os.environ, DINV=DINV)
    r = run(["bash", SOURCE_DIR / "slurm" / "submit.sh", tmp_path / "sweep.ini",
             "--stages=pretrain,embed,generate,retrieve", "--dry-run"], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert ("submitted: pretrain DRYpretrain, embed DRYembed, generate DRYgenerate, retrieve DRYretrieve, "
            "sweep DRYsweep") in r.stdout, r.stdout
    lines = {stage: next(l for l in r.stderr.splitlines() if f"stage.sbatch {stage} " in l)
             for stage in ("pretrain", "embed", "generate", "retrieve")}
    assert "--hold" in lines["pretrain"] and "--dependency" not in lines["pretrain"]
    for stage, before in (("embed", "pretrain"), ("generate", "embed"), ("retrieve", "generate")):
        assert f"--dependency=afterok:DRY{before} --kill-on-invalid-dep=yes" in lines[stage], lines[stage]
        assert "--hold" not in lines[stage]
    assert "--time=03:00:00" in lines["retrieve"] and "--time=01:00:00" in lines["generate"]
    sweep = next(l for l in r.stderr.splitlines() if " sweep --config" in l)
    assert "--sweep.after=DRYretrieve" in sweep
    # one stage alone: the sweep waits for it
    r = run(["bash", SOURCE_DIR / "slurm" / "submit.sh", tmp_path / "sweep.ini", "--stages=retrieve", "--dry-run"],
            cwd=tmp_path, env=env)
    assert r.returncode == 0 and "submitted: retrieve DRYretrieve, sweep DRYsweep" in r.stdout, r.stderr


def test_submit_refuses_stages_that_cannot_come_before_the_sweep(tmp_path):
    write(tmp_path / "sweep.ini", SWEEP_INI)
    env = dict(os.environ, DINV=DINV)
    for stages, message in (("embed,train", "'train' is not a stage run before the sweep"),
                            ("", "--stages is empty"), ("embed,,generate", "'' is not a stage")):
        r = run(["bash", SOURCE_DIR / "slurm" / "submit.sh", tmp_path / "sweep.ini", f"--stages={stages}",
                 "--dry-run"], cwd=tmp_path, env=env)
        assert r.returncode == 2 and message in r.stderr, (stages, r.stderr)
        assert "stage.sbatch" not in r.stderr  # nothing was submitted
