"""registry/recipes.schema.json is generated from the typed recipe model (scripts/gen_schema.py), and the
packaged recipes satisfy it as jsonschema applies it."""

from __future__ import annotations

import json
import sys

import jsonschema

from registry.recipes.loader import PACKAGED_RECIPES, SCHEMA_PATH
from tests.conftest import REPO


def test_committed_schema_matches_the_model() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from gen_schema import render_recipe_schema
    finally:
        sys.path.pop(0)
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_recipe_schema(), \
        "registry/recipes.schema.json drifted from registry/recipes/model.py: run python scripts/gen_schema.py"


def test_packaged_recipes_satisfy_the_schema_and_it_rejects_a_bad_step() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    data = json.loads(PACKAGED_RECIPES.read_text(encoding="utf-8"))
    assert not list(validator.iter_errors(data))
    data["recipes"][0]["steps"][0]["op"] = "reverse"
    assert list(validator.iter_errors(data))
    data["recipes"][0]["steps"][0].update(op="invert", inputs=["mix"])  # invert takes [mix, stem]
    assert list(validator.iter_errors(data))
