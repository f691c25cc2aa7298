"""Backwards compatibility (seed MUST): legacy registries load unchanged and keep every unknown key."""

from __future__ import annotations

import json

from registry.loader import load_registry
from registry.model import ModelEntry
from registry.validator import validate_files, validate_document
from tests.registry.conftest import LEGACY_QUIRKS, stemsep


def _models(path):
    return json.loads(path.read_text(encoding="utf-8"))["models"]


def _assert_round_trip(registry, raw_models):
    assert list(registry.models) == [m["id"] for m in raw_models]
    for raw in raw_models:
        assert registry.raw[raw["id"]] == raw
        # the typed model writes back exactly what it read: unknown keys and nulls included
        assert registry.models[raw["id"]].model_dump(mode="json", exclude_unset=True) == raw


def test_legacy_file_loads_all_114_models_unchanged(legacy_registry_path):
    registry = load_registry([legacy_registry_path], mode="compat")
    raw = _models(legacy_registry_path)
    assert len(raw) == 114 and len(registry) == 114
    _assert_round_trip(registry, raw)
    hosts = [m for m in raw if "hosts" in m["runtime"]]
    assert hosts and registry.models[hosts[0]["id"]].runtime.model_extra["hosts"] == hosts[0]["runtime"]["hosts"]


def test_legacy_file_validates_in_compat_mode_and_fails_strict(legacy_registry_path):
    compat = validate_files([legacy_registry_path], mode="compat")
    assert compat.ok and compat.files[0].model_count == 114
    assert all(f.severity == "warning" for f in compat.all_findings())
    strict = validate_files([legacy_registry_path], mode="strict")
    rules = {f.rule for f in strict.all_findings() if f.severity == "error"}
    # what the research pass found wrong with the legacy data is what strict mode reports
    assert {"evidence-present", "capabilities-stems-declared", "overlap-meaning-vocab"} <= rules


def test_legacy_file_cli_compat_exit_0(legacy_registry_path):
    result = stemsep("registry", "validate", str(legacy_registry_path), "--mode", "compat", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["files"][0]["models"] == 114 and report["errors"] == 0


def test_quirks_fixture_loads_unchanged():
    registry = load_registry([LEGACY_QUIRKS], mode="compat")
    _assert_round_trip(registry, _models(LEGACY_QUIRKS))


def test_quirks_read_as_safe_defaults():
    registry = load_registry([LEGACY_QUIRKS], mode="compat")
    roformer, demucs, seed = (registry.get(i) for i in ("legacy-roformer", "legacy-demucs", "seed-style-mdx"))
    # null objects read as "nothing claimed"
    assert demucs.requirements.pip.packages == [] and demucs.capabilities.roles == []
    assert demucs.phase_fix.is_valid_reference is None and demucs.artifacts.primary is None
    assert demucs.settings_semantics.overlap_semantics().meaning is None
    # int and float overlaps keep their type
    assert roformer.recommended_settings.overlap == 4 and isinstance(roformer.recommended_settings.overlap, int)
    assert isinstance(seed.recommended_settings.overlap, float)
    # legacy overlap words are kept verbatim (never used for translation)
    assert roformer.settings_semantics.overlap.meaning_by_runtime["audio-separator"] == "auto"
    # the seed proposal's nesting is read
    assert seed.settings_semantics.overlap_semantics().meaning_by_runtime["msst"] == "chunk_overlap_divisor"
    # extra keys at every level survive
    assert roformer.model_extra["catalog"] == {"tier": "verified", "rank": 3}
    assert roformer.phase_fix.model_extra["references"] == {"vocals": ["legacy-roformer"]}
    assert roformer.artifacts.primary.model_extra["origin"] == "hf"
    assert roformer.recommended_settings.model_extra["chunk_policy"] == "auto"
    assert roformer.requirements.manual_steps == ["Place the files under msst/legacy-roformer/ inside the model root."]


def test_quirks_are_warnings_in_compat_and_errors_in_strict():
    doc = json.loads(LEGACY_QUIRKS.read_text(encoding="utf-8"))
    compat = validate_document(doc, mode="compat")
    assert compat.findings and not compat.errors
    strict_rules = {f.rule for f in validate_document(doc, mode="strict").errors}
    assert {"overlap-meaning-vocab", "artifact-kind-slot", "primary-filename-duplicate",
            "artifact-filename-unique", "runtime-blocking-reason"} <= strict_rules


def test_every_seed_field_has_a_typed_home():
    """Seed §3.1-3.7: each additive field is a declared field of the model, not an extra key."""
    fields = ModelEntry.model_fields
    for name in ("runtime", "compatibility", "requirements", "settings_semantics", "phase_fix", "capabilities",
                 "artifacts"):
        assert name in fields
    entry = ModelEntry.model_validate({"id": "x"})
    assert set(type(entry.runtime).model_fields) >= {"allowed", "preferred", "blocking_reason"}
    assert set(type(entry.compatibility).model_fields) >= {"uvr_compatible", "audio_separator_compatible",
                                                           "msst_compatible", "known_issues"}
    assert set(type(entry.requirements).model_fields) >= {"python", "torch", "pip", "files", "manual_steps"}
    assert set(type(entry.requirements.torch).model_fields) >= {"min", "max", "cuda", "rocm"}
    assert set(type(entry.phase_fix).model_fields) >= {"is_valid_reference", "recommended_params",
                                                       "recommended_usage"}
    assert set(type(entry.capabilities).model_fields) >= {"stems", "roles", "supports_mono", "supports_stereo"}
    assert set(type(entry.artifacts).model_fields) >= {"primary", "config", "additional"}
    # safe defaults: nothing allowed, nothing required, nothing claimed
    assert entry.runtime.allowed == [] and entry.requirements.pip.packages == []
    assert entry.phase_fix.is_valid_reference is None and entry.capabilities.roles == []
