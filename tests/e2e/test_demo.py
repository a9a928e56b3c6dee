"""The main job (scripts/demo.sh) end to end, shortened by its own override
mechanism (every --section.key=value reaches every stage): the data and the
captioned corpus, stage 0 (pretrain), embed, both generations, the sweep,
evaluate, the report and analysis/effect.py. The outputs the README promises
exist, the sweep covers every source and tag, and a rerun reuses everything
(the generator is not trained again, no sweep point runs again)."""
import os
import pathlib
import re
import subprocess
import sys

import h5py
import pandas as pd

SOURCE = pathlib.Path(os.environ.get("DINV_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BUILD = pathlib.Path(os.environ.get("DINV_BUILD_DIR") or SOURCE / "build")
SHORT = ["--pretrain.steps=6", "--pretrain.vae_steps=4", "--pretrain.warmup_steps=1", "--embed.steps=2",
         "--sampler.steps=2", "--generate.num_samples=1", "--train.steps=4", "--train.warmup_steps=1",
         "--sweep.num_data=20,100", "--sweep.seed=0,1"]


def demo(out):
    env = dict(os.environ, DINV_SKIP_BOOTSTRAP="1", BUILD_DIR=str(BUILD), DINV_DEMO_DIR=str(out),
               DINV_PYTHON=os.environ.get("DINV_PYTHON", sys.executable))
    return subprocess.run(["bash", str(SOURCE / "scripts" / "demo.sh"), *SHORT], env=env, capture_output=True,
                          text=True, timeout=1200)


def test_the_main_job_runs_end_to_end_and_a_rerun_reuses_it(tmp_path):
    out = tmp_path / "demo"
    r = demo(out)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert (out / "generator" / "model_index.json").is_file()
    assert (out / "generator" / "dinv_pretrain.json").is_file()
    assert (out / "corpus" / "metadata.jsonl").is_file()
    with h5py.File(out / "store.h5") as f:
        assert set(f["/samples"]) == {"method", "prompt"}
        assert f["/samples/method/images"].shape[0] == 200 and f["/samples/prompt/images"].shape[0] == 200
    runs = sorted(p.stem for p in (out / "results").glob("sample_complexity_*.h5"))
    # 2 sizes x (real + 2 tags x {synthetic, mixed}) x 2 seeds
    assert len(runs) == 2 * 5 * 2, runs
    assert (out / "results" / "curves.png").stat().st_size > 1000
    assert (out / "report" / "report.html").stat().st_size > 10000
    effect = pd.read_csv(out / "results" / "effect.csv")
    assert sorted(effect["num_data"].unique()) == [20, 100]
    assert set(effect["comparison"]) == {"real + method vs real", "real + method vs real + prompt",
                                         "method vs prompt (generated only)"}
    assert "the method against real data and against the prompt baseline" in r.stdout
    # evaluate measured both tags with the judge, trained on its own draw of labelled images
    assert "classifier convnet of run 'judge'" in r.stdout + r.stderr
    with h5py.File(out / "judge" / "judge.h5") as f:
        assert f.attrs["selection.real_count"] == 6000
    with h5py.File(out / "store.h5") as f:
        assert {"method", "prompt"} <= set(f["/metrics"])
    # Every stage reports progress with an ETA, the sweep per point.
    assert re.search(r"sweep point 2/20: \S+ \(elapsed \d\d:\d\d, ETA \d\d:\d\d\)", r.stdout + r.stderr)
    # A rerun trains nothing again.
    r = demo(out)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    log = r.stdout + r.stderr
    assert "is already trained with these settings; nothing to do" in log
    assert "final accuracy" not in log, "a finished sweep point was trained again"
