"""A broken user registry file (`<config dir>/registries/*.json`) is reported once and left out; everything
else runs. `registry_strict` keeps the old behaviour (the file's error and exit code). Real files, real CLI
processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.loader import RegistryInvalidError, RegistryReadError, load_registry
from tests.registry.conftest import VALID, stemsep

MINE = {"id": "my-dereverb", "name": "Mine", "architecture": "Mel-Roformer",
        "runtime": {"allowed": ["msst"], "model_type": "mel_band_roformer"},
        "capabilities": {"roles": ["dereverb"], "stems": ["dry"]},
        "artifacts": {"primary": {"kind": "checkpoint", "filename": "mine.ckpt"}}}
BROKEN_MODEL = {**MINE, "id": "only-in-broken", "runtime": {"allowed": ["msst"], "preferred": "audio-separator"},
                "artifacts": {"primary": {"kind": "checkpoint", "filename": "broken.ckpt"}}}


def overlay(home: Path, name: str, doc: object) -> Path:
    folder = home / "config" / "registries"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def ids(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [row["id"] for row in json.loads(result.stdout)]


@pytest.fixture
def broken_home(home: Path) -> tuple[Path, Path]:
    """A home with a good overlay and one that breaks a rule (preferred runtime not allowed) and sets the default."""
    overlay(home, "a-mine.json", {"models": [MINE]})
    bad = overlay(home, "b-broken.json", {"default_model": "only-in-broken", "models": [BROKEN_MODEL]})
    return home, bad


def test_list_runs_without_the_broken_file_and_reports_it_once(broken_home):
    home, bad = broken_home
    for _ in range(2):  # first validated, then from the listing index: reported both times, once each
        result = stemsep("models", "list", "--json", home=home)
        listed = ids(result)
        assert "my-dereverb" in listed and "only-in-broken" not in listed and listed[0] == "builtin-center-split"
        assert json.loads(result.stdout)[0]["default"] is True  # the broken file's default_model is ignored
        assert result.stderr.count("warning: skipped user registry file") == 1
        assert str(bad) in result.stderr and "runtime-preferred-in-allowed" in result.stderr
        assert "stemsep registry validate" in result.stderr and "registry_strict" in result.stderr


def test_the_default_model_and_other_models_still_work(broken_home):
    home, bad = broken_home
    for model in ("builtin-center-split", "my-dereverb"):
        shown = stemsep("models", "show", model, "--json", home=home)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["id"] == model
        assert shown.stderr.count(f"warning: skipped user registry file {bad}") == 1


def test_a_model_only_the_broken_file_defines_names_it_as_the_cause(broken_home):
    home, bad = broken_home
    result = stemsep("models", "show", "only-in-broken", home=home)
    assert result.returncode == 1  # the broken file's own exit code (E_REGISTRY_INVALID)
    assert f"model 'only-in-broken' is defined only in {bad}, which was skipped" in result.stderr
    assert "runtime-preferred-in-allowed" in result.stderr


def test_malformed_json_is_left_out_with_its_position(home):
    overlay(home, "a-mine.json", {"models": [MINE]})
    bad = overlay(home, "bad.json", '{"models": [\n  {"id": "x"\n]}')
    result = stemsep("models", "list", "--json", home=home)
    assert "my-dereverb" in ids(result) and f"{bad}:3:1" in result.stderr
    unknown = stemsep("models", "show", "x", home=home)
    assert unknown.returncode == 2 and "E_UNKNOWN_MODEL" not in unknown.stdout
    assert f"{bad} could not be read and were skipped" in unknown.stderr


def test_an_overlay_reusing_an_id_is_left_out_whole(home):
    dup = overlay(home, "dup.json", {"models": [{**MINE, "id": "htdemucs-ft"}, {**MINE, "id": "new-one",
                                                "artifacts": {"primary": {"kind": "checkpoint", "filename": "n.ckpt"}}}]})
    result = stemsep("models", "list", "--json", home=home)
    listed = ids(result)
    assert "new-one" not in listed and listed.count("htdemucs-ft") == 1
    assert f"'htdemucs-ft' in {dup} is already defined in {VALID}" in result.stderr


@pytest.mark.parametrize("how", ["env", "config file"])
def test_strict_mode_keeps_the_error_and_its_exit_code(broken_home, how):
    home, bad = broken_home
    assert stemsep("models", "list", "--json", home=home).returncode == 0  # an index without the file is cached
    env = {}
    if how == "env":
        env["STEMSEP_REGISTRY_STRICT"] = "1"
    else:
        (home / "config" / "config.toml").write_text("registry_strict = true\n")
    for args in (["models", "list"], ["models", "show", "builtin-center-split"]):
        result = stemsep(*args, home=home, env=env)
        assert result.returncode == 1, result.stderr
        assert f"registry file {bad} is invalid" in result.stderr and "skipped" not in result.stderr
    bad.write_text('{"models": [')
    result = stemsep("models", "list", home=home, env=env)
    assert result.returncode == 2 and f"{bad}:1:13" in result.stderr


def test_a_broken_file_given_by_name_still_stops_the_command(home, tmp_path):
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"models": [BROKEN_MODEL]}))
    result = stemsep("models", "list", "--registry", str(named), home=home)
    assert result.returncode == 1 and f"registry file {named} is invalid" in result.stderr


def test_loader_isolates_only_the_files_it_is_told(write_registry, tmp_path):
    good = write_registry({"models": [MINE]})
    bad = write_registry({"models": [BROKEN_MODEL]})
    unreadable = write_registry("{")
    with pytest.raises(RegistryInvalidError):
        load_registry([VALID], overlays=[good, bad])
    with pytest.raises(RegistryReadError):
        load_registry([VALID], overlays=[unreadable], isolate=[bad])
    registry = load_registry([VALID], overlays=[good, bad, unreadable], isolate=[bad, unreadable],
                             verdict_cache=tmp_path / "verdict.json")
    assert "my-dereverb" in registry and "only-in-broken" not in registry
    assert [(b.path, b.ids, b.readable) for b in registry.broken] == [(bad, ("only-in-broken",), True),
                                                                      (unreadable, (), False)]
    again = load_registry([VALID], overlays=[good, bad, unreadable], isolate=[bad, unreadable],
                          verdict_cache=tmp_path / "verdict.json")  # the remembered verdict keeps the report
    assert [b.to_dict() for b in again.broken] == [b.to_dict() for b in registry.broken]
    with pytest.raises(Exception) as raised:
        again.get("only-in-broken")
    assert raised.value.code == "E_REGISTRY_INVALID" and str(bad) in raised.value.message
