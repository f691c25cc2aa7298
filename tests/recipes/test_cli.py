"""`stemsep recipes list|show|validate` through the real CLI: the packaged recipes validate; each graph fault
is refused before anything runs with its own code, every reason printed; structural faults name their JSON
path; the user's recipes in the config dir are read beside the packaged ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.recipes.conftest import recipe, sep, write_recipes


def test_packaged_recipes_all_validate(stemsep: Any) -> None:
    proc = stemsep("recipes", "validate", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    report = json.loads(proc.stdout)
    recipes = [r for f in report["files"] for r in f["recipes"]]
    assert report["ok"] and len(recipes) >= 10
    assert all(r["can_proceed"] and not r["errors"] for r in recipes)
    human = stemsep("recipes", "validate")
    assert human.returncode == 0 and f"{len(recipes)} recipe(s), 0 invalid" in human.stdout


def test_list_and_show(stemsep: Any) -> None:
    listing = json.loads(stemsep("recipes", "list", "--json").stdout)
    row = next(r for r in listing if r["id"] == "workflow_phase_fix_instrumental")
    assert row["models"] == ["unwa-inst-v1e", "becruily-vocal"] and row["ops"] == ["phase_fix"]
    shown = stemsep("recipes", "show", "workflow_phase_fix_instrumental", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["makes"]["phase_fix"] == ["instrumental"]
    assert data["recipe"]["outputs"] == {"instrumental": "phase_fix.instrumental"}
    human = stemsep("recipes", "show", "workflow_phase_fix_instrumental").stdout
    assert "phase_fix(unwa_inst_v1e.instrumental, becruily_vocal.instrumental)" in human


def test_unknown_recipe_suggests_the_nearest(stemsep: Any) -> None:
    proc = stemsep("recipes", "show", "workflow_phase_fix_instrumentl")
    assert proc.returncode == 2
    assert "E_UNKNOWN_RECIPE" in proc.stderr and "workflow_phase_fix_instrumental" in proc.stderr


# One recipe per fault the acceptance names: each blocked with its own code.
FAULTS = {
    "E_PHASE_FIX_REFERENCE": recipe(  # unwa-inst-v1e is no valid Phase Fix reference
        sep("inst", "unwa-inst-v1e"), sep("ref", "gabox-inst-fv7z"),
        {"id": "fix", "op": "phase_fix", "inputs": ["inst.instrumental", "ref.instrumental"]},
        outputs={"instrumental": "fix.instrumental"}),
    "E_RECIPE_UNKNOWN_STEM": recipe(  # StemSep's defect: anvuew-dereverb-room makes noreverb/reverb, not vocals
        sep("voc", "bs-roformer-viperx-1297"), sep("dereverb", "anvuew-dereverb-room", "voc.vocals"),
        outputs={"vocals": "dereverb.vocals"}),
    "E_RECIPE_ROLE_INPUT": recipe(  # a de-reverb model fed an instrumental
        sep("inst", "bs-roformer-viperx-1297"), sep("dereverb", "anvuew-dereverb-room", "inst.instrumental"),
        outputs={"dry": "dereverb.noreverb"}),
    "E_RECIPE_CYCLE": recipe(
        {"id": "a", "op": "high_pass", "inputs": ["b.vocals"], "params": {"cutoff_hz": 80}},
        {"id": "b", "op": "high_pass", "inputs": ["a.vocals"], "params": {"cutoff_hz": 80}},
        outputs={"vocals": "b.vocals"}),
}


@pytest.mark.parametrize("code", sorted(FAULTS))
def test_each_graph_fault_has_its_own_code(code: str, tmp_path: Path, stemsep: Any) -> None:
    path = write_recipes(tmp_path / "r.json", FAULTS[code])
    proc = stemsep("recipes", "validate", path, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)["files"][0]["recipes"][0]
    codes = {e["code"] for e in report["errors"]}
    assert codes == {code}, report["errors"]  # the fault, and no other
    assert all(e["blocking"] for e in report["errors"]) and not report["can_proceed"]
    human = stemsep("recipes", "validate", path)
    assert human.returncode == 1 and code in human.stdout and "what to do:" in human.stdout


def test_the_fault_messages_say_what_and_why(tmp_path: Path, stemsep: Any) -> None:
    path = write_recipes(tmp_path / "r.json", *[dict(r, id=c.lower()) for c, r in FAULTS.items()])
    report = json.loads(stemsep("recipes", "validate", path, "--json").stdout)
    errors = {e["code"]: e for r in report["files"][0]["recipes"] for e in r["errors"]}
    stem = errors["E_RECIPE_UNKNOWN_STEM"]
    assert "dereverb.vocals" in stem["message"] and "noreverb, reverb" in stem["why"]
    assert "dereverb.noreverb" in stem["hint"]
    role = errors["E_RECIPE_ROLE_INPUT"]
    assert role["step"] == "dereverb" and "inst.instrumental (instrumental)" in role["message"]
    assert "vocals only" in role["why"]
    ref = errors["E_PHASE_FIX_REFERENCE"]
    assert "gabox-inst-fv7z is not a valid Phase Fix reference" in ref["message"]
    assert "becruily-vocal" in ref["hint"]  # the valid references are listed
    assert "a -> b -> a" in errors["E_RECIPE_CYCLE"]["message"] or "b -> a -> b" in errors["E_RECIPE_CYCLE"]["message"]


def test_structural_faults_name_their_json_path(tmp_path: Path, stemsep: Any) -> None:
    bad = recipe(sep("a", "unwa-inst-v1e"),
                 {"id": "e", "op": "ensemble", "inputs": ["a.vocals"], "params": {"algorithm": "max", "wieghts": [1]}},
                 outputs={"vocals": "e.vocals"})
    proc = stemsep("recipes", "validate", write_recipes(tmp_path / "r.json", bad), "--json")
    assert proc.returncode == 1
    error = json.loads(proc.stdout)["files"][0]["error"]
    assert error["code"] == "E_RECIPE_INVALID"
    for path in ("$.recipes[0].steps[1].inputs", "$.recipes[0].steps[1].params.algorithm",
                 "$.recipes[0].steps[1].params.wieghts"):
        assert path in error["why"], error["why"]
    dup = recipe(sep("a", "unwa-inst-v1e"), sep("a", "becruily-vocal"), outputs={"v": "a.vocals"})
    proc = stemsep("recipes", "validate", write_recipes(tmp_path / "d.json", dup), "--json")
    assert "step id 'a' is used twice" in json.loads(proc.stdout)["files"][0]["error"]["why"]


def test_an_unreadable_file_exits_2(tmp_path: Path, stemsep: Any) -> None:
    proc = stemsep("recipes", "validate", tmp_path / "missing.json")
    assert proc.returncode == 2 and "E_RECIPE_UNREADABLE" in proc.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"recipes": [', encoding="utf-8")
    proc = stemsep("recipes", "validate", broken)
    assert proc.returncode == 2 and "broken.json:1:" in proc.stderr


def test_user_recipes_are_read_beside_the_packaged_ones(user_recipes: Path, stemsep: Any) -> None:
    mine = recipe(sep("voc", "bs-roformer-viperx-1297"),
                  {"id": "low_cut", "op": "high_pass", "inputs": ["voc.vocals"], "params": {"cutoff_hz": 120}},
                  outputs={"vocals": "low_cut.vocals"}, recipe_id="my_low_cut")
    write_recipes(user_recipes / "mine.json", mine)
    listing = json.loads(stemsep("recipes", "list", "--json").stdout)
    assert any(r["id"] == "my_low_cut" and r["file"].endswith("mine.json") for r in listing)
    assert any(r["id"] == "workflow_phase_fix_instrumental" for r in listing)
    assert stemsep("recipes", "validate").returncode == 0
    # A user recipe may not reuse a packaged id; a broken user file is left out of list, and validate fails on it
    write_recipes(user_recipes / "clash.json", dict(mine, id="workflow_phase_fix_instrumental"))
    proc = stemsep("recipes", "validate", "--json")
    assert proc.returncode == 1
    assert "E_DUPLICATE_RECIPE_ID" in {e["code"] for f in json.loads(proc.stdout)["files"] for r in f["recipes"]
                                       for e in r["errors"]}
    listed = stemsep("recipes", "list", "--json")
    assert listed.returncode == 0 and "clash.json is left out" in listed.stderr
