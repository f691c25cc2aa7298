"""The env part of preflight against real uv-built envs: the model's pip requirements are checked with the
env's own interpreter (a package the host has but the env lacks is missing), an env that does not
exist is reported and not built, and a model whose env exists and whose files are present passes."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.preflight.conftest import dsp, load_with

HOST_PACKAGE = "filelock"  # a host dependency of stemsep, so the host always has it


@pytest.fixture
def private_config(tmp_path: Path) -> Any:
    """An env store of the test's own: the env below is changed by the test, nobody else may use it."""
    from envmgr.config import load_config

    return load_config(env_store=tmp_path / "envs", model_store=tmp_path / "models", state_dir=tmp_path / "state")


def _uv_pip(config: Any, python: Path, *args: str) -> None:
    from envmgr.envs.uvtool import find_uv, uv_env

    uv = find_uv(config)
    if uv is None:
        pytest.skip("uv is not available")
    subprocess.run([uv, "pip", *args, "--python", str(python)], check=True, capture_output=True,
                   env=uv_env(config), timeout=300)


def test_pip_requirement_is_probed_inside_the_env(tmp_path: Path, run: Any, private_config: Any, song: Path) -> None:
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model

    registry = load_with(tmp_path, dsp("pf-pip", requirements={"pip": {"packages": [f"{HOST_PACKAGE}>=3.12"]}}))
    entry = registry.get("pf-pip")
    env = EnvManager(private_config).ensure(request_for_model(entry, "stemsep-legacy", private_config))

    def pip_row() -> tuple[dict[str, Any], set[str]]:
        result = run([song], "pf-pip", registry_=registry, config_=private_config)
        codes = {e["code"] for e in result.report["errors"]}
        return result.report["resolved"]["requirements_status"]["pip"][0], codes

    row, codes = pip_row()
    assert row["state"] == "satisfied" and row["seen_in"] == "env" and row["version"] == env.versions[HOST_PACKAGE]
    assert not codes

    _uv_pip(private_config, env.python, "uninstall", HOST_PACKAGE)
    importlib.metadata.version(HOST_PACKAGE)  # the host still has it: only a probe run by the env can miss it
    row, codes = pip_row()
    assert (row["state"], row["version"]) == ("missing", None) and "E_PIP_MISSING" in codes

    _uv_pip(private_config, env.python, "install", f"{HOST_PACKAGE}==3.11.0")
    row, codes = pip_row()
    assert (row["state"], row["version"]) == ("wrong_version", "3.11.0") and "E_PIP_VERSION" in codes


def test_missing_env_is_reported_not_built(tmp_path: Path, run: Any, private_config: Any, song: Path) -> None:
    result = run([song], "pf-unbuilt", config_=private_config)
    status = result.report["resolved"]["requirements_status"]
    assert status["env"]["state"] == "needs_build" and result.can_proceed
    assert status["pip"] == [{"requirement": "six", "state": "to_install", "version": status["pip"][0]["version"],
                              "seen_in": "lock"}] and status["pip"][0]["version"]
    assert status["python"]["seen_in"] == "interpreter" and status["python"]["version"].startswith("3.")
    assert not (tmp_path / "envs").exists() or not any(p for p in (tmp_path / "envs").iterdir()
                                                          if not p.name.startswith("."))


def test_ready_env_with_present_artifacts_passes(tmp_path: Path, run: Any, config: Any, song: Path,
                                                 light_env: Any) -> None:
    """The speed benchmark's situation: env built, files in the store; no network, nothing written."""
    import hashlib

    from envmgr.artifacts import ArtifactStore

    data = b"a small config\n"
    model = dsp("pf-files", artifacts={"additional": [{"kind": "other", "filename": "cfg.txt",
                                                       "sha256": hashlib.sha256(data).hexdigest()}]})
    registry = load_with(tmp_path, model)
    (tmp_path / "cfg.txt").write_bytes(data)
    with ArtifactStore(config.model_store) as store:
        entry = registry.get("pf-files")
        store.import_file(entry, entry.artifacts.additional[0], tmp_path / "cfg.txt", copy=True)
    result = run([song], "pf-files", registry_=registry)
    report = result.report
    assert report["can_proceed"] and report["errors"] == [] and report["warnings"] == []
    status = report["resolved"]["requirements_status"]
    assert status["env"]["state"] == "ready" and status["env"]["id"] == light_env.id
    assert status["artifacts"][0]["state"] == "present" and status["artifacts"][0]["action"] == "none"
    assert report["resolved"]["runtime"] == {"id": "stemsep-legacy", "reason": "preferred",
                                             "why": "the registry's preferred runtime for this model",
                                             "allowed": ["stemsep-legacy"], "blocking_reason": None,
                                             "in_allowed": True}
