"""Recipe tests: recipe files written for the test, validated by the real `stemsep` CLI in a home of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli


def recipe(*steps: dict[str, Any], outputs: dict[str, str], recipe_id: str = "test_recipe") -> dict[str, Any]:
    return {"id": recipe_id, "steps": list(steps), "outputs": outputs}


def sep(step_id: str, model: str, source: str = "mix", **params: Any) -> dict[str, Any]:
    return {"id": step_id, "op": "separate", "inputs": [source], "params": {"model": model, **params}}


def write_recipes(path: Path, *recipes: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema_version": 1, "recipes": list(recipes)}), encoding="utf-8")
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A STEMSEP_HOME of the test's own (its config dir holds the user's recipes)."""
    return tmp_path / "home"


@pytest.fixture
def stemsep(home: Path) -> Any:
    def call(*args: Any) -> Any:
        return run_cli(*args, env={"STEMSEP_HOME": str(home), "COLUMNS": "200"}, unset=("STEMSEP_REGISTRY",))
    return call


@pytest.fixture
def user_recipes(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `stemsep` reads the user's recipes in this home (asked of envmgr.config, as the CLI asks it)."""
    from envmgr.config import config_dir

    monkeypatch.setenv("STEMSEP_HOME", str(home))
    return config_dir() / "recipes"
