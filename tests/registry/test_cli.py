"""`stemsep models list|show` and `stemsep registry validate`, run as real processes (and in-process for
the per-rule table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from envmgr.cli.main import app
from registry.rules import RULES
from tests.registry.conftest import LEGACY_QUIRKS, VALID, stemsep
from tests.registry.rule_cases import CASES, broken_doc, valid_doc


def rows(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---- models list ---------------------------------------------------------------------------------

def test_list_json_has_every_model_with_its_facts(home):
    listed = rows(stemsep("models", "list", "--json", home=home))
    assert [r["id"] for r in listed] == [m["id"] for m in valid_doc()["models"]]
    viperx = listed[1]
    assert viperx["runtimes"] == ["audio-separator", "msst", "stemsep-legacy"]
    assert viperx["preferred"] == "audio-separator" and viperx["phase_fix_reference"] is True
    assert viperx["stems"] == ["vocals", "instrumental"] and viperx["source"] == str(VALID)
    assert listed[0]["default"] is True and listed[6]["catalog_only"] is True


@pytest.mark.parametrize("args,expected", [
    (["--runtime", "msst"], ["bs-roformer-viperx-1297", "unwa-hyperace-v2-inst", "htdemucs-ft"]),
    (["--runtime", "audio-separator", "--stem", "vocals"], ["bs-roformer-viperx-1297", "htdemucs-ft",
                                                            "mdx-net-inst-hq3"]),
    (["--role", "dereverb"], ["uvr-deecho-dereverb"]),
    (["--arch", "roformer"], ["bs-roformer-viperx-1297", "unwa-hyperace-v2-inst"]),
    (["--arch", "mdx-net"], ["mdx-net-inst-hq3"]),
    (["--phase-fix-reference"], ["bs-roformer-viperx-1297"]),
    (["--stem", "drums", "--runtime", "stemsep-legacy"], []),
])
def test_list_filters(home, args, expected):
    assert [r["id"] for r in rows(stemsep("models", "list", "--json", *args, home=home))] == expected


@pytest.mark.parametrize("args,hint", [
    (["--role", "derverb"], "did you mean dereverb"),
    (["--runtime", "uvr"], "known: audio-separator, msst, stemsep-legacy"),
    (["--stem", "vocal"], "did you mean vocals"),
])
def test_list_unknown_filter_values_exit_2(home, args, hint):
    result = stemsep("models", "list", *args, home=home)
    assert result.returncode == 2 and hint in result.stderr


def test_list_table_for_people(home):
    result = stemsep("models", "list", home=home)
    assert result.returncode == 0
    first = result.stdout.splitlines()[0].split()
    assert first == ["ID", "ARCHITECTURE", "STEMS", "ROLES", "RUNTIMES", "PF"]
    assert "bs-roformer-viperx-1297" in result.stdout and "7 model(s)" in result.stdout
    empty = stemsep("models", "list", "--role", "decrowd", home=home)
    assert empty.returncode == 0 and "No model matches" in empty.stdout


def test_list_index_is_cached_and_follows_registry_changes(home, tmp_path):
    registry = tmp_path / "r.json"
    registry.write_text(VALID.read_text())
    index = home / "cache" / "model-index.json"
    assert len(rows(stemsep("models", "list", "--json", registry=registry, home=home))) == 7
    assert index.is_file()
    cached = json.loads(index.read_text())
    assert [r["id"] for r in cached["rows"]][:2] == ["builtin-center-split", "bs-roformer-viperx-1297"]
    # a warm run reads the index: poison the cached rows (key unchanged) and see them come back
    cached["rows"][0]["name"] = "from the index"
    index.write_text(json.dumps(cached))
    assert rows(stemsep("models", "list", "--json", registry=registry, home=home))[0]["name"] == "from the index"
    # any change to the registry file rebuilds the index (and re-validates)
    doc = valid_doc()
    doc["models"] = doc["models"][:3]
    registry.write_text(json.dumps(doc))
    assert len(rows(stemsep("models", "list", "--json", registry=registry, home=home))) == 3
    doc["models"][2]["runtime"]["preferred"] = "audio-separator"
    registry.write_text(json.dumps(doc))
    broken = stemsep("models", "list", registry=registry, home=home)
    assert broken.returncode == 1 and "runtime-preferred-in-allowed" in broken.stderr


def test_list_works_with_an_unwritable_cache(home, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = stemsep("models", "list", "--json", home=home, env={"STEMSEP_CACHE_DIR": str(blocker / "cache")})
    assert len(rows(result)) == 7


def test_list_caches_in_the_cache_dir_of_config_toml(home, tmp_path, monkeypatch):
    monkeypatch.delenv("STEMSEP_CACHE_DIR", raising=False)
    elsewhere = tmp_path / "elsewhere"
    (home / "config").mkdir()
    (home / "config" / "config.toml").write_text(f"cache_dir = {str(elsewhere)!r}\n")
    assert len(rows(stemsep("models", "list", "--json", home=home))) == 7
    assert (elsewhere / "model-index.json").is_file() and (elsewhere / "registry-verdict.json").is_file()
    assert not (home / "cache").exists()  # one cache dir: the one every other command uses too


def test_list_includes_user_registry_files(home, tmp_path):
    folder = home / "config" / "registries"
    folder.mkdir(parents=True)
    (folder / "mine.json").write_text(json.dumps({"models": [{
        "id": "my-dereverb", "name": "Mine", "architecture": "Mel-Roformer",
        "runtime": {"allowed": ["msst"], "model_type": "mel_band_roformer"},
        "capabilities": {"roles": ["dereverb"], "stems": ["dry"]},
        "artifacts": {"primary": {"kind": "checkpoint", "filename": "mine.ckpt"}}}]}))
    listed = rows(stemsep("models", "list", "--json", "--role", "dereverb", home=home))
    assert [r["id"] for r in listed] == ["uvr-deecho-dereverb", "my-dereverb"]
    assert listed[1]["source"] == str(folder / "mine.json") and listed[1]["preferred"] == "msst"


def test_list_malformed_registry_names_file_line_column(home, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": [\n  {"id": "x"\n]}')
    result = stemsep("models", "list", registry=bad, home=home)
    assert result.returncode == 2 and f"{bad}:3:1" in result.stderr and "malformed JSON" in result.stderr


# ---- models show ---------------------------------------------------------------------------------

def test_show_explains_an_msst_only_model(home):
    result = stemsep("models", "show", "unwa-hyperace-v2-inst", home=home)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "no audio-separator" in out and "no stemsep-legacy" in out and "yes msst" in out
    assert "Why not elsewhere: Incompatible with UVR/audio-separator" in out
    assert "automated: the worker loads bs_roformer_hyperace_v2.py as model type bs_roformer_hyperace_v2" in out
    assert "not automated" in out  # the second, optional step
    assert "inference.num_overlap = 2 (divisor" in out and "Not a Phase Fix reference" in out


def test_show_explains_settings_per_runtime_and_phase_fix(home):
    out = " ".join(stemsep("models", "show", "bs-roformer-viperx-1297", home=home).stdout.split())
    assert "In audio-separator 0.47.1: mdxc_params.segment_size: runtime default" in out
    assert "mdxc_params.overlap = 4 (divisor" in out and "In msst 0.1.0:" in out
    assert "Valid Phase Fix reference: lowHz 500, highHz 5000, highFreqWeight 0.8" in out
    demucs = " ".join(stemsep("models", "show", "htdemucs-ft", home=home).stdout.split())
    assert "demucs_params.overlap = 0.5 (ratio" in demucs
    assert "inference.num_overlap = 2 (divisor: chunks step by chunk_size // N), from the registry [0.5 (ratio)" \
        in demucs


def test_show_json(home):
    info = rows(stemsep("models", "show", "htdemucs-ft", "--json", home=home))
    assert info["default_runtime"] == {"runtime": "audio-separator", "reason": "preferred",
                                       "explanation": "the registry's preferred runtime for this model"}
    assert info["settings"]["per_runtime"]["msst"]["native"] == {"inference": {"num_overlap": 2}}
    assert info["settings"]["per_runtime"]["audio-separator"]["settings"]["overlap"]["provenance"] == "registry"
    assert info["entry"] == valid_doc()["models"][3]


def test_show_catalog_only_model(home):
    out = " ".join(stemsep("models", "show", "audiosep-zero-shot", home=home).stdout.split())
    assert "Listed for reference only" in out and "AudioSep's text-queried model code" in out


def test_show_unknown_id_suggests_and_exits_2(home):
    result = stemsep("models", "show", "htdemucs_ft", home=home)
    assert result.returncode == 2 and "E_UNKNOWN_MODEL" in result.stderr
    assert "did you mean: htdemucs-ft" in " ".join(result.stderr.split())


# ---- registry validate ---------------------------------------------------------------------------

def test_validate_clean_file_exits_0():
    result = stemsep("registry", "validate", str(VALID))
    assert result.returncode == 0 and "valid (strict mode): 1 file(s), 7 model(s), 0 error(s)" in result.stdout


def test_validate_defaults_to_the_registry_in_use(home):
    result = stemsep("registry", "validate", "--json", home=home)
    assert rows(result)["files"] == [{"path": str(VALID), "models": 7}]
    # the user's own files join, checked in compat mode (curation rules warn)
    folder = home / "config" / "registries"
    folder.mkdir(parents=True)
    mine = {"id": "mine", "architecture": "Mel-Roformer", "runtime": {"allowed": ["msst"]},
            "artifacts": {"primary": {"kind": "checkpoint", "filename": "mine.ckpt"}}}
    (folder / "mine.json").write_text(json.dumps({"models": [mine]}))
    report = rows(stemsep("registry", "validate", "--json", home=home))
    assert report["ok"] and report["warnings"] > 0 and len(report["files"]) == 2
    (folder / "mine.json").write_text(json.dumps({"models": [dict(mine, id="htdemucs-ft")]}))
    clash = stemsep("registry", "validate", home=home)
    assert clash.returncode == 1 and "already defined in" in clash.stdout


def test_warm_list_imports_no_pydantic_numpy_or_torch(home):
    """The startup design (docs/DESIGN.md §2): a warm `models list` reads the index only."""
    assert stemsep("models", "list", "--json", home=home).returncode == 0  # builds the index
    code = ("import runpy, sys, io, contextlib\n"
            "sys.argv = ['stemsep', 'models', 'list', '--json']\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        runpy.run_module('envmgr.cli.main', run_name='__main__')\n"
            "    except SystemExit as exc:\n        assert not exc.code, exc.code\n"
            "print(sorted(m for m in ('pydantic', 'numpy', 'torch', 'jsonschema') if m in sys.modules))")
    env = dict(os.environ, STEMSEP_HOME=str(home), STEMSEP_REGISTRY=str(VALID))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_validate_unreadable_exits_2(tmp_path):
    result = stemsep("registry", "validate", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_validate_compat_mode_on_legacy_quirks():
    assert stemsep("registry", "validate", str(LEGACY_QUIRKS)).returncode == 1
    result = stemsep("registry", "validate", str(LEGACY_QUIRKS), "--mode", "compat", "--json")
    report = rows(result)
    assert report["ok"] and report["errors"] == 0 and report["warnings"] > 0


def test_validate_bad_mode_exits_2():
    result = stemsep("registry", "validate", str(VALID), "--mode", "lenient")
    assert result.returncode == 2 and "unknown mode" in result.stderr


def test_validate_several_files_checks_ids_across_them(tmp_path):
    other = tmp_path / "other.json"
    doc = valid_doc()
    doc["models"] = doc["models"][3:4]
    del doc["default_model"]
    other.write_text(json.dumps(doc))
    result = stemsep("registry", "validate", str(VALID), str(other), "--json")
    assert result.returncode == 1
    found = json.loads(result.stdout)["findings"]
    assert [(f["rule"], f["file"], f["path"]) for f in found] == [("id-unique", str(other), "$.models[0].id")]


def test_validate_rules_listing():
    listed = json.loads(stemsep("registry", "validate", "--rules", "--json").stdout)
    assert [r["id"] for r in listed] == list(RULES) and len(listed) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_each_rule_fixture_through_the_cli(case, tmp_path):
    path = tmp_path / f"{case.rule}.json"
    path.write_text(json.dumps(broken_doc(case), indent=2))
    result = CliRunner().invoke(app, ["registry", "validate", str(path)], env={"COLUMNS": "300"})
    error = RULES[case.rule].severity == "error"
    assert result.exit_code == (1 if error else 0), result.output
    line = next(ln for ln in result.output.splitlines() if f" {case.rule} at {case.path}" in ln)
    assert line.startswith(f"{path}: {'error' if error else 'warning'} {case.rule} at {case.path}")


def test_registry_env_var_accepts_several_files(home, tmp_path):
    doc = valid_doc()
    extra = {"models": [dict(doc["models"][3], id="htdemucs-copy",
                             artifacts={"primary": {"kind": "checkpoint", "filename": "copy.th"},
                                        "config": {"kind": "config", "filename": "copy.yaml"}})]}
    second = tmp_path / "second.json"
    second.write_text(json.dumps(extra))
    result = stemsep("models", "list", "--json", registry=None, home=home,
                     env={"STEMSEP_REGISTRY": os.pathsep.join([str(VALID), str(second)])})
    assert [r["id"] for r in rows(result)][-1] == "htdemucs-copy"
