"""Fixtures of the registry tests: fixture registries and a real `stemsep` process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import run_cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "registry"
VALID = FIXTURES / "valid.json"
LEGACY_QUIRKS = FIXTURES / "legacy_quirks.json"


def stemsep(*args: str, registry: Path | None = VALID, home: Path | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a fresh process. `registry` replaces the packaged registry (STEMSEP_REGISTRY)."""
    overrides = {}
    if registry is not None:
        overrides["STEMSEP_REGISTRY"] = str(registry)
    if home is not None:
        overrides["STEMSEP_HOME"] = str(home)
    overrides.update(env or {})
    overrides["COLUMNS"] = "200"  # rich wraps at 80 columns when stdout is not a terminal
    return run_cli(*args, env=overrides, unset=["STEMSEP_REGISTRY"], timeout=120)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def write_registry(tmp_path: Path):
    """Write a registry document to a file and return its path."""
    counter = iter(range(1000))

    def write(doc, name: str | None = None) -> Path:
        path = tmp_path / (name or f"registry-{next(counter)}.json")
        path.write_text(json.dumps(doc, indent=2) if not isinstance(doc, str) else doc, encoding="utf-8")
        return path
    return write
