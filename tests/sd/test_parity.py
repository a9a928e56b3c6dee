"""dinv's UNet2DConditionModel and AutoencoderKL against diffusers on the same
weights and inputs (fp32, CPU): a tiny SD-1-like config, a tiny config with the
SD 2.x options, and the real SD 1.5 and SD 2.1 architectures at small spatial
sizes. Fixtures are made by diffusers (conftest.make_fixture); our outputs come
from the real CLI, `dinv model run`."""
import pytest
from safetensors.torch import load_file

from conftest import make_fixture, rel_err, run_dinv

TOL = 1e-4
MODELS = ["tiny", "tiny2", "sd15", "sd21"]


def case_names(fixture):
    return sorted(p.name[: -len(".in.safetensors")] for p in (fixture / "cases").glob("*.in.safetensors"))


@pytest.mark.parametrize("model", MODELS)
def test_parity_with_diffusers(model, dinv_bin, tmp_path):
    fixture = make_fixture(model)
    names = case_names(fixture)
    assert len(names) >= 6
    for case in names:
        component = "unet" if case.startswith("unet") else "vae-encode" if "encode" in case else "vae-decode"
        out = tmp_path / f"{case}.out.safetensors"
        run_dinv("model", "run", fixture, "--component", component, "--inputs",
                 fixture / "cases" / f"{case}.in.safetensors", "--output", out)
        ours, ref = load_file(out), load_file(fixture / "cases" / f"{case}.ref.safetensors")
        assert ours.keys() == ref.keys(), case
        for k in ref:
            assert ours[k].shape == ref[k].shape, (case, k)
            err = rel_err(ours[k], ref[k])
            assert err <= TOL, f"{model} {case} {k}: relative error {err:.3g} > {TOL}"
