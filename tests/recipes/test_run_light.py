"""`stemsep run` and `separate`'s shorthands with the built-in DSP model and the audio operations only (the light
stemsep-legacy env: numpy + soundfile, no download): the cache's hits, --no-cache, `cache prune`, an op that
refuses its params, and --then."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.recipes.conftest import recipe, sep, write_recipes
from tests.support.cli import home_sharing_session_envs, json_events, run_cli

pytestmark = pytest.mark.envs

DSP = "builtin-center-split"


@pytest.fixture
def stemsep(tmp_path: Path) -> Any:
    env = home_sharing_session_envs(tmp_path / "home")

    def call(*args: Any) -> Any:
        return run_cli(*args, env=env, unset=("STEMSEP_REGISTRY",), timeout=600)
    return call


def song(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(str(path), (rng.standard_normal((22050, 2)) * 0.1).astype("float32"), 44100, subtype="FLOAT")
    return path


CHAIN = recipe(sep("split", DSP),
               {"id": "hp", "op": "high_pass", "inputs": ["split.vocals"], "params": {"cutoff_hz": 120}},
               {"id": "ens", "op": "ensemble", "inputs": ["split.vocals", "hp.vocals"],
                "params": {"algorithm": "avg_wave", "weights": [2, 1]}},
               {"id": "rest", "op": "invert", "inputs": ["mix", "ens.vocals"]},
               outputs={"vocals": "ens.vocals", "rest": "rest.rest"}, recipe_id="light")


def test_second_run_is_all_cache_hits_and_no_cache_runs_everything(stemsep: Any, tmp_path: Path) -> None:
    inputs = [song(tmp_path / "a.wav", 1), song(tmp_path / "b.wav", 2)]
    path = write_recipes(tmp_path / "r.json", CHAIN)
    out = tmp_path / "out"
    first = stemsep("run", path, *inputs, "-o", out, "--json")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    events = json_events(first.stdout)
    steps = [(e["step"], e["model"], e["index"], e["total"]) for e in events if e["type"] == "step"]
    assert steps == [("split", DSP, 1, 4), ("hp", None, 2, 4), ("ens", None, 3, 4), ("rest", None, 4, 4)]
    assert [e["type"] == "job" and e["step"] for e in events if e["type"] == "job"] == \
        ["split", "split", "hp", "hp", "ens", "ens", "rest", "rest"]  # model-major: a step over every input
    outputs = sorted(p.name for p in out.iterdir())
    assert outputs == ["a_(rest)_light.wav", "a_(vocals)_light.wav", "b_(rest)_light.wav", "b_(vocals)_light.wav"]
    mix, _ = sf.read(str(inputs[0]), dtype="float32")
    vocals, _ = sf.read(str(out / "a_(vocals)_light.wav"), dtype="float32")
    rest, _ = sf.read(str(out / "a_(rest)_light.wav"), dtype="float32")
    assert np.abs(vocals + rest - mix).max() < 1e-6  # invert: mix minus the ensemble
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    second = json_events(stemsep("run", path, *inputs, "-o", out, "--json").stdout)
    assert all(e["cached"] for e in second if e["type"] == "step_input")
    assert not [e for e in second if e["type"] in ("job", "worker", "env_ready")]  # nothing started
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    third = json_events(stemsep("run", path, *inputs, "-o", out, "--json", "--no-cache").stdout)
    assert not any(e["cached"] for e in third if e["type"] == "step_input")
    assert len([e for e in third if e["type"] == "job"]) == 8

    pruned = stemsep("cache", "prune", "--max-size", "0", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["removed"] == 8 and json.loads(pruned.stdout)["size"] == 0
    after = json_events(stemsep("run", path, *inputs, "-o", out, "--json").stdout)
    assert not any(e["cached"] for e in after if e["type"] == "step_input")


def test_an_op_that_refuses_its_params_fails_the_input_with_its_code(stemsep: Any, tmp_path: Path) -> None:
    bad = recipe(sep("split", DSP), {"id": "bands", "op": "band_split", "inputs": ["split.vocals", "split.instrumental"],
                                     "params": {"crossover_hz": 30000}},
                 outputs={"vocals": "bands.vocals"}, recipe_id="bad_bands")
    proc = stemsep("run", write_recipes(tmp_path / "r.json", bad), song(tmp_path / "a.wav", 1), "-o",
                   tmp_path / "out", "--json")
    assert proc.returncode == 11, proc.stdout[-3000:] + proc.stderr[-3000:]
    exit_event = json_events(proc.stdout)[-1]
    assert exit_event["code"] == "E_OP_INVALID" and "Nyquist" in exit_event["message"]
    assert not (tmp_path / "out" / "a_(vocals)_bad_bands.wav").exists()


def test_then_shorthand_runs_as_a_recipe(stemsep: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = stemsep("separate", song(tmp_path / "a.wav", 3), "-m", DSP, "--then", f"{DSP}:vocals", "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rid = f"{DSP}_then_{DSP}"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"a_({o})_{rid}.wav" for o in ("instrumental", "vocals-vocals", "vocals-instrumental"))
    usage = stemsep("separate", tmp_path / "a.wav", "-m", DSP, "--ensemble", "max_fft")
    assert usage.returncode == 2 and "--ensemble needs two or more -m models" in usage.stderr
