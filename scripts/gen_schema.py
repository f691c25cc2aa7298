#!/usr/bin/env python3
"""Write registry/schema.json from the typed model (registry/model.py), and registry/recipes.schema.json
from the recipe model (registry/recipes/model.py).

    python scripts/gen_schema.py           # regenerate
    python scripts/gen_schema.py --check   # exit 1 when the committed file differs (the drift test does this)

The registry's schema is what `stemsep registry validate` applies with jsonschema, so its errors carry JSON paths.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from envmgr.fsutil import sync_generated  # noqa: E402
from registry.model import RegistryFile  # noqa: E402
from registry.recipes.loader import SCHEMA_PATH as RECIPE_SCHEMA_PATH, recipe_schema  # noqa: E402
from registry.validator import SCHEMA_PATH  # noqa: E402


def render_schema() -> str:
    schema = RegistryFile.model_json_schema(mode="validation")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://stemsep.invalid/registry/schema.json",
        "title": "StemSep Runtime model registry",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_recipe_schema() -> str:
    return json.dumps(recipe_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when out of date")
    args = parser.parse_args(argv)
    return sync_generated([(SCHEMA_PATH, render_schema()), (RECIPE_SCHEMA_PATH, render_recipe_schema())],
                          check=args.check, command="python scripts/gen_schema.py")


if __name__ == "__main__":
    sys.exit(main())
