"""Artifacts and pip requirements scoped to the runtimes that use them (`runtimes` on an artifact and on
`requirements.pip`): a model msst runs from its own unpinned code file and stemsep-legacy runs with its own
implementation (unwa's HyperACE and FNO Roformers) needs no code trust and fetches no code file on stemsep-legacy,
while msst still judges and fetches it; neuraloperator, which only the msst code file imports, stays out of the
legacy env. Real files through a local HTTP server, the real preflight, store and CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.preflight.conftest import codes, load_with
from tests.support.cli import run_cli

CODE = b"class BSRoformer:\n    pass\n"
WEIGHTS = b"weights " * 64
LEGACY, MSST = "stemsep-legacy", "msst"


def scoped_model(server: Any, model_id: str = "pf-scoped") -> dict[str, Any]:
    """A HyperACE-like entry: both runtimes allowed, stemsep-legacy preferred; the code file only msst imports is
    unpinned and scoped to msst, and so is its pip requirement."""
    return {
        "id": model_id, "name": "scoped test model", "architecture": "BS-Roformer", "type": "test",
        "runtime": {"allowed": [MSST, LEGACY], "preferred": LEGACY, "model_type": "bs_roformer_hyperace"},
        "requirements": {"pip": {"packages": ["neuraloperator==1.0.2"], "runtimes": [MSST]},
                         "manual_steps": [{"text": "MSST by hand: replace models/bs_roformer.py",
                                           "automated_by": "bs_roformer_hyperace.py"}]},
        "capabilities": {"stems": ["vocals", "instrumental"], "roles": ["separation"], "supports_stereo": True},
        "artifacts": {
            "primary": {"kind": "checkpoint", "filename": "w.ckpt", "url": server.file(f"/{model_id}/w.ckpt", WEIGHTS)},
            "config": {"kind": "config", "filename": "c.yaml", "url": server.file(f"/{model_id}/c.yaml", b"model: {}\n")},
            "additional": [{"kind": "code", "filename": "bs_roformer_hyperace.py", "model_type": "bs_roformer_hyperace",
                            "class_name": "BSRoformer", "runtimes": [MSST],
                            "url": server.file(f"/{model_id}/bs_roformer_hyperace.py", CODE)}]},
    }


def _artifact_rows(result: Any) -> list[str]:
    return [row["filename"] for row in result.report["resolved"]["requirements_status"]["artifacts"]]


def test_preflight_judges_the_code_file_and_its_steps_only_on_the_runtime_that_imports_it(tmp_path: Path, run: Any,
                                                                            server: Any) -> None:
    registry = load_with(tmp_path, scoped_model(server))
    # No inputs: preflight stops before resolving an env, and still judges every artifact of the runtime.
    legacy = run([], "pf-scoped", registry_=registry, runtime=LEGACY)
    assert "E_CODE_UNTRUSTED" not in codes(legacy)
    assert sorted(_artifact_rows(legacy)) == ["c.yaml", "w.ckpt"]
    assert legacy.report["resolved"]["requirements_status"]["manual_steps"] == []  # msst's step, not legacy's
    msst = run([], "pf-scoped", registry_=registry, runtime=MSST)
    assert "E_CODE_UNTRUSTED" in codes(msst)
    assert sorted(_artifact_rows(msst)) == ["bs_roformer_hyperace.py", "c.yaml", "w.ckpt"]
    assert [r["state"] for r in msst.report["resolved"]["requirements_status"]["manual_steps"]] == ["automated"]
    preferred = run([], "pf-scoped", registry_=registry)  # no --runtime: the preferred one, stemsep-legacy
    assert preferred.report["resolved"]["runtime"]["id"] == LEGACY
    assert "E_CODE_UNTRUSTED" not in codes(preferred)


def test_the_store_fetches_only_the_runtimes_files(tmp_path: Path, config: Any, server: Any) -> None:
    from envmgr.artifacts import ArtifactStore

    entry = load_with(tmp_path, scoped_model(server)).get("pf-scoped")
    with ArtifactStore(config.model_store) as store:
        assert sorted(store.ensure(entry, runtime=LEGACY)) == ["c.yaml", "w.ckpt"]
        assert not server.hits_for("/pf-scoped/bs_roformer_hyperace.py")
        assert not (config.model_store / "pf-scoped" / "bs_roformer_hyperace.py").exists()
        assert sorted(store.ensure(entry, runtime=MSST)) == ["bs_roformer_hyperace.py", "c.yaml", "w.ckpt"]
    assert server.hits_for("/pf-scoped/bs_roformer_hyperace.py")


def test_models_download_fetches_the_chosen_runtimes_files(tmp_path: Path, server: Any, stemsep_home: Path) -> None:
    overlay = tmp_path / "overlay.json"
    overlay.write_text(json.dumps({"schema_version": "1", "models": [scoped_model(server, "pf-dl")]}))
    env = {"STEMSEP_MODEL_STORE": str(tmp_path / "models")}
    code = tmp_path / "models" / "pf-dl" / "bs_roformer_hyperace.py"
    default = run_cli("models", "download", "pf-dl", "--registry", overlay, env=env)  # the runtime `separate` would choose: stemsep-legacy
    assert default.returncode == 0, default.stderr[-2000:]
    assert (tmp_path / "models" / "pf-dl" / "w.ckpt").is_file() and not code.exists()
    msst = run_cli("models", "download", "pf-dl", "--runtime", MSST, "--registry", overlay, env=env)
    assert msst.returncode == 0, msst.stderr[-2000:]
    assert code.read_bytes() == CODE


def test_scoped_pip_requirements_reach_only_their_runtimes_env(tmp_path: Path, server: Any, config: Any) -> None:
    from envmgr.envs.request import request_for_model
    from registry.loader import load_registry

    packaged = load_registry()
    for entry in (load_with(tmp_path, scoped_model(server)).get("pf-scoped"), packaged.get("unwa-inst-fno")):
        assert "neuraloperator==1.0.2" in request_for_model(entry, MSST, config).requirements
        assert not any("neuraloperator" in r for r in request_for_model(entry, LEGACY, config).requirements)
    fno = packaged.get("unwa-inst-fno")
    assert fno.runtime.preferred == LEGACY and MSST in fno.runtime.allowed
    assert [a.runtimes for a in fno.artifacts.all() if a.kind == "code"] == [[MSST]]
