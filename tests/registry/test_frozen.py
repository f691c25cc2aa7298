"""Frozen entries (registry.frozen) read exactly like typed ones, and a remembered registry serves them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from envmgr.artifacts.sources import sources_for
from registry.frozen import Frozen, decode, encode, freeze
from registry.loader import PACKAGED_REGISTRY, load_registry
from registry.model import ModelEntry
from tests.registry.conftest import LEGACY_QUIRKS, VALID


def assert_reads_alike(typed: Any, frozen: Any, where: str) -> None:
    """Every field, unknown key and recorded method of `typed` gives the same value (and type) on `frozen`."""
    if hasattr(type(typed), "model_fields"):
        assert isinstance(frozen, Frozen), where
        for name in [*type(typed).model_fields, *(typed.model_extra or {})]:
            assert_reads_alike(getattr(typed, name), getattr(frozen, name), f"{where}.{name}")
        for name in type(typed).frozen_calls:
            assert_reads_alike(getattr(typed, name)(), getattr(frozen, name)(), f"{where}.{name}()")
    elif isinstance(typed, dict):
        assert isinstance(frozen, dict) and list(frozen) == list(typed), where
        for key in typed:
            assert_reads_alike(typed[key], frozen[key], f"{where}[{key!r}]")
    elif isinstance(typed, list):
        assert isinstance(frozen, list) and len(frozen) == len(typed), where
        for i, (a, b) in enumerate(zip(typed, frozen)):
            assert_reads_alike(a, b, f"{where}[{i}]")
    else:
        assert type(frozen) is type(typed) and frozen == typed, f"{where}: {frozen!r} != {typed!r}"


def _entries(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["models"]


@pytest.mark.parametrize("path", [PACKAGED_REGISTRY, VALID, LEGACY_QUIRKS], ids=lambda p: p.name)
def test_every_entry_reads_alike_after_a_round_trip_through_the_cache_text(path):
    if not path.exists():
        pytest.skip(f"{path} is not there")
    for raw in _entries(path):
        typed = ModelEntry.model_validate(raw)
        assert_reads_alike(typed, decode(encode(freeze(typed))), raw["id"])


def test_legacy_nulls_unknown_keys_and_seed_style_overlap_survive():
    """What the typed model makes of a legacy file's quirks is what the frozen entry answers."""
    raw = {"id": "quirky", "architecture": "Mel-Roformer", "links": None, "sdr": 11.4, "catalog": {"$": "x", "v": [1]},
           "runtime": {"allowed": ["msst"], "hosts": ["local"]}, "requirements": {"pip": None, "manual_steps": [
               "copy a file", {"text": "patch", "automated_by": "patch.py"}], "runtime_pins": {"msst": "msst==0.1.0"}},
           "settings_semantics": {"recommended_settings": {"overlap": {"meaning": "divisor"}}},
           "recommended_settings": {"overlap": 4.0, "segment_size": 352800},
           "artifacts": {"primary": {"kind": "checkpoint", "filename": "a.ckpt"}, "additional": None}}
    typed = ModelEntry.model_validate(raw)
    frozen = decode(encode(freeze(typed)))
    assert_reads_alike(typed, frozen, "quirky")
    assert frozen.links.checkpoint is None and frozen.requirements.pip.packages == []
    assert frozen.catalog == {"$": "x", "v": [1]}  # a plain dict, whatever its keys
    assert frozen.settings_semantics.overlap_semantics().meaning == "divisor"
    assert frozen.requirements.manual_steps[0] == "copy a file"
    assert frozen.requirements.manual_steps[1].automated_by == "patch.py"
    assert frozen.to_json() == typed.model_dump(mode="json") and frozen.to_json()["artifacts"]["additional"] is None
    assert isinstance(frozen.recommended_settings.overlap, float)


def test_a_frozen_entry_cannot_be_changed_and_hands_out_copies():
    frozen = decode(encode(freeze(ModelEntry.model_validate(_entries(VALID)[0]))))
    with pytest.raises(AttributeError, match="cannot be changed"):
        frozen.id = "other"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        frozen.nope
    dump = frozen.to_json()
    dump["id"] = "edited"
    assert frozen.to_json()["id"] != "edited"
    listed = frozen.artifacts.all()
    listed.clear()
    assert frozen.artifacts.all() == [a for a in (frozen.artifacts.primary, frozen.artifacts.config) if a] + list(
        frozen.artifacts.additional)
    assert copy.deepcopy(frozen) is frozen and copy.copy(frozen) is frozen


def test_download_sources_fall_back_to_links_on_a_frozen_entry():
    raw = {"id": "legacy", "architecture": "Mel-Roformer", "runtime": {"allowed": ["msst"]},
           "links": {"checkpoint": "https://example.org/a.ckpt", "config": "https://example.org/a.yaml"},
           "artifacts": {"primary": {"kind": "checkpoint", "filename": "a.ckpt"},
                         "config": {"kind": "config", "filename": "a.yaml"}}}
    typed = ModelEntry.model_validate(raw)
    frozen = decode(encode(freeze(typed)))
    for entry in (typed, frozen):
        primary, config = entry.artifacts.all()
        assert sources_for(entry, primary) == ["https://example.org/a.ckpt"]
        assert sources_for(entry, config) == ["https://example.org/a.yaml"]


def test_a_remembered_registry_serves_frozen_views_and_typed_gets(tmp_path):
    path, verdict = tmp_path / "models.json", tmp_path / "cache" / "verdict.json"
    path.write_text(VALID.read_text(encoding="utf-8"))
    first = load_registry([path], verdict_cache=verdict)
    assert isinstance(first.view("htdemucs-ft"), ModelEntry)  # validated just now: typed already
    again = load_registry([path], verdict_cache=verdict)
    view = again.view("htdemucs-ft")
    assert isinstance(view, Frozen) and again.view("htdemucs-ft") is view  # decoded once
    assert isinstance(again.get("htdemucs-ft"), ModelEntry)
    assert_reads_alike(first.get("htdemucs-ft"), view, "htdemucs-ft")

    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["models"][0]["name"] = "Renamed"
    path.write_text(json.dumps(doc) + "\n")  # a changed file: validated again, never an old frozen entry
    edited = load_registry([path], verdict_cache=verdict)
    assert edited.view(doc["models"][0]["id"]).name == "Renamed"
    assert load_registry([path], verdict_cache=verdict).view(doc["models"][0]["id"]).name == "Renamed"
    folders = list((tmp_path / "cache" / "verdict-frozen").iterdir())
    assert len(folders) == 1 and len(list(folders[0].iterdir())) == len(doc["models"])  # the old version is gone

    for file in folders[0].iterdir():  # a damaged cache costs speed, never correctness
        file.write_text("{not json")
    damaged = load_registry([path], verdict_cache=verdict)
    assert isinstance(damaged.view("htdemucs-ft"), ModelEntry) and damaged.view("htdemucs-ft").id == "htdemucs-ft"


def test_a_verdict_without_frozen_entries_is_not_trusted(tmp_path):
    """A verdict file written by an older version (no frozen entries) means: validate again."""
    path, verdict = tmp_path / "models.json", tmp_path / "verdict.json"
    path.write_text(VALID.read_text(encoding="utf-8"))
    load_registry([path], verdict_cache=verdict)
    old = json.loads(verdict.read_text(encoding="utf-8"))
    del old["frozen"]
    verdict.write_text(json.dumps(old))
    registry = load_registry([path], verdict_cache=verdict)
    assert isinstance(registry.view("htdemucs-ft"), ModelEntry)
    assert isinstance(load_registry([path], verdict_cache=verdict).view("htdemucs-ft"), Frozen)
