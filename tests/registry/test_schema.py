"""The committed JSON Schema is generated from the typed model and applied with jsonschema."""

from __future__ import annotations

import json
import subprocess
import sys

from registry.validator import SCHEMA_PATH, schema_findings
from tests.registry.conftest import LEGACY_QUIRKS, VALID
from tests.registry.rule_cases import valid_doc

REPO = SCHEMA_PATH.parent.parent


def test_committed_schema_matches_the_model():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from gen_schema import render_schema
    finally:
        sys.path.pop(0)
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), \
        "registry/schema.json drifted from registry/model.py: run python scripts/gen_schema.py"


def test_gen_schema_check_mode():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_schema.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_fixtures_and_legacy_satisfy_the_schema(legacy_registry_path):
    for path in (VALID, LEGACY_QUIRKS, legacy_registry_path):
        assert schema_findings(json.loads(path.read_text(encoding="utf-8"))) == [], path


def test_schema_errors_carry_json_paths():
    doc = valid_doc()
    doc["models"][3]["recommended_settings"]["overlap"] = "0.5"
    doc["models"][1]["capabilities"]["roles"] = ["separation", "remix"]
    doc["models"][0]["runtime"]["allowed"] = "stemsep-legacy"
    found = {f.path: f for f in schema_findings(doc)}
    assert set(found) == {"$.models[3].recommended_settings.overlap", "$.models[1].capabilities.roles[1]",
                          "$.models[0].runtime.allowed"}
    assert found["$.models[1].capabilities.roles[1]"].model_id == "bs-roformer-viperx-1297"
    assert "'remix'" in found["$.models[1].capabilities.roles[1]"].message


def test_schema_keeps_extra_keys_and_nulls():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    entry = schema["$defs"]["ModelEntry"]
    assert entry.get("additionalProperties", True) is True
    assert {"type": "null"} in entry["properties"]["requirements"]["anyOf"]
