#!/usr/bin/env python3
"""UNet forward of the SD 1.5 architecture (random weights, fp32, CPU): dinv
against diffusers in the same run, on the same weights, input shapes and
thread count. Rounds alternate between the sides so that background load hits
both alike; the tables report medians of wall time and of process CPU time
(user + system: less sensitive to other jobs on a shared machine). diffusers
runs as users run it (glibc malloc defaults) and, for a like-for-like
comparison, with the malloc settings that dinv applies to itself
(core::configure_malloc). Also: peak resident memory while loading.

    python bench/unet_bench.py [--build build] [--model DIR] [--sizes 16 32] [--batch 2]
                               [--runs 4] [--rounds 2] [--threads 1 2] [--channels-last]

Without --model, a folder is made once with `dinv model init --preset sd15`
under BUILD/bench/sd15. Markdown goes to stdout, progress to stderr."""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from benchlib import TUNED_MALLOC as TUNED  # dinv::core::configure_malloc's policy, for the diffusers process

DIFFUSERS = r"""
import resource, sys, time, torch
from diffusers import UNet2DConditionModel
S, B, runs, threads = map(int, sys.argv[2:6])
torch.set_num_threads(threads)
u = UNet2DConditionModel.from_pretrained(sys.argv[1]).eval()
x = torch.randn(B, 4, S, S); c = torch.randn(B, 77, u.config.cross_attention_dim); t = torch.full((B,), 500)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
with torch.inference_mode():
    u(x, t, c)
    for _ in range(runs):
        t0, c0 = time.perf_counter(), cpu()
        u(x, t, c)
        print("run %.4f %.4f" % (time.perf_counter() - t0, cpu() - c0), flush=True)
"""

LOAD_RSS = r"""
import resource, sys, torch
torch.set_num_threads(int(sys.argv[2]))
from diffusers import UNet2DConditionModel
b = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = UNet2DConditionModel.from_pretrained(sys.argv[1])
n = sum(p.numel() * p.element_size() for p in m.parameters())
a = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
# diffusers may leave parameters on a memory map of the file: touch them all.
s = sum(float(p.float().sum()) for p in m.parameters())
print(b * 1024, a * 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, n)
"""


def parse_runs(out):
    return [tuple(map(float, l.split()[1:3])) for l in out.splitlines() if l.startswith("run ")]


def run_ours(tool, model, S, B, runs, threads, extra=()):
    r = subprocess.run([str(tool), "unet", str(model), "--latent", str(S), "--batch", str(B), "--runs", str(runs),
                        "--threads", str(threads), *extra], capture_output=True, text=True, check=True,
                       env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    return parse_runs(r.stdout)


def run_diffusers(model, S, B, runs, threads, tuned):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if tuned:
        env["GLIBC_TUNABLES"] = TUNED
    r = subprocess.run([sys.executable, "-c", DIFFUSERS, str(model / "unet"), str(S), str(B), str(runs), str(threads)],
                       capture_output=True, text=True, check=True, env=env)
    return parse_runs(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=Path(__file__).resolve().parents[1] / "build", type=Path)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--channels-last", action="store_true", help="also time dinv with channels-last activations")
    a = ap.parse_args()
    import diffusers
    import torch

    tool = a.build / "bench" / "dinv_bench_sd"
    model = a.model or a.build / "bench" / "sd15"
    if not (model / "unet" / "diffusion_pytorch_model.safetensors").exists():
        subprocess.run([str(a.build / "dinv"), "model", "init", "--preset", "sd15", str(model)], check=True)

    sides = [("dinv", lambda S, T: run_ours(tool, model, S, a.batch, a.runs, T))]
    if a.channels_last:
        sides.append(("dinv channels-last", lambda S, T: run_ours(tool, model, S, a.batch, a.runs, T, ["--channels-last"])))
    sides += [("diffusers", lambda S, T: run_diffusers(model, S, a.batch, a.runs, T, False)),
              ("diffusers, dinv's malloc settings", lambda S, T: run_diffusers(model, S, a.batch, a.runs, T, True))]
    times = {}
    for rnd in range(a.rounds):
        for T in a.threads:
            for S in a.sizes:
                for name, fn in sides:
                    times.setdefault((name, T, S), []).extend(fn(S, T))
                print(f"round {rnd} threads {T} latent {S}: " + ", ".join(
                    f"{k[0]} {statistics.median(w for w, _ in v):.2f}s" for k, v in times.items()
                    if k[1:] == (T, S)), file=sys.stderr, flush=True)

    r = subprocess.run([str(tool), "load", str(model), "--threads", "2"], capture_output=True, text=True, check=True)
    load = dict(l.split() for l in r.stdout.splitlines())
    r = subprocess.run([sys.executable, "-c", LOAD_RSS, str(model / "unet"), "2"], capture_output=True, text=True,
                       check=True)
    d_before, d_loaded, d_touched, d_bytes = map(int, r.stdout.split()[-4:])

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    la = os.getloadavg()
    out = [f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}",
           f"- machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
           f"load average at the end {la[0]:.1f} / {la[1]:.1f} / {la[2]:.1f} (shared machine)",
           f"- torch {torch.__version__}, diffusers {diffusers.__version__}",
           f"- SD 1.5 UNet, random weights, fp32, CPU, batch {a.batch}, 77 tokens, timestep 500; "
           f"{a.rounds} alternating rounds x {a.runs} runs after a warm-up; medians", ""]
    names = [n for n, _ in sides]
    for T in a.threads:
        out += [f"{T} intra-op thread{'s' if T > 1 else ''} on every side:", "",
                "| latent | " + " | ".join(f"{n}: wall / CPU (s)" for n in names) + " | diffusers / dinv (wall, CPU) |",
                "|---" * (len(names) + 2) + "|"]
        for S in a.sizes:
            med = {n: (statistics.median(w for w, _ in times[(n, T, S)]), statistics.median(c for _, c in times[(n, T, S)]))
                   for n in names}
            o, d = med["dinv"], med["diffusers"]
            out.append(f"| {S}x{S} | " + " | ".join(f"{med[n][0]:.2f} / {med[n][1]:.2f}" for n in names) +
                       f" | {d[0] / o[0]:.2f}, {d[1] / o[1]:.2f} |")
        out.append("")
    wb = int(load["weight_bytes"])
    out += ["| loading the SD 1.5 UNet (fp32) | weights | RSS before | peak RSS after loading | peak / weights |",
            "|---|---|---|---|---|",
            f"| dinv `load_unet` (read into the parameters) | {wb / 1e9:.2f} GB | {int(load['peak_rss_before_bytes']) / 1e9:.2f} GB | "
            f"{int(load['peak_rss_bytes']) / 1e9:.2f} GB | {int(load['peak_rss_bytes']) / wb:.2f} |",
            f"| diffusers `from_pretrained` | {d_bytes / 1e9:.2f} GB | {d_before / 1e9:.2f} GB | {d_loaded / 1e9:.2f} GB "
            f"(after touching every weight: {d_touched / 1e9:.2f} GB) | {d_loaded / d_bytes:.2f} ({d_touched / d_bytes:.2f}) |"]
    print("\n".join(out))
    print(json.dumps({f"{k[0]}|{k[1]}|{k[2]}": v for k, v in times.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
