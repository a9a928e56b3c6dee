"""Helpers shared by the benchmark scripts of bench/: the model folder, the
machine description, thread pinning, and timing a dinv process from its own
progress lines (so that model loading and start-up are excluded)."""
import datetime
import os
import platform
import statistics
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path


# The malloc policy of dinv::core::configure_malloc (no mmap for large blocks, no
# trimming), as glibc tunables for a Python process.
TUNED_MALLOC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=67108864"


def add_malloc_option(parser):
    parser.add_argument("--reference-malloc", choices=["default", "dinv"], default="default",
                        help="malloc of the Python reference: glibc's defaults (as users run it) or dinv's settings")


def apply_malloc_option(args):
    """Restarts this script with dinv's malloc settings when --reference-malloc=dinv asks for them."""
    if args.reference_malloc == "dinv" and os.environ.get("GLIBC_TUNABLES") != TUNED_MALLOC:
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, GLIBC_TUNABLES=TUNED_MALLOC))


def ensure_model(dinv, preset, folder):
    """A random-weights model folder made by `dinv model init`, reused when it is already there."""
    folder = Path(folder)
    if not (folder / "model_index.json").exists() or not (folder / "unet" / "diffusion_pytorch_model.safetensors").exists():
        subprocess.run([str(dinv), "model", "init", "--preset", preset, str(folder)], check=True, capture_output=True)
    return folder


def thread_env(threads):
    """Environment that pins a child process (LibTorch or PyTorch) to `threads` intra-op threads."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def load_average():
    la = os.getloadavg()
    return f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}"


def machine():
    """One line: date (UTC), CPU, cores, OS, torch / diffusers versions, current load."""
    import diffusers
    import torch
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{now}; {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"torch {torch.__version__}, diffusers {diffusers.__version__}; load average {load_average()}")


def process_cpu_seconds(pid):
    """User + system CPU time of a running process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_timed_lines(cmd, env=None, cwd=None):
    """Runs cmd, reading its stdout line by line as it is written; returns [(wall s since start, CPU s of the
    process, line)]. dinv flushes every log line, so the arrival of a progress line is when that step finished;
    CPU time (user + system) is less sensitive than wall time to other jobs on a shared machine."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)
    lines = []
    for line in proc.stdout:
        try:
            cpu = process_cpu_seconds(proc.pid)
        except OSError:
            cpu = float("nan")
        lines.append((time.perf_counter() - start, cpu, line.rstrip("\n")))
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err[-4000:]}\n" +
                           "\n".join(l for _, _, l in lines[-20:]))
    return lines


def run_cpu_sampled(cmd, env=None, interval=0.2):
    """Runs cmd to the end, sampling its CPU time every `interval` s. Returns (stdout, CPU s spent in the last
    `tail_wall` seconds as a function): for a tool that reports only its own wall time at the end, the CPU time of
    that last stretch is total CPU minus the CPU sampled when it began."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    samples, stop = [(0.0, 0.0)], threading.Event()

    def poll():
        while not stop.wait(interval):
            try:
                samples.append((time.perf_counter() - start, process_cpu_seconds(proc.pid)))
            except (OSError, IndexError, ValueError):
                return

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, err = proc.communicate()
    end = time.perf_counter() - start
    stop.set()
    poller.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err[-4000:]}\n{out[-2000:]}")
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def cpu_of_last(tail_wall):
        began = end - tail_wall
        at_start = max((c for t, c in samples if t <= began), default=0.0)
        return total - at_start

    return out, cpu_of_last


def progress_times(lines, label):
    """(wall s, CPU s, done count) at each progress line of `label` (e.g. 'embed (rank 0)') that advanced."""
    out = []
    for t, cpu, line in lines:
        i = line.find(label + ": ")
        if i >= 0:
            done = int(line[i + len(label) + 2:].split("/", 1)[0])
            if not out or done > out[-1][2]:
                out.append((t, cpu, done))
    return out


def rates(points):
    """Units per wall second and per CPU second between the first and the last (wall, CPU, count) point."""
    (t0, c0, n0), (t1, c1, n1) = points[0], points[-1]
    return (n1 - n0) / (t1 - t0), (n1 - n0) / (c1 - c0)


def median(values):
    return statistics.median(values)
