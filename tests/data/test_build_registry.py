"""scripts/data/build_registry.py: the committed models.json is exactly what the script builds from the
legacy file and the fact files, and bad facts stop the build with a message that says where."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "data" / "build_registry.py"
FACTS = REPO / "scripts" / "data" / "facts"


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("build_registry", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_registry"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def facts_copy(tmp_path) -> Path:
    target = tmp_path / "facts"
    shutil.copytree(FACTS, target)
    return target


def edit_facts(facts_dir: Path, model_id: str, **changes) -> None:
    path = facts_dir / "models.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data[model_id].update(changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_committed_registry_is_the_build_output(build, legacy_registry_path):
    text = build.render(build.build_registry(legacy_registry_path))
    assert text == (REPO / "registry" / "models.json").read_text(encoding="utf-8"), \
        "registry/models.json is stale: run scripts/data/build_registry.py <legacy models.json.bak>"


def test_check_mode_reports_drift_and_writes_nothing(build, legacy_registry_path, tmp_path, capsys):
    out = tmp_path / "models.json"
    out.write_text("{}", encoding="utf-8")
    assert build.main([str(legacy_registry_path), "--out", str(out), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "{}"
    assert build.main([str(legacy_registry_path), "--out", str(out)]) == 0
    assert build.main([str(legacy_registry_path), "--out", str(out), "--check"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.json"], "no temp files left behind"


def test_unreadable_legacy_file_is_a_clear_error(build, tmp_path, capsys):
    assert build.main([str(tmp_path / "missing.json"), "--out", str(tmp_path / "out.json")]) == 1
    err = capsys.readouterr().err
    assert "cannot read legacy registry" in err and "missing.json" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": [', encoding="utf-8")
    assert build.main([str(bad), "--out", str(tmp_path / "out.json")]) == 1
    assert "line 1 column" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_a_model_without_facts_stops_the_build(build, legacy_registry_path, facts_copy):
    path = facts_copy / "models.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    del data["htdemucs"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(build.BuildError, match=r"no curated facts for legacy models: \['htdemucs'\]"):
        build.build_registry(legacy_registry_path, facts_copy)


def test_a_quote_that_is_not_in_the_guide_stops_the_build(build, legacy_registry_path, facts_copy):
    edit_facts(facts_copy, "becruily-guitar", evidence=[
        {"fields": ["description"], "kind": "guide", "source": "deton24_guide.txt:L8707",
         "quote": "the best guitar model ever made"}])
    if not (legacy_registry_path.parent.parent / "deton24_guide.txt").is_file():
        pytest.skip("deton24_guide.txt not available")
    with pytest.raises(build.BuildError, match=r"becruily-guitar: quote 'the best guitar model ever made' not found"):
        build.build_registry(legacy_registry_path, facts_copy)


def test_a_shared_primary_filename_stops_the_build(build, legacy_registry_path, facts_copy):
    # Point another model at viperx 1297's checkpoint: one file claimed by two ids.
    edit_facts(facts_copy, "bs-roformer-viperx-1296", artifacts={"primary": {
        "url": "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/"
               "model_bs_roformer_ep_317_sdr_12.9755.ckpt"}})
    with pytest.raises(build.BuildError, match="model_bs_roformer_ep_317_sdr_12.9755.ckpt"):
        build.build_registry(legacy_registry_path, facts_copy)


def test_excluding_a_runtime_needs_a_reason(build, legacy_registry_path, facts_copy):
    edit_facts(facts_copy, "anvuew-dereverb-room", blocking_reason=None)
    with pytest.raises(build.BuildError, match="anvuew-dereverb-room: audio-separator is excluded but neither"):
        build.build_registry(legacy_registry_path, facts_copy)


def test_phase_fix_parameters_are_range_checked(build, legacy_registry_path, facts_copy):
    edit_facts(facts_copy, "becruily-vocal", phase_fix={"params": {"lowHz": 6000, "highHz": 5000,
                                                                   "highFreqWeight": 2}})
    with pytest.raises(build.BuildError, match="becruily-vocal: phase_fix params"):
        build.build_registry(legacy_registry_path, facts_copy)


def test_a_ratio_overlap_above_one_is_refused(build, legacy_registry_path, facts_copy):
    # The legacy file stored Demucs overlap as a divisor (4/8); Demucs takes a 0..1 ratio.
    edit_facts(facts_copy, "htdemucs", recommended={"overlap": 4})
    with pytest.raises(build.BuildError, match=r"htdemucs: ratio overlap must be in \[0, 1\), got 4"):
        build.build_registry(legacy_registry_path, facts_copy)


def test_legacy_filename_is_derived_from_the_url(build):
    ev: list[dict] = []
    art = build.build_artifact(
        "m", "checkpoint", "https://example.org/files/resolve/main/real_name.ckpt?download=true",
        {"filename": "wrong_name.ckpt", "url": "https://example.org/files/resolve/main/real_name.ckpt?download=true",
         "mirrors": [], "sha256": None, "size_bytes": None}, None, ev)
    assert art["filename"] == "real_name.ckpt"
    assert "wrong_name.ckpt" in ev[0]["note"]
    assert build.build_artifact("m", "config", "https://huggingface.co/some/repo", None, None, []) is None
    assert build.build_artifact("m", "config", "https://huggingface.co/a/b/blob/main/c.yaml", None, None, []) is None


def test_atomic_write_keeps_the_old_file_when_writing_fails_and_its_mode(build, tmp_path):
    target = tmp_path / "models.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o644)
    with pytest.raises(UnicodeEncodeError):
        build.atomic_write_text(target, "new \udcff")  # a lone surrogate cannot be encoded: the write fails midway
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["models.json"]
    build.atomic_write_text(target, json.dumps({"ok": True}))
    assert json.loads(target.read_text(encoding="utf-8")) == {"ok": True}
    assert target.stat().st_mode & 0o777 == 0o644  # the packaged registry stays readable by everyone
