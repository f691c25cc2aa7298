"""Deterministic routing from registry data only (seed §4.2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from registry.errors import ExitCode
from registry.model import ModelEntry
from registry.routing import RuntimeNotAllowedError, UnknownRuntimeError, choose_runtime

REPO = Path(__file__).resolve().parents[2]
REASON = "msst only: needs HyperACE's own bs_roformer.py"


def entry(allowed, preferred=None, reason=REASON, stereo=True):
    """A BS-Roformer (every runtime has code for it); `stereo=False`: a mono one (msst and audio-separator cannot
    run it: registry/capabilities.py)."""
    return ModelEntry.model_validate({"id": "m", "architecture": "BS-Roformer",
                                      "artifacts": {"primary": {"kind": "checkpoint", "filename": "m.ckpt"},
                                                    "config": {"kind": "config", "filename": "m.yaml"}},
                                      "capabilities": {"supports_mono": True, "supports_stereo": stereo},
                                      "runtime": {"allowed": allowed, "preferred": preferred,
                                                  "blocking_reason": reason}})


@pytest.mark.parametrize("allowed,preferred,requested,expected", [
    (["audio-separator", "msst"], "msst", "audio-separator", ("audio-separator", "user")),
    (["audio-separator", "msst"], "msst", None, ("msst", "preferred")),
    (["msst", "audio-separator"], None, None, ("msst", "first_allowed")),
    (["stemsep-legacy"], None, "stemsep-legacy", ("stemsep-legacy", "user")),
])
def test_routing_table(allowed, preferred, requested, expected):
    choice = choose_runtime(entry(allowed, preferred), requested)
    assert (choice.runtime, choice.reason) == expected


def test_requested_runtime_not_allowed_blocks_quoting_the_reason():
    with pytest.raises(RuntimeNotAllowedError) as info:
        choose_runtime(entry(["msst"], "msst"), "audio-separator")
    err = info.value
    assert err.exit_code == ExitCode.PREFLIGHT_BLOCKED and err.code == "E_RUNTIME_NOT_ALLOWED"
    assert err.why == REASON and "--runtime msst" in err.hint and err.allowed == ["msst"]


def test_not_allowed_without_reason_still_says_what_is_allowed():
    with pytest.raises(RuntimeNotAllowedError) as info:
        choose_runtime(entry(["msst"], reason=None), "stemsep-legacy")
    assert "allows only msst" in info.value.why


def test_empty_allowed_blocks():
    with pytest.raises(RuntimeNotAllowedError) as info:
        choose_runtime(entry([], reason="No runtime has AudioSep's code."))
    assert info.value.code == "E_NO_RUNTIME" and info.value.exit_code == ExitCode.PREFLIGHT_BLOCKED
    assert "AudioSep" in info.value.why


def test_unknown_runtime_is_a_usage_error_with_suggestion():
    with pytest.raises(UnknownRuntimeError) as info:
        choose_runtime(entry(["msst"]), "audio_separator")
    assert info.value.exit_code == ExitCode.USAGE and "did you mean audio-separator" in info.value.hint


def test_a_runtime_that_cannot_run_the_model_is_refused_with_the_capability_reason():
    """A user's entry (compat mode lets it load) allows msst for a mono Roformer: msst 0.1.0 would fail."""
    mono = entry(["msst", "stemsep-legacy"], "msst", stereo=False)
    with pytest.raises(RuntimeNotAllowedError) as info:
        choose_runtime(mono, "msst")
    err = info.value
    assert err.code == "E_RUNTIME_CANNOT_RUN" and err.exit_code == ExitCode.PREFLIGHT_BLOCKED
    assert "msst 0.1.0 cannot run mono BS-Roformer models" in err.why and "stemsep-legacy can" in err.why
    assert "--runtime stemsep-legacy" in err.hint
    # without a request the preferred runtime is passed over for the first allowed one that can run it
    choice = choose_runtime(mono)
    assert (choice.runtime, choice.reason) == ("stemsep-legacy", "first_capable")
    assert choose_runtime(entry(["msst", "stemsep-legacy"], "msst")).runtime == "msst"  # stereo: msst runs it
    with pytest.raises(RuntimeNotAllowedError) as info:
        choose_runtime(entry(["msst"], stereo=False))
    assert info.value.code == "E_RUNTIME_CANNOT_RUN" and "no runtime here can run it" in info.value.hint


def test_a_runtime_not_allowed_is_explained_by_its_capabilities_when_they_exclude_it():
    with pytest.raises(RuntimeNotAllowedError) as info:
        choose_runtime(entry(["stemsep-legacy"], stereo=False), "msst")
    assert info.value.code == "E_RUNTIME_NOT_ALLOWED"
    assert info.value.why.startswith(REASON)  # the registry's own words first, then the capability facts
    assert "msst 0.1.0 cannot run mono BS-Roformer models" in info.value.why and "stemsep-legacy can" in info.value.why


def test_preferred_outside_allowed_is_never_routed_around():
    with pytest.raises(Exception) as info:
        choose_runtime(entry(["msst"], "audio-separator"))
    assert getattr(info.value, "code", "") == "E_REGISTRY_INVALID"


# No decision may depend on substrings of model ids or names (seed §4.2: "no string heuristics").
# The model id or name, however a module holds it: a variable, an entry attribute, a dict key.
_SUBJECT = (r"""(\bmodel_id\b|\bmodel_name\b|\bmid\b|\b(entry|model|m|e|row|item|spec)\.(id|name)\b"""
            r"""|\w*\[["'](id|name)["']\])""")
HEURISTICS = [
    re.compile(r"""["'][^"']+["']\s+(not\s+)?in\s+""" + _SUBJECT),
    re.compile(_SUBJECT + r"""(\.lower\(\)|\.casefold\(\))?\.(startswith|endswith|find|count|index|__contains__)\("""),
    re.compile(r"""\b(re\.(search|match|fullmatch|findall)|fnmatch\w*)\(.*""" + _SUBJECT),
]


def _sources():
    for folder in ("registry", "envmgr", "runtimes"):
        yield from sorted((REPO / folder).rglob("*.py"))


def test_no_id_or_name_heuristics_in_the_source():
    offenders = []
    for path in _sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(p.search(code) for p in HEURISTICS):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "decisions from id/name substrings:\n" + "\n".join(offenders)


@pytest.mark.parametrize("line", [
    'if "roformer" in model_id:',
    "if 'hyperace' in entry.id.lower():",
    'if entry.id.startswith("bs-roformer"):',
    'elif "Demucs" in entry.name:',
    'if mid.endswith("-inst"):',
    'if re.search("fno", entry.id):',
    'return "apollo" in m["name"].lower()',
])
def test_heuristic_patterns_catch_typical_code(line):
    assert any(p.search(line) for p in HEURISTICS), line


def test_a_runtime_that_builds_the_network_from_the_config_needs_one_declared():
    """msst, audio-separator and our Roformer build a Roformer from its config file: an entry without
    artifacts.config would fail to load after preflight said yes (found with mdx23c-instvoc-hq-2)."""
    from registry.capabilities import cannot_run

    no_config = ModelEntry.model_validate({"id": "m", "architecture": "BS-Roformer",
                                           "artifacts": {"primary": {"kind": "checkpoint", "filename": "m.ckpt"}},
                                           "runtime": {"allowed": ["msst"]}})
    for runtime in ("msst", "audio-separator", "stemsep-legacy"):
        assert any("declares none (artifacts.config)" in r for r in cannot_run(no_config, runtime)), runtime
    assert not cannot_run(entry(["msst"]), "msst")
