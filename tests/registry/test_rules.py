"""Every semantic rule fires on its own failing fixture, at the JSON path it names, and nowhere else."""

from __future__ import annotations

import pytest

from registry.rules import RULES
from registry.validator import validate_document
from tests.registry.rule_cases import CASES, broken_doc, valid_doc

CASE_IDS = [c.rule for c in CASES]


def test_at_least_25_semantic_rules_each_with_a_case():
    assert len(RULES) >= 25
    assert sorted(CASE_IDS) == sorted(RULES), "every rule needs exactly one failing fixture in rule_cases.py"


@pytest.mark.parametrize("mode", ["strict", "compat"])
def test_valid_fixture_is_clean(mode):
    findings = validate_document(valid_doc(), mode=mode).findings
    assert findings == []


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_rule_fires_on_its_fixture(case):
    rule = RULES[case.rule]
    findings = validate_document(broken_doc(case), mode="strict").findings
    hits = [f for f in findings if f.rule == case.rule]
    assert hits, f"{case.rule} did not fire; findings: {[f.format() for f in findings]}"
    assert case.path in {f.path for f in hits}
    assert all(f.severity == rule.severity for f in hits)
    assert all(f.hint for f in hits), "every finding carries a fix hint"
    # the fixture breaks this rule only (no schema error hides behind it)
    assert {f.rule for f in findings} == {case.rule, *case.also}, [f.format() for f in findings]


@pytest.mark.parametrize("case", [c for c in CASES if RULES[c.rule].strict_only], ids=lambda c: c.rule)
def test_strict_only_rules_warn_in_compat_mode(case):
    findings = [f for f in validate_document(broken_doc(case), mode="compat").findings if f.rule == case.rule]
    assert findings and all(f.severity == "warning" for f in findings)


def test_legacy_overlap_words_only_in_compat():
    doc = valid_doc()
    doc["models"][1]["settings_semantics"]["overlap"]["meaning_by_runtime"]["msst"] = "divisor_or_seconds"
    strict = validate_document(doc, mode="strict").findings
    assert [f.rule for f in strict] == ["overlap-meaning-vocab"] and "legacy word" in strict[0].message
    assert validate_document(doc, mode="compat").findings == []
    doc["models"][1]["settings_semantics"]["overlap"]["meaning_by_runtime"]["msst"] = "percent"
    assert [f.rule for f in validate_document(doc, mode="compat").findings] == ["overlap-meaning-vocab"]


def test_seed_style_settings_semantics_are_read():
    """Seed §3.4 nests overlap under settings_semantics.recommended_settings; the rules read it there too."""
    doc = valid_doc()
    viperx = doc["models"][1]
    viperx["settings_semantics"] = {"recommended_settings": {"overlap": {"meaning": "divisor",
                                                                          "meaning_by_runtime": {"msst": "ratio"}}}}
    rules = {f.rule for f in validate_document(doc, mode="strict").findings}
    assert rules == {"overlap-native-matches-table"}


def test_catalog_only_needs_a_reason():
    doc = valid_doc()
    doc["models"][6]["runtime"]["blocking_reason"] = ""
    rules = {f.rule for f in validate_document(doc, mode="strict").findings}
    assert rules == {"runtime-allowed-nonempty", "runtime-blocking-reason"}
