"""The whole method through the real CLI under mpirun -np 2 on the tiny
model: embed, generate (the method and the prompt baseline), then train on
the generated tag; every output is readable by h5py with the documented
layout."""
import h5py
import numpy as np

from stage_fixture import dinv_stage, make_inputs

TRAIN = ["--train.model=resnet18", "--train.steps=4", "--train.warmup_steps=1", "--train.num_evals=1",
         "--train.checkpoint_every=0", "--data.eval_bs=50", "--embed.steps=8"]


def test_embed_generate_train(tmp_path):
    config = make_inputs(tmp_path / "inputs")
    work = tmp_path / "run"
    r = dinv_stage(2, "embed", config, work, "--embed.steps=8")
    assert r.returncode == 0, r.stderr
    r = dinv_stage(2, "generate", config, work, "--embed.steps=8", "--generate.tag=method")
    assert r.returncode == 0, r.stderr
    r = dinv_stage(2, "generate", config, work, "--embed.steps=8", "--generate.mode=prompt",
                   "--generate.tag=prompt", "--generate.num_samples=1", "--generate.prompt_per=class")
    assert r.returncode == 0, r.stderr
    with h5py.File(work / "store.h5") as f:
        assert set(f["/samples"]) == {"method", "prompt"}
        method, prompt = f["/samples/method"], f["/samples/prompt"]
        assert method["images"].shape == (80, 16, 16, 3)
        assert prompt["images"].shape == (10, 16, 16, 3)
        assert (prompt["label"][:] == np.arange(10)).all()
        assert (prompt["source"][:] == -1).all() and (prompt["partner"][:] == -1).all()
        assert prompt.attrs["mode"] == "prompt"
    # stage 3 on the generated images only
    r = dinv_stage(2, "train", config, work, *TRAIN, "--data.real_bs=0", "--data.syn_bs=16", "--syn.format=store",
                   f"--syn.root={work}/store.h5", "--syn.tags=method", "--train.run_name=synthetic")
    assert r.returncode == 0, r.stderr
    with h5py.File(work / "results" / "synthetic.h5") as f:
        assert int(f.attrs["complete"]) == 1
        assert "[syn]" in f.attrs["config"]
        assert 0.0 <= float(f.attrs["final_accuracy"]) <= 1.0
    # a subset of the real images: exactly the generated samples of its images
    # (by /samples/method/source), the others reported as having none
    r = dinv_stage(2, "train", config, work, *TRAIN, "--data.real_bs=0", "--data.syn_bs=16", "--syn.format=store",
                   f"--syn.root={work}/store.h5", "--syn.tags=method", "--data.num_data=90", "--data.group_size=10",
                   "--train.run_name=followed")
    assert r.returncode == 0, r.stderr
    # once for the job, not once per rank
    assert r.stderr.count("images of the real subset have no samples") == 1, r.stderr
    with h5py.File(work / "store.h5") as s, h5py.File(work / "results" / "followed.h5") as f:
        sources = s["/samples/method/source"][:]
        real = f["selection/real_index"][:]
        assert len(real) == 90 and int(f.attrs["selection.follow_real"]) == 1
        np.testing.assert_array_equal(f["selection/synthetic/method"][:], np.flatnonzero(np.isin(sources, real)))
        assert int(f.attrs["selection.synthetic_count"]) == np.isin(sources, real).sum() > 0
