"""The Slurm scripts on a real single-node Slurm cluster (../shared/slurm-local
beside the source tree, started here on free ports in a temporary folder and
stopped on exit, also on failure): slurm/submit.sh chains embed (4 ranks under
srun --mpi=pmix) -> generate -> the sweep's job array (throttled to one task at
a time); embed is requeued mid-run and resumes; one array task is cancelled,
`dinv sweep --status` reports it, `--resubmit` runs only it; a failing stage
cancels the jobs after it and says why; a sweep larger than MaxArraySize
runs as two arrays. Pre-emption of embed, generate, a
sweep task, pretrain and retrieve: each is requeued (`scontrol requeue`) and then sent
the time-limit signal (SIGUSR2 to the batch script), comes back twice and
resumes. Every output equals the one of an uninterrupted single-rank mpirun
run: the store and the generator's weights byte for byte, the results files in
everything but their timings (so 4 ranks under srun --mpi=pmix give the store
of 1 rank)."""
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from conftest import DINV, SOURCE_DIR, mpirun_cmd, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "retrieve"))
from retrieve_inputs import make_retrieve_inputs  # noqa: E402
from stage_fixture import ENV as STAGE_ENV, make_inputs  # noqa: E402

# mpirun refuses to run as root without these (ctest sets them too).
ENV = dict(STAGE_ENV, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

KIT = SOURCE_DIR.parent / "shared" / "slurm-local"
SUBMIT = SOURCE_DIR / "slurm" / "submit.sh"

pytestmark = [
    pytest.mark.skipif(not (KIT / "start.sh").exists(), reason=f"no Slurm test cluster kit at {KIT}"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the Slurm test cluster must be started as root"),
]

# Progress lines every 0.2 s: the preemption tests requeue a job once it
# shows progress, so a line must come long before the job's end, however fast
# the machine.
CONFIG = """\
[run]
threads = 1
progress = lines
progress_interval = 0.2
[data]
format = cifar10
root = {inputs}/data
split = train
real_bs = 8
syn_bs = 0
eval_bs = 50
group_size = 10
[model]
path = {inputs}/model
[store]
path = store.h5
[embed]
num_images = 20
group_size = 5
batch_size = 5
steps = 16
resolution = 32
checkpoint_every = 2
[generate]
tag = method
num_samples = 2
sampling_resolution = 32
save_resolution = 16
chunk_size = 10
batch_size = 5
[sampler]
steps = 4
[syn]
format = store
root = store.h5
tags = method
# Only 20 images are embedded, so random real subsets of 10 and 20 hold none of
# the sources: this file tests scheduling, not selection (test_honest_sweeps does).
follow_real = false
[train]
model = resnet18
steps = 3
warmup_steps = 1
num_evals = 1
checkpoint_every = 0
[sweep]
name = live
num_data = 10,20
source = real,synthetic
"""
POINTS = ["live_n10_real", "live_n10_synthetic", "live_n20_real", "live_n20_synthetic"]
SLURM = ["--slurm.embed.ntasks=4", "--slurm.generate.ntasks=2", "--slurm.sweep.ntasks=1",
         "--slurm.cpus_per_task=1", "--slurm.time=00:10:00", "--slurm.sweep.array_parallelism=1"]


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports():
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000, 2)
        if port_free(base) and port_free(base + 1):
            return base, base + 1
    raise RuntimeError("no two free ports")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    ctld, slurmd = free_ports()
    env = dict(ENV, DINV=str(DINV), SLURM_LOCAL_CTLD_PORT=str(ctld), SLURM_LOCAL_SLURMD_PORT=str(slurmd),
               SLURM_LOCAL_CPUS="4", SLURM_LOCAL_TIMEOUT="120")
    # Stops the cluster when this process ends however it ends (a killed test
    # runs no finaliser): a detached watcher.
    watcher = subprocess.Popen(
        ["bash", "-c", f'while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "{KIT}/stop.sh" "{folder}"'],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        r = run([KIT / "start.sh", folder], env=env, timeout=900)
        assert r.returncode == 0, r.stderr
        for name, value in re.findall(r"^export (\w+)=(.*)$", r.stdout, re.M):
            env[name] = value
        yield env
    finally:
        stop = run([KIT / "stop.sh", folder], env=env, timeout=120)
        print(stop.stderr, file=sys.stderr)
        del watcher  # it exits by itself with this process


def jobs(env, *args):
    """{job id or array_task: (state, reason)} of every job Slurm remembers."""
    r = run(["squeue", "-h", "-r", "-t", "all", "-o", "%i %T %r", *args], env=env)
    assert r.returncode == 0, r.stderr
    return {p[0]: (p[1], p[2] if len(p) > 2 else "") for p in (l.split(None, 2) for l in r.stdout.splitlines())}


DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def wait_for(what, check, timeout, env, work):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(Path(work).glob("*.out")))
    pytest.fail(f"timed out waiting for {what}; queue: {jobs(env)}\n{logs}")


def state(env, job):
    return jobs(env).get(str(job), ("GONE", ""))


def sweep(cwd, env, *args):
    return run([DINV, "sweep", "--config", cwd / "live.ini", *args], cwd=cwd, env=env, timeout=300)


def status_rows(out):
    table = out[out.index("\npoint  name"):].splitlines()[2:]
    return {l.split()[1]: l.split() for l in table if l.strip()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    make_inputs(root)
    return root


def write_config(work, inputs):
    work.mkdir(parents=True, exist_ok=True)
    (work / "live.ini").write_text(CONFIG.format(inputs=inputs))


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """Uninterrupted single-rank mpirun run of the same pipeline."""
    work = tmp_path_factory.mktemp("reference")
    write_config(work, inputs)
    for stage in ["embed", "generate"]:
        r = run(mpirun_cmd(1, DINV, stage, "--config", work / "live.ini"), cwd=work, env=ENV, timeout=600)
        assert r.returncode == 0, r.stderr
        if stage == "embed":  # the input of the generate pre-emption test
            shutil.copy(work / "store.h5", work / "embedded.h5")
    r = run(mpirun_cmd(1, DINV, "sweep", "--config", work / "live.ini"), cwd=work, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    return work


# What says how a run went, not what it computed: timings, and the step a
# pre-empted run resumed from.
TIMINGS = {"train_seconds", "eval_seconds", "images_per_second", "resumed_from"}


def same_results(a, b):
    """Results files equal in data and attributes but the timings; the configurations differ only in the
    keys that say how the sweep was run (mode, submit, template)."""
    def config(text):
        return [l for l in text.splitlines() if not re.match(r"(mode|submit|template) = ", l)]
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert set(fa.attrs) == set(fb.attrs)
        for k in fa.attrs:
            if k in TIMINGS:
                continue
            if k == "config":
                assert config(fa.attrs[k]) == config(fb.attrs[k])
            else:
                assert str(fa.attrs[k]) == str(fb.attrs[k]), k
        names = []
        fa.visit(names.append)
        other = []
        fb.visit(other.append)
        assert names == other
        for n in names:
            if isinstance(fa[n], h5py.Dataset):
                assert fa[n][()].tobytes() == fb[n][()].tobytes(), n


def test_pipeline_with_requeue_cancel_and_resubmit(cluster, inputs, reference, tmp_path):
    env = cluster
    work = tmp_path / "slurm"
    write_config(work, inputs)
    r = run(["bash", SUBMIT, work / "live.ini", *SLURM], cwd=work, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    m = re.search(r"submitted: embed (\d+), generate (\d+), sweep (\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    embed, generate, array = m.groups()
    script = (work / "results" / "live.sbatch").read_text()
    assert "#SBATCH --array=0-3%1" in script and "#SBATCH --time=00:10:00" in script
    assert "--cpus-per-task=4" not in script

    # cancel one array task before it runs
    r = run(["scancel", f"{array}_3"], env=env)
    assert r.returncode == 0, r.stderr

    # requeue embed once it has checkpointed (mid-run), and let it start again at once
    ckpt = work / "store.h5.ckpt"
    wait_for("embed to checkpoint", lambda: state(env, embed)[0] == "RUNNING" and list(ckpt.glob("*.safetensors")),
             240, env, work)
    r = run(["scontrol", "requeue", embed], env=env)
    assert r.returncode == 0, r.stderr
    release_when_requeued(env, embed, work)

    # A pending array task that is cancelled leaves no record in Slurm: the
    # sweep then reports its point as missing.
    def array_done():
        q = jobs(env)
        ran = [q.get(f"{array}_{i}", ("", ""))[0] for i in range(3)]
        return all(s in DONE for s in ran) and q
    q = wait_for("the sweep array", array_done, 600, env, work)
    assert q[embed][0] == "COMPLETED" and q[generate][0] == "COMPLETED", q
    assert [q[f"{array}_{i}"][0] for i in range(3)] == ["COMPLETED"] * 3, q
    assert q.get(f"{array}_3", ("CANCELLED",))[0] == "CANCELLED", q
    out = (work / f"dinv-dinv-embed-{embed}.out").read_text()
    assert "restart 1" in out and "resumes at step" in out, out
    assert not (work / "results" / "live_n20_synthetic.h5").exists()

    r = sweep(work, env, "--status")
    assert r.returncode == 0, r.stderr
    assert "4 points: 3 done, 0 running, 0 pending, 0 failed, 1 missing" in r.stdout, r.stdout
    assert status_rows(r.stdout)["live_n20_synthetic"][2:4] == ["missing", f"{array}_3"], r.stdout

    r = sweep(work, env, "--resubmit")
    assert r.returncode == 0, r.stderr
    again = re.search(r"submitted sweep live as job (\d+) \(array 3\)", r.stdout)
    assert again, r.stdout
    wait_for("the resubmitted point", lambda: state(env, f"{again[1]}_3")[0] in DONE, 300, env, work)
    r = sweep(work, env, "--status")
    assert "4 points: 4 done, 0 running, 0 pending, 0 failed, 0 missing" in r.stdout, r.stdout

    assert (work / "store.h5").read_bytes() == (reference / "store.h5").read_bytes()
    for p in POINTS:
        same_results(reference / "results" / f"{p}.h5", work / "results" / f"{p}.h5")


def test_a_sweep_over_max_array_size_runs_as_several_arrays(cluster, inputs, reference, tmp_path):
    """4 points under a MaxArraySize of 2: two arrays, the second's tasks
    running points 2 and 3; every point ends as the uninterrupted run's."""
    work = tmp_path / "split"
    write_config(work, inputs)
    shutil.copy(reference / "store.h5", work / "store.h5")
    r = sweep(work, cluster, "--sweep.mode=slurm", "--sweep.submit", "--sweep.max_array_size=2",
              "--slurm.time=00:10:00", "--slurm.cpus_per_task=1", "--slurm.ntasks=1")
    assert r.returncode == 0, r.stderr
    first, second = re.findall(r"submitted sweep live as job (\d+)", r.stdout)
    assert "points 2 + index" in r.stdout, r.stdout
    tasks = [f"{first}_0", f"{first}_1", f"{second}_0", f"{second}_1"]
    wait_for("both arrays", lambda: all(state(cluster, t)[0] in DONE for t in tasks), 600, cluster, work)
    assert [state(cluster, t)[0] for t in tasks] == ["COMPLETED"] * 4
    r = sweep(work, cluster, "--status")
    assert "4 points: 4 done, 0 running, 0 pending, 0 failed, 0 missing" in r.stdout, r.stdout
    assert status_rows(r.stdout)["live_n20_synthetic"][3] == f"{second}_1", r.stdout
    for p in POINTS:
        same_results(reference / "results" / f"{p}.h5", work / "results" / f"{p}.h5")


def test_failing_stage_cancels_the_jobs_after_it(cluster, inputs, tmp_path):
    env = cluster
    work = tmp_path / "failing"
    write_config(work, inputs)
    r = run(["bash", SUBMIT, work / "live.ini", "--model.path=/nonexistent", "--slurm.time=00:05:00"],
            cwd=work, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    embed, generate, array = re.search(r"submitted: embed (\d+), generate (\d+), sweep (\d+)", r.stdout).groups()
    wait_for("embed to fail", lambda: state(env, embed)[0] in DONE, 240, env, work)

    def cancelled():
        q = jobs(env)
        return q.get(generate, ("", ""))[0] == "CANCELLED" and all(
            v[0] == "CANCELLED" for k, v in q.items() if k.split("_")[0] == array) and q
    q = wait_for("the dependent jobs to be cancelled", cancelled, 60, env, work)
    assert q[embed][0] == "FAILED", q
    out = (work / f"dinv-dinv-embed-{embed}.out").read_text()
    assert "/nonexistent" in out, out
    assert re.search(r"dinv embed: FAILED with exit status 1 .*\n.*jobs waiting for this one .* cancelled: "
                     rf".*{generate}", out), out


# Pre-emption of each stage: the job is requeued (`scontrol requeue`: SIGTERM,
# Slurm requeues it) once it is under way, then, in its second run, gets the
# time-limit signal (SIGUSR2 to the batch script, as --signal=B:USR2@N sends it:
# the script requeues the job itself). Both times it comes back, resumes, and
# ends with the same bytes as an uninterrupted single-rank mpirun run.
PROGRESS = re.compile(r": \d+/\d+ (steps|images) \(")
PRETRAIN = """\
[run]
threads = 1
progress = lines
progress_interval = 0.2
[data]
format = captioned
root = corpus
[pretrain]
output = gen
steps = 12
vae_steps = 8
batch_size = 8
warmup_steps = 2
checkpoint_every = 2
"""


def under_way(env, job, out, restart):
    """The job runs and its output shows progress after the start of run `restart`."""
    if state(env, job)[0] != "RUNNING" or not out.exists():
        return False
    text = out.read_text()
    at = text.rfind(f"restart {restart} ")
    return at >= 0 and PROGRESS.search(text, at) is not None


def controller_log(env, job):
    """What slurmctld said about a job (for failure messages)."""
    show = run(["scontrol", "show", "job", job], env=env).stdout
    log = Path(env.get("SLURM_LOCAL_DIR", "/nonexistent")) / "log" / "slurmctld.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    ids = {job, show.split("JobId=")[1].split()[0]} if "JobId=" in show else {job}
    mine = [l for l in lines if any(f"JobId={i} " in l or f"JobId={i}(" in l or f"{i} " in l for i in ids)]
    return f"\n--- scontrol show job {job}\n{show}\n--- slurmctld.log\n" + "\n".join(mine[-40:])


def release_when_requeued(env, job, work):
    wait_for(f"job {job} to be requeued", lambda: state(env, job)[0] == "PENDING", 60, env, work)
    # A requeued job normally waits about 2 minutes. Started again within the
    # same second as it was killed, its credential counts as revoked and slurmd
    # refuses it ("Job credential revoked": the job FAILS), so wait 2 s.
    time.sleep(2)
    r = run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env)
    assert r.returncode == 0, r.stderr


def preempt_twice(env, job, out, work):
    wait_for(f"job {job} under way", lambda: under_way(env, job, out, 0), 240, env, work)
    r = run(["scontrol", "requeue", job], env=env)
    assert r.returncode == 0, r.stderr
    release_when_requeued(env, job, work)
    wait_for(f"job {job} under way again", lambda: under_way(env, job, out, 1), 240, env, work)
    r = run(["scancel", "--signal=USR2", "--batch", job], env=env)
    assert r.returncode == 0, r.stderr
    release_when_requeued(env, job, work)
    wait_for(f"job {job} to end", lambda: state(env, job)[0] in DONE, 300, env, work)
    assert state(env, job)[0] == "COMPLETED", out.read_text()[-3000:] + controller_log(env, job)
    text = out.read_text()
    assert "restart 2 " in text and "SIGUSR2 received" in text and "SIGTERM received" in text, text[-3000:]


def sbatch_stage(env, work, stage, *args):
    r = run(["sbatch", "--parsable", "--ntasks=1", "--cpus-per-task=1", f"--job-name=dinv-{stage}",
             SOURCE_DIR / "slurm" / "stage.sbatch", stage, work / "live.ini", *args], cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip().split(";")[0]
    return job, work / f"dinv-dinv-{stage}-{job}.out"


def twin_dirs(tmp_path, inputs):
    ref, pre = tmp_path / "uninterrupted", tmp_path / "preempted"
    for d in (ref, pre):
        write_config(d, inputs)
    return ref, pre


def mpirun_one(work, *args):
    r = run(mpirun_cmd(1, DINV, *args, "--config", work / "live.ini"), cwd=work, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr


def test_preemption_of_embed(cluster, inputs, tmp_path):
    ref, pre = twin_dirs(tmp_path, inputs)
    # Long enough that both preemptions land with work left on a fast machine
    # (at 24 steps, 60 steps/s here: the first run had finished 3 of 4 units
    # before its requeue took effect, the second run finished before the USR2).
    more = ["--embed.steps=240"]
    mpirun_one(ref, "embed", *more)
    job, out = sbatch_stage(cluster, pre, "embed", *more)
    preempt_twice(cluster, job, out, pre)
    assert (pre / "store.h5").read_bytes() == (ref / "store.h5").read_bytes()


def test_preemption_of_generate(cluster, inputs, reference, tmp_path):
    ref, pre = twin_dirs(tmp_path, inputs)
    more = ["--sampler.steps=16", "--generate.chunk_size=4", "--generate.batch_size=2"]
    for d in (ref, pre):
        shutil.copy(reference / "embedded.h5", d / "store.h5")
    mpirun_one(ref, "generate", *more)
    job, out = sbatch_stage(cluster, pre, "generate", *more)
    preempt_twice(cluster, job, out, pre)
    assert (pre / "store.h5").read_bytes() == (ref / "store.h5").read_bytes()


def test_preemption_of_a_sweep_task(cluster, inputs, reference, tmp_path):
    """One point of a sweep array (sweep.sbatch.in), checkpointing only when signalled."""
    ref, pre = twin_dirs(tmp_path, inputs)
    # 80 steps: at 16 (1.6 s here) the task ended before it could be preempted.
    more = ["--sweep.num_data=20", "--sweep.source=synthetic", "--train.steps=80", "--train.checkpoint_every=0"]
    for d in (ref, pre):
        shutil.copy(reference / "store.h5", d / "store.h5")
    mpirun_one(ref, "sweep", *more)
    r = sweep(pre, cluster, *more, "--sweep.mode=slurm", "--sweep.submit", "--slurm.time=00:10:00",
              "--slurm.cpus_per_task=1", "--slurm.ntasks=1")
    assert r.returncode == 0, r.stderr
    array = re.search(r"submitted sweep live as job (\d+)", r.stdout)[1]
    point = "live_n20_synthetic"
    preempt_twice(cluster, f"{array}_0", pre / f"live_{array}_0.out", pre)
    same_results(ref / "results" / f"{point}.h5", pre / "results" / f"{point}.h5")


def test_preemption_of_pretrain(cluster, tmp_path):
    ref, pre = tmp_path / "uninterrupted", tmp_path / "preempted"
    corpus = tmp_path / "corpus"
    r = run([DINV, "data", "shapes", "--captioned", "--out", corpus, "--count", "48", "--seed", "1"], env=ENV)
    assert r.returncode == 0, r.stderr
    for d in (ref, pre):
        d.mkdir()
        (d / "corpus").symlink_to(corpus)
        (d / "live.ini").write_text(PRETRAIN)
    mpirun_one(ref, "pretrain")
    job, out = sbatch_stage(cluster, pre, "pretrain")
    preempt_twice(cluster, job, out, pre)
    for c in ("unet", "vae"):
        f = Path(c) / "diffusion_pytorch_model.safetensors"
        assert (pre / "gen" / f).read_bytes() == (ref / "gen" / f).read_bytes(), c


def test_preemption_of_retrieve(cluster, tmp_path):
    """The retrieval baseline: CLIP features of queries and pool, then the search and the tag."""
    ref, pre = tmp_path / "uninterrupted", tmp_path / "preempted"
    # A CLIP tower large enough (160 px, 400 patches) that the pool's features
    # take seconds: with the tiny one the whole run ends in one.
    inputs = make_retrieve_inputs(tmp_path / "inputs", DINV, ENV, pool=800, hidden_size=128, intermediate_size=256,
                                  num_hidden_layers=4, image_size=160)
    more = ["--retrieve.shard_size=4", "--retrieve.batch_size=2"]
    config = (inputs / "retrieve.ini").read_text().replace("[run]\n", "[run]\nprogress = lines\nprogress_interval = 0.2\n")
    for d in (ref, pre):
        d.mkdir()
        (d / "live.ini").write_text(config)
    mpirun_one(ref, "retrieve", *more)
    job, out = sbatch_stage(cluster, pre, "retrieve", *more)
    preempt_twice(cluster, job, out, pre)
    assert (pre / "store.h5").read_bytes() == (ref / "store.h5").read_bytes()
