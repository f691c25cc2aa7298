"""Loading: bad files name file/line/column, overlays add models, ids stay unique, unknown ids get suggestions."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from registry.errors import ExitCode
from registry.jsonfile import RegistryReadError
from registry.loader import RegistryInvalidError, UnknownModelError, load_registry, overlay_files, verdict_key
from registry.stamps import installed_version
from tests.registry.conftest import VALID
from tests.registry.rule_cases import valid_doc


def _user_model(model_id: str) -> dict:
    """A model a user adds in their own registry file (compat mode: no evidence needed)."""
    return {"id": model_id, "name": "My model", "architecture": "Mel-Roformer",
            "runtime": {"allowed": ["msst"], "preferred": "msst", "model_type": "mel_band_roformer"},
            "artifacts": {"primary": {"kind": "checkpoint", "filename": "mine.ckpt"}}}


def test_loads_in_file_order_with_sources_and_default():
    registry = load_registry([VALID])
    assert list(registry.models) == [m["id"] for m in valid_doc()["models"]]
    assert registry.default_model == "builtin-center-split"
    assert registry.source_of("htdemucs-ft") == VALID
    assert len(registry) == 7 and "htdemucs-ft" in registry and registry.findings == []


def test_malformed_json_names_file_line_and_column(write_registry):
    path = write_registry('{\n  "models": [\n    {"id": "a",}\n  ]\n}\n')
    with pytest.raises(RegistryReadError) as info:
        load_registry([path])
    err = info.value
    assert (err.line, err.column) == (3, 16)  # the stray "}"
    assert f"{path}:3:16" in err.message and err.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("content,words", [
    (None, "does not exist"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_unreadable_files_exit_2(tmp_path, content, words):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RegistryReadError) as info:
        load_registry([path])
    assert words in info.value.message and info.value.exit_code == ExitCode.USAGE


def test_directory_is_unreadable(tmp_path):
    with pytest.raises(RegistryReadError, match="is a directory"):
        load_registry([tmp_path])


def test_invalid_registry_lists_findings_with_paths(write_registry):
    doc = valid_doc()
    doc["models"][2]["runtime"]["preferred"] = "audio-separator"
    with pytest.raises(RegistryInvalidError) as info:
        load_registry([write_registry(doc)])
    err = info.value
    assert err.exit_code == ExitCode.INVALID
    assert "$.models[2].runtime.preferred" in err.why and "registry validate" in err.hint
    assert [f.rule for f in err.findings] == ["runtime-preferred-in-allowed"]


def test_schema_errors_carry_paths(write_registry):
    doc = valid_doc()
    doc["models"][1]["runtime"]["allowed"] = ["audio-separator", "uvr"]
    with pytest.raises(RegistryInvalidError) as info:
        load_registry([write_registry(doc)])
    assert "$.models[1].runtime.allowed[1]" in {f.path for f in info.value.findings}


def test_overlay_adds_models_in_compat_mode(write_registry):
    overlay = write_registry({"models": [_user_model("my-mel")]})
    registry = load_registry([VALID], overlays=[overlay])
    assert list(registry.models)[-1] == "my-mel" and registry.source_of("my-mel") == overlay
    # curation findings of a user file are warnings, kept on the registry
    assert {f.rule for f in registry.findings} >= {"evidence-present"}
    assert all(f.severity == "warning" and f.file == str(overlay) for f in registry.findings)


def test_overlay_may_not_reuse_an_id(write_registry):
    overlay = write_registry({"models": [_user_model("htdemucs-ft")]})
    with pytest.raises(RegistryInvalidError) as info:
        load_registry([VALID], overlays=[overlay])
    assert info.value.code == "E_DUPLICATE_MODEL_ID" and str(VALID) in info.value.message


def test_overlay_may_choose_the_default_model(write_registry):
    overlay = write_registry({"default_model": "htdemucs-ft", "models": []})
    assert load_registry([VALID], overlays=[overlay]).default_model == "htdemucs-ft"
    bad = write_registry({"default_model": "nope", "models": []})
    with pytest.raises(RegistryInvalidError, match="invalid"):
        load_registry([VALID], overlays=[bad])


def test_overlay_files_come_from_the_config_dir(tmp_path):
    folder = tmp_path / "registries"
    folder.mkdir()
    for name in ("b.json", "a.json", "notes.txt"):
        (folder / name).write_text("{}")
    assert [p.name for p in overlay_files(tmp_path)] == ["a.json", "b.json"]
    assert overlay_files(tmp_path / "missing") == []


def test_unknown_model_suggests_nearest_ids():
    registry = load_registry([VALID])
    with pytest.raises(UnknownModelError) as info:
        registry.get("bs-roformer-viperx-1296")
    err = info.value
    assert err.suggestions[0] == "bs-roformer-viperx-1297"
    assert "bs-roformer-viperx-1297" in err.hint and err.exit_code == ExitCode.USAGE
    with pytest.raises(UnknownModelError) as info:
        registry.get("zzzz")
    assert info.value.suggestions == [] and "models list" in info.value.hint


def test_packaged_registry_is_the_default_path():
    from registry.loader import PACKAGED_REGISTRY

    if not PACKAGED_REGISTRY.exists():
        with pytest.raises(RegistryReadError, match="does not exist"):
            load_registry()
    else:
        assert load_registry().files == (PACKAGED_REGISTRY,)


def test_strict_mode_for_base_files(write_registry):
    doc = valid_doc()
    del doc["models"][3]["evidence"]
    path = write_registry(doc)
    with pytest.raises(RegistryInvalidError):
        load_registry([path])
    assert "htdemucs-ft" in load_registry([path], mode="compat")


def test_remembered_verdict_never_hides_a_later_invalid_edit(tmp_path):
    """A clean verdict is remembered for exactly those files; editing a file re-runs the rules."""
    path, verdict = tmp_path / "models.json", tmp_path / "cache" / "verdict.json"
    doc = valid_doc()
    path.write_text(json.dumps(doc))
    first = load_registry([path], verdict_cache=verdict)
    assert verdict.is_file()
    again = load_registry([path], verdict_cache=verdict)  # served by the remembered verdict
    assert list(again.models) == list(first.models) and again.default_model == first.default_model
    assert again.get("htdemucs-ft").model_dump() == first.get("htdemucs-ft").model_dump()

    doc["models"][0]["runtime"]["preferred"] = "audio-separator"  # not in allowed: a semantic error
    doc["models"][0]["runtime"]["allowed"] = ["msst"]
    path.write_text(json.dumps(doc) + "\n")
    with pytest.raises(RegistryInvalidError):
        load_registry([path], verdict_cache=verdict)


def test_a_verdict_remembered_under_another_pydantic_is_not_trusted(tmp_path):
    """pydantic types the entries and runs part of the validation: its version is part of the verdict's key."""
    path, verdict = tmp_path / "models.json", tmp_path / "cache" / "verdict.json"
    path.write_text(json.dumps(valid_doc()))
    files = [(path, "strict")]
    assert installed_version("pydantic") == [importlib.metadata.version("pydantic")]
    assert verdict_key(files, ["2.14.4"]) != verdict_key(files, ["2.15.0"])
    assert verdict_key(files) == verdict_key(files, installed_version("pydantic"))

    load_registry([path], verdict_cache=verdict)
    assert load_registry([path], verdict_cache=verdict).models.frozen_dir is not None  # served by the verdict
    stored = json.loads(verdict.read_text())
    stored["key"] = verdict_key(files, ["0.0.1"])  # the same files, validated by another pydantic
    verdict.write_text(json.dumps(stored))
    assert load_registry([path], verdict_cache=verdict).models.frozen_dir is None  # validated again
    assert json.loads(verdict.read_text())["key"] == verdict_key(files)  # and remembered for this one
