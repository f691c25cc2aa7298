"""The validator never crashes: on any JSON value, and on valid registries with random mutations."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings, strategies as st

from registry.findings import Finding
from registry.validator import validate_document
from tests.registry.rule_cases import valid_doc

SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=25)
# keys the model knows, so random values land on typed fields, not only on extra keys
KEYS = ["id", "name", "architecture", "runtime", "allowed", "preferred", "blocking_reason", "catalog_only",
        "requirements", "python", "torch", "min", "max", "cuda", "rocm", "pip", "packages", "manual_steps",
        "automated_by", "runtime_pins", "settings_semantics", "overlap", "meaning", "meaning_by_runtime",
        "segment_size", "unit", "recommended_settings", "phase_fix", "recommended_params", "lowHz", "highHz",
        "highFreqWeight", "is_valid_reference", "capabilities", "stems", "roles", "artifacts", "primary",
        "config", "additional", "filename", "sha256", "kind", "url", "mirrors", "evidence", "fields", "source",
        "models", "default_model", "msst", "audio-separator", "stemsep-legacy"]
KNOWN_JSON = st.recursive(SCALARS | st.sampled_from(["msst", "divisor", "ratio", "checkpoint", "code", "guide"]),
                          lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5), max_leaves=30)
VALID = valid_doc()


def _check(result, data=None) -> None:
    assert all(isinstance(f, Finding) and f.path.startswith("$") for f in result.findings)
    json.dumps([f.to_dict() for f in result.findings])  # findings are always reportable
    if isinstance(data, dict) and isinstance(data.get("models"), list) \
            and not any(f.rule == "schema" for f in result.findings):
        # what the JSON Schema accepts, the typed model (the loader) accepts too
        assert len(result.entries) == len(data["models"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=JSON, mode=st.sampled_from(["strict", "compat"]))
def test_any_json_value(data, mode):
    _check(validate_document(data, mode=mode), data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models=st.lists(KNOWN_JSON, max_size=3), default=KNOWN_JSON, mode=st.sampled_from(["strict", "compat"]))
def test_registry_shaped_json(models, default, mode):
    doc = {"schema_version": "2", "default_model": default, "models": models}
    _check(validate_document(doc, mode=mode), doc)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


PATHS = [p for p in _paths(VALID) if p]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(st.tuples(st.sampled_from(PATHS), KNOWN_JSON, st.booleans()), min_size=1, max_size=4),
       mode=st.sampled_from(["strict", "compat"]))
def test_mutated_valid_registry(mutations, mode):
    doc = copy.deepcopy(VALID)
    for path, value, delete in mutations:
        node = doc
        try:
            for part in path[:-1]:
                node = node[part]
            if delete and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the parent
    _check(validate_document(doc, mode=mode), doc)
