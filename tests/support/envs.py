"""Seam for tests that need a Python env with given packages (torch, msst...).

Every env it returns is a real managed env: built by envmgr's EnvManager from a uv lock, with the
machine configuration (STEMSEP_FIND_LINKS, STEMSEP_OVERRIDES, STEMSEP_TORCH_BACKEND, STEMSEP_PYTHON...)
applied, and shared between tests that ask for the same requirement set.
"""

from __future__ import annotations

from pathlib import Path

from envmgr.config import load_config
from envmgr.envs.manager import EnvManager
from envmgr.envs.request import request_for_requirements


def env_python(requirements: list[str], *, python: str | None = None) -> Path:
    """Return the interpreter of a managed env holding `requirements`, building it once per requirement set."""
    config = load_config()
    python = python or config.python
    req = request_for_requirements(requirements, runtime="test", python=python, config=config)
    return EnvManager(config).ensure(req).python
