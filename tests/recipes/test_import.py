"""scripts/data/import_recipes.py: the committed recipes and report are exactly what the converter makes from
StemSep's file; every StemSep recipe is converted or refused with its reasons; StemSep's known defects are
refused for what they are."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SHARED_REFERENCE

SOURCE = SHARED_REFERENCE / "stemsep" / "recipes.json"
SCRIPT = REPO / "scripts" / "data" / "import_recipes.py"
pytestmark = pytest.mark.skipif(not SOURCE.is_file(), reason="StemSep's recipes.json is not available")


@pytest.fixture(scope="module")
def importer() -> Any:
    spec = importlib.util.spec_from_file_location("import_recipes", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_recipes"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report() -> str:
    return (REPO / "registry" / "recipes-import-report.md").read_text(encoding="utf-8")


def test_running_the_converter_again_reproduces_both_files(importer: Any, tmp_path: Path) -> None:
    assert importer.main([str(SOURCE), "--check"]) == 0, "run scripts/data/import_recipes.py"
    assert importer.main([str(SOURCE), "--out-dir", str(tmp_path)]) == 0
    assert importer.main([str(SOURCE), "--out-dir", str(tmp_path), "--check"]) == 0
    for name in ("recipes.json", "recipes-import-report.md"):
        assert (tmp_path / name).read_bytes() == (REPO / "registry" / name).read_bytes(), name
    (tmp_path / "recipes.json").write_text("{}", encoding="utf-8")
    assert importer.main([str(SOURCE), "--out-dir", str(tmp_path), "--check"]) == 1


def test_every_stemsep_recipe_is_converted_or_refused(report: str) -> None:
    ids = [r["id"] for r in json.loads(SOURCE.read_text(encoding="utf-8"))["recipes"]]
    converted_part, refused_part = report.split("\n## Refused\n")
    converted = re.findall(r"^### `([^`]+)`", converted_part, re.M)
    refused = re.findall(r"^### `([^`]+)`", refused_part, re.M)
    assert sorted(converted + refused) == sorted(ids) and len(ids) == 35
    packaged = [r["id"] for r in json.loads((REPO / "registry" / "recipes.json").read_text())["recipes"]]
    assert packaged == converted
    for section in refused_part.split("\n### ")[1:]:  # each refusal gives at least one reason
        assert "\n- " in section, section


def test_stemseps_defects_are_refused_with_their_reason(report: str) -> None:
    refused = report.split("\n## Refused\n")[1]
    sections = {m.group(1): m.group(2) for m in re.finditer(r"^### `([^`]+)`[^\n]*\n(.*?)(?=^### |\Z)", refused,
                                                             re.M | re.S)}
    # input_source naming an output no step makes
    assert "input_source 'dereverb.vocals' names stem 'vocals'" in sections["workflow_live_restoration"]
    assert "it makes noreverb, reverb" in sections["workflow_live_restoration"]
    # ... and a de-reverb model fed the whole mix: every reason, not only the first
    assert "E_RECIPE_ROLE_INPUT" in sections["pipeline_super_clean_vocal"]
    # stems the model does not declare
    assert "'hihat'" in sections["recipe_drums_punchy"]
    # `weight` meaning an ensemble weight where the algorithm takes none
    assert "weights [1.0, 0.8] with max_spec" in sections["bass_hybrid_scnet_demucs"]
    # models no runtime can run: preflight's own code
    assert "E_NO_RUNTIME" in sections["workflow_vocal_mag_focus"]
    assert "no operation here" in sections["recipe_demudder_metal"]


def test_phase_fix_written_two_ways_converts_to_one_form() -> None:
    recipes = {r["id"]: r for r in json.loads((REPO / "registry" / "recipes.json").read_text())["recipes"]}
    # StemSep's `action: phase_fix` step (weight = the high frequency weight) ...
    action = recipes["workflow_phase_fix_instrumental"]
    fix = next(s for s in action["steps"] if s["op"] == "phase_fix")
    assert fix["params"] == {"low_hz": 500.0, "high_hz": 5000.0, "weight": 2.0}
    assert fix["inputs"] == ["unwa_inst_v1e.instrumental", "becruily_vocal.instrumental"]
    # ... and its `algorithm: phase_fix` ensemble (model 2 the reference; its recommended params apply)
    algo = recipes["recipe_inst_phase_fix"]
    fix = next(s for s in algo["steps"] if s["op"] == "phase_fix")
    assert fix["inputs"] == ["unwa_inst_v1e.instrumental", "mel_band_roformer_kim.instrumental"]
    assert "params" not in fix or not fix["params"]

