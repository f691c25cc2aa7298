"""The recipe preflight with real input files, the real registry loader and the session's uv-built env: one
report with a section per step (each `separate` step carries the one-model report of `stemsep preflight`),
Phase Fix parameters resolved from the reference, and every graph fault blocking before anything is
downloaded, built or started."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.preflight.conftest import dsp, write_audio
from tests.preflight.recipe_support import RECIPE_MODELS, base_steps, recipe_preflight, replaced, sep, with_step


@pytest.fixture
def t(tmp_path: Path, config: Any, light_env: Any) -> Any:
    return SimpleNamespace(tmp=tmp_path, config=config, song=write_audio(tmp_path / "song.wav"))


def test_a_valid_recipe_proceeds_with_one_section_per_step(t: Any, schema_validator: Any) -> None:
    result = recipe_preflight(t, base_steps() + [sep("a2", "pf-dsp", "ens.vocals")],
                              {"vocals": "ens.vocals", "instrumental": "fix.instrumental", "again": "a2.vocals"})
    report = result.report
    assert result.can_proceed and not report["errors"], report["errors"]
    assert report["order"] == ["a", "b", "ens", "fix", "a2"]
    sections = {s["id"]: s for s in report["steps"]}
    assert sections["ens"]["makes"] == ["vocals"] and sections["fix"]["makes"] == ["instrumental"]
    # a model fed voice only splits voice: its `instrumental` of the vocals is voice too (backing vocals...)
    assert sections["a2"]["content"] == {"vocals": "vocals", "instrumental": "vocals"}
    for step in ("a", "b", "a2"):  # the one-model report of `stemsep preflight`, by its own schema
        one = sections[step]["preflight"]
        assert not list(schema_validator.iter_errors(one)), step
        assert one["model"] == sections[step]["model"] and one["resolved"]["runtime"]["id"] == "stemsep-legacy"
        assert one["resolved"]["requirements_status"]["env"]["state"] == "ready"
    assert result.step_preflights["a"] is result.step_preflights["a2"]  # one preflight per model, not per step
    fix = sections["fix"]["phase_fix"]
    assert fix["reference"] == "pf-ref"
    assert fix["op_params"] == {"curve": "colab", "low_hz": 400, "high_hz": 4000, "weight": 1.5}
    assert {k: v["provenance"] for k, v in fix["params"].items()} == {"lowHz": "registry", "highHz": "registry",
                                                                      "highFreqWeight": "registry"}


def test_phase_fix_params_the_step_gives_win_and_are_checked(t: Any) -> None:
    given = replaced("fix", {"id": "fix", "op": "phase_fix", "inputs": ["a.instrumental", "b.instrumental"],
                             "params": {"weight": 2, "low_hz": 500}})
    report = recipe_preflight(t, given).report
    fix = next(s for s in report["steps"] if s["id"] == "fix")["phase_fix"]
    assert fix["op_params"] == {"curve": "colab", "low_hz": 500, "high_hz": 4000, "weight": 2}
    assert {w["code"] for w in report["warnings"]} >= {"W_PHASE_FIX_OVERRIDE"}
    uvr = replaced("fix", {"id": "fix", "op": "phase_fix", "inputs": ["a.instrumental", "b.instrumental"],
                           "params": {"curve": "uvr", "weight": 2}})
    result = recipe_preflight(t, uvr)
    assert not result.can_proceed
    assert [e["code"] for e in result.report["errors"]] == ["E_PHASE_FIX_PARAMS"]
    plain_uvr = replaced("fix", {"id": "fix", "op": "phase_fix", "inputs": ["a.instrumental", "b.instrumental"],
                                 "params": {"curve": "uvr"}})
    report = recipe_preflight(t, plain_uvr).report
    fix = next(s for s in report["steps"] if s["id"] == "fix")["phase_fix"]
    assert fix["op_params"] == {"curve": "uvr", "low_hz": 400, "high_hz": 4000}  # UVR has no weight


UNBUILT = sep("u", "pf-unbuilt", "a.vocals")  # its env needs a build: preflight must not build it
FAULTS = {
    "E_PHASE_FIX_REFERENCE": replaced("fix", {"id": "fix", "op": "phase_fix", "inputs": ["b.instrumental",
                                                                                          "a.instrumental"]}),
    "E_RECIPE_UNKNOWN_STEM": with_step(sep("x", "pf-dsp", "a.noreverb")),
    "E_RECIPE_ROLE_INPUT": with_step(sep("x", "pf-dereverb", "a.instrumental")),
    "E_RECIPE_CYCLE": with_step({"id": "x", "op": "invert", "inputs": ["mix", "x.rest"]}),
}


@pytest.mark.parametrize("code", sorted(FAULTS))
def test_each_fault_blocks_before_anything_starts(code: str, t: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.preflight.recipe_support as support

    monkeypatch.setattr(support, "RECIPE_MODELS", RECIPE_MODELS + [dsp("pf-unbuilt", requirements={
        "pip": {"packages": ["six"]}})])
    envs_before = sorted(p.name for p in t.config.env_store.iterdir()) if t.config.env_store.is_dir() else []
    steps = FAULTS[code] + [UNBUILT]
    outputs = {"vocals": "ens.vocals", "u": "u.vocals", **({"x": "x.rest"} if code == "E_RECIPE_CYCLE" else
                                                          {"x": "x.vocals"} if code == "E_RECIPE_UNKNOWN_STEM" else
                                                          {"x": "x.noreverb"} if "x" in {s["id"] for s in steps}
                                                          else {})}
    result = recipe_preflight(t, steps, outputs)
    assert not result.can_proceed
    assert code in {f.code for f in result.decision.blocking}
    blocked = {e["code"] for e in result.report["errors"] if e["blocking"]}
    assert blocked == {code}, result.report["errors"]  # nothing else is wrong with these recipes
    # nothing was downloaded, built or started: the unbuilt model's env is still to be built
    env = next(s for s in result.report["steps"] if s["id"] == "u")["preflight"]["resolved"]["requirements_status"]
    assert env["env"]["state"] == "needs_build"
    after = sorted(p.name for p in t.config.env_store.iterdir()) if t.config.env_store.is_dir() else []
    assert after == envs_before
    assert not t.config.model_store.exists() or not any(t.config.model_store.iterdir())


def test_report_mode_lets_a_policy_fault_through_never_a_fatal_one(t: Any) -> None:
    role = recipe_preflight(t, FAULTS["E_RECIPE_ROLE_INPUT"], {"x": "x.noreverb"}, enforcement="report")
    assert role.can_proceed
    assert {w["code"] for w in role.report["warnings"]} >= {"W_NOT_ENFORCED"}
    assert [e["blocking"] for e in role.report["errors"]] == [False]
    cycle = recipe_preflight(t, FAULTS["E_RECIPE_CYCLE"], {"x": "x.rest"}, enforcement="report")
    assert not cycle.can_proceed


def test_an_input_that_cannot_be_read_is_reported_once(t: Any) -> None:
    t.song = t.tmp / "missing.wav"
    report = recipe_preflight(t).report
    assert [e["code"] for e in report["errors"]] == ["E_INPUT_NOT_FOUND"]
    assert report["inputs"][0]["state"] == "blocked"
