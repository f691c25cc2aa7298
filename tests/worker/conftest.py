"""Fixtures for the worker tests: a real uv-built env of the stemsep-legacy runtime (numpy + soundfile,
built once per session through EnvManager), the content-hashed worker code, the demo mix, and a
builder of `separate` job messages."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from registry.model import ModelEntry
from tests.conftest import REPO

FAULT_HOOK = Path(__file__).with_name("fault_hook.py")
DEMO_MIX = REPO / "scripts" / "demo" / "demo_mix.flac"
DSP_MODEL = {"id": "builtin-center-split", "runtime": {"allowed": ["stemsep-legacy"], "model_type": "dsp_center_split"},
             "requirements": {"torch": {"required": False}}, "capabilities": {"stems": ["vocals", "instrumental"]}}


@pytest.fixture(scope="session")
def dsp_env(stemsep_home: Path) -> Any:
    """The light stemsep-legacy env (no torch), built by the real EnvManager with uv."""
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model

    manager = EnvManager()
    return manager.ensure(request_for_model(ModelEntry.model_validate(DSP_MODEL), "stemsep-legacy", manager.config))


@pytest.fixture(scope="session")
def worker_code(stemsep_home: Path) -> Any:
    from envmgr.config import load_config
    from envmgr.worker.code_copy import ensure_worker_code

    return ensure_worker_code(load_config().cache_dir)


def make_job(input_path: Path, output_dir: Path, *, model_type: str = "dsp_center_split",
             settings: dict[str, Any] | None = None, fmt: str = "wav") -> dict[str, Any]:
    model = {**DSP_MODEL, "runtime": {**DSP_MODEL["runtime"], "model_type": model_type}}
    stem = input_path.stem
    return {"job": uuid.uuid4().hex[:12], "model": model, "artifacts": {}, "settings": settings or {},
            "input": str(input_path), "output_dir": str(output_dir), "output_format": fmt,
            "output_names": {s: f"{stem}_({s})_test.{fmt}" for s in ("vocals", "instrumental")},
            "output_template": f"{stem}_({{stem}})_test.{fmt}"}
