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


def entry(allowed, preferred=None, reason=REASON):
    return ModelEntry.model_validate({"id": "m", "runtime": {"allowed": allowed, "preferred": preferred,
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
