"""Fixtures for the env manager's tests: real uv envs built from small PyPI packages (and the local torch
wheel named by the machine config), each in a store of its own where isolation matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envmgr.config import load_config
from registry.model import ModelEntry
from tests.support.cli import run_cli

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# The light env every cheap test shares: stemsep-legacy without torch (numpy + soundfile).
LIGHT = {"requirements": {"torch": {"required": False}}}


def entry(model_id: str = "m", **fields) -> ModelEntry:
    return ModelEntry.model_validate({"id": model_id, **fields})


def light_entry(model_id: str = "light", packages: list[str] | None = None, **requirements) -> ModelEntry:
    """A stemsep-legacy model without torch; `requirements` adds e.g. python={"min": ...}."""
    reqs = {"torch": {"required": False}, "pip": {"packages": packages or []}, **requirements}
    return entry(model_id, runtime={"allowed": ["stemsep-legacy"]}, requirements=reqs)


@pytest.fixture
def store_config(tmp_path: Path):
    """A config whose env store and build log are private to the test (locks and the uv cache stay shared)."""
    def make(**overrides):
        overrides.setdefault("env_store", tmp_path / "envs")
        overrides.setdefault("log_dir", tmp_path / "logs")
        return load_config(**overrides)
    return make


@pytest.fixture(scope="session")
def torch_machine() -> dict[str, str]:
    """The machine config that gives envs the local CPU torch wheel; skip where the machine has none."""
    if not os.environ.get("STEMSEP_FIND_LINKS") or "torch" not in os.environ.get("STEMSEP_OVERRIDES", ""):
        pytest.skip("no local torch wheel configured (STEMSEP_FIND_LINKS / STEMSEP_OVERRIDES; .ci/run sets them)")
    return {k: v for k, v in os.environ.items() if k.startswith("STEMSEP_")}


cli = run_cli  # the real `stemsep` in a child process, run from the repo root


def write_registry(path: Path, *models: ModelEntry, default: str | None = None) -> Path:
    data = {"schema_version": "1", "default_model": default,
            "models": [m.model_dump(mode="json", exclude_none=True) for m in models]}
    path.write_text(json.dumps(data))
    return path


def spawn_ensure(request_json: str, env_store: Path, pause_at: str | None = None, **popen) -> subprocess.Popen:
    """A child process that calls EnvManager.ensure (see ensure_child.py), optionally stopping at a stage."""
    cmd = [sys.executable, str(HERE / "ensure_child.py"), request_json, str(env_store)]
    if pause_at:
        cmd.append(pause_at)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True, **popen)
