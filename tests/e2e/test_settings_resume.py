"""Continuing a store made with other settings is refused, naming the setting:
every setting that `dinv embed --help` / `dinv generate --help` marks as
changing the output (the marks come from the stages' settings declarations,
so a new setting is walked without touching this file) is changed alone on a
store made with the base settings; the rerun must exit 1 naming the key, and
leave the store and its folder as they were."""
import configparser
import hashlib
import re

import h5py
import pytest

from conftest import DINV, run
from stage_fixture import ENV, dinv_stage, make_inputs

# Small and fast: the refusal comes before any work.
BASE = ["--embed.steps=2", "--embed.num_images=20", "--sampler.steps=4"]
TAGS = {"": "walk", "generate.mode = embedding": "walk", "generate.mode = prompt": "walk_prompt"}
KEY = re.compile(r"^  --(\S+) \((.*); (?:default (.*)|required)\)$")
MARK = re.compile(r"^      changes the output of (\w+)(?: when (\S+) = (\S+))?$")


def output_settings(stage):
    """{key: (allowed, condition)} of the keys `dinv STAGE --help` marks for STAGE."""
    r = run([DINV, stage, "--help"], env=ENV)
    assert r.returncode == 0, r.stderr
    marked, key, allowed = {}, None, None
    for line in r.stdout.splitlines():
        if m := KEY.match(line):
            key, allowed = m.group(1), m.group(2)
        elif (m := MARK.match(line)) and m.group(1) == stage:
            marked[key] = (allowed, (m.group(2), m.group(3)) if m.group(2) else None)
    return marked


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with embeddings and one tag per generate mode, all with BASE."""
    config = make_inputs(tmp_path_factory.mktemp("settings_inputs"))
    work = tmp_path_factory.mktemp("settings_store")
    for stage, extra in [("embed", []), ("generate", ["--generate.tag=walk"]),
                         ("generate", ["--generate.tag=walk_prompt", "--generate.mode=prompt"])]:
        r = dinv_stage(1, stage, config, work, *BASE, *extra)
        assert r.returncode == 0, r.stderr
    return config, work


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def stored(work, group):
    """The resolved configuration the store was created with, and the values of `group`'s settings text."""
    with h5py.File(work / "store.h5") as f:
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string(text(f.attrs["config"]))
        settings = text(f[group].attrs["settings"])
    values = {pair.split("=", 1)[1] for pair in settings.split(" ") if "=" in pair}
    return {f"{s}.{k}": v for s in ini.sections() for k, v in ini[s].items()}, values


def other_value(key, allowed, now, taken):
    if allowed.startswith("one of "):
        return next(c for c in allowed[len("one of "):].split(", ") if c != now and c not in taken)
    if allowed.startswith("an integer"):
        return str(int(now) // 2 if int(now) > 1 else 2)
    if allowed.startswith("a number"):
        return repr(float(now) / 2 if float(now) else 0.5)
    return now + " again"


def snapshot(work):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(work.iterdir()) if p.is_file()}


@pytest.mark.parametrize("stage", ["embed", "generate"])
def test_each_output_setting_changed_alone_is_refused_by_name(store, stage):
    config, work = store
    marked = output_settings(stage)
    assert len(marked) >= 12, marked
    before = snapshot(work)
    for key, (allowed, condition) in marked.items():
        extra, group = [], "/embeddings"
        if condition:
            extra.append(f"--{condition[0]}={condition[1]}")
        if stage == "generate":
            tag = TAGS[" = ".join(condition) if condition else ""]
            extra.append("--generate.tag=" + tag)
            group = "/samples/" + tag
        resolved, taken = stored(work, group)
        # Another value than the run's and than the stored one (sampler.name
        # "folder" is stored as the model's own sampler).
        value = other_value(key, allowed, resolved[key], taken)
        r = dinv_stage(1, stage, config, work, *BASE, *extra, f"--{key}={value}")
        assert r.returncode == 1, (key, value, r.returncode, r.stderr)
        assert f"was written with other settings: {key} is '" in r.stderr, (key, value, r.stderr)
        assert "in this run" in r.stderr, (key, r.stderr)
        assert snapshot(work) == before, f"the refused run with {key}={value} wrote into {work}"
