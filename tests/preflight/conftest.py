"""Fixtures of the preflight tests: real audio files, a registry with test models (packaged registry +
a user overlay, through the real loader), a model store and state dir per test, the light
stemsep-legacy env built once per session with uv, and every report checked against its JSON Schema."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from tests.artifacts.httpserver import FileServer

DSP = {
    "name": "test model", "architecture": "DSP", "type": "test",
    "runtime": {"allowed": ["stemsep-legacy"], "preferred": "stemsep-legacy", "model_type": "dsp_center_split"},
    "requirements": {"torch": {"required": False}},
    "capabilities": {"stems": ["vocals", "instrumental"], "roles": ["separation"], "supports_mono": True,
                     "supports_stereo": True},
}
STEPS = ["Copy the model's weights into the models folder by hand", "Edit the YAML's chunk_size by hand"]
CODE = b"class Net:\n    pass\n"
CODE_SHA = __import__("hashlib").sha256(CODE).hexdigest()


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def dsp(model_id: str, **fields: Any) -> dict[str, Any]:
    """A registry entry the DSP worker runs (stemsep-legacy, no torch), with `fields` merged in."""
    return merged({"id": model_id, **DSP}, fields)


TEST_MODELS = [
    dsp("pf-dsp"),
    dsp("pf-stereo-only", capabilities={"supports_mono": False}),
    dsp("pf-mono-only", capabilities={"supports_stereo": False}),
    dsp("pf-steps", requirements={"manual_steps": STEPS}),
    dsp("pf-steps-automated", runtime={"model_type": "pf_code_type"},
        requirements={"manual_steps": [{"text": "Replace models/net.py by hand", "automated_by": "pf_net.py"}]},
        artifacts={"additional": [{"kind": "code", "filename": "pf_net.py", "model_type": "pf_code_type",
                                   "class_name": "Net", "sha256": CODE_SHA,
                                   "url": "http://127.0.0.1:9/pf_net.py"}]}),
    dsp("pf-catalog", runtime={"allowed": [], "preferred": None, "catalog_only": True,
                               "blocking_reason": "every runtime: test model that nothing can run"}),
    dsp("pf-unbuilt", requirements={"pip": {"packages": ["six"]}}),
    dsp("pf-conflict", requirements={"pip": {"packages": ["six==0.0.1"]}}),
    dsp("pf-python2", requirements={"python": {"min": "2.6", "max": "2.7"}}),
    dsp("pf-cuda-only", requirements={"torch": {"required": None, "cuda": ["cu126"]}}),
]


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"])))


@pytest.fixture(scope="session")
def test_registry_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("registries") / "preflight-test-models.json"
    path.write_text(json.dumps({"schema_version": "1", "models": TEST_MODELS}))
    return path


@pytest.fixture(scope="session")
def registry(test_registry_file: Path) -> Any:
    """The packaged registry plus the test models, read by the real loader (overlays in compat mode)."""
    from registry.loader import load_registry

    return load_registry(overlays=[test_registry_file])


def load_with(tmp_path: Path, *models: dict[str, Any], default: str | None = None) -> Any:
    """The packaged registry plus `models` (for tests whose models need per-test URLs)."""
    from registry.loader import load_registry

    path = tmp_path / f"overlay-{len(list(tmp_path.glob('overlay-*.json')))}.json"
    data: dict[str, Any] = {"schema_version": "1", "models": list(models)}
    if default:
        data["default_model"] = default
    path.write_text(json.dumps(data))
    return load_registry(overlays=[path])


@pytest.fixture(scope="session")
def light_env(stemsep_home: Path) -> Any:
    """The stemsep-legacy env without torch (numpy + soundfile) every DSP test model runs in: real, uv-built."""
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from registry.model import ModelEntry

    manager = EnvManager()
    return manager.ensure(request_for_model(ModelEntry.model_validate(dsp("pf-dsp")), "stemsep-legacy",
                                            manager.config))


@pytest.fixture
def config(tmp_path: Path, stemsep_home: Path) -> Any:
    """The session's env store and caches, with a model store and state dir of the test's own."""
    from envmgr.config import load_config

    return load_config(model_store=tmp_path / "models", state_dir=tmp_path / "state")


@pytest.fixture(scope="session")
def schema_validator() -> jsonschema.Draft202012Validator:
    from envmgr.preflight.run import load_schema

    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


Run = Callable[..., Any]


@pytest.fixture
def run(config: Any, registry: Any, schema_validator: jsonschema.Draft202012Validator) -> Run:
    """run(inputs, model, **request and job option fields) -> Preflight; every report is validated against the
    schema."""
    from dataclasses import fields as fields_of

    from envmgr.preflight.options import JobOptions
    from envmgr.preflight.run import PreflightRequest, run_preflight

    def call(inputs: list[Path], model: str | None = None, *, registry_: Any = None, config_: Any = None,
             **fields: Any) -> Any:
        options = JobOptions(**{f.name: fields.pop(f.name) for f in fields_of(JobOptions) if f.name in fields})
        result = run_preflight(PreflightRequest(inputs=inputs, model_id=model, options=options, **fields),
                               config=config_ or config, registry=registry_ if registry_ is not None else registry)
        errors = sorted(schema_validator.iter_errors(result.report), key=str)
        assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]]
        json.dumps(result.report)  # JSON-ready
        return result
    return call


def codes(result: Any) -> set[str]:
    return {f["code"] for f in result.report["errors"] + result.report["warnings"]}


def write_audio(path: Path, seconds: float = 0.5, rate: int = 44100, channels: int = 2,
                subtype: str = "PCM_16") -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone * (1 + 0.1 * c) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype)
    return path


@pytest.fixture
def song(tmp_path: Path) -> Path:
    return write_audio(tmp_path / "song.wav")


@pytest.fixture
def server() -> Iterator[FileServer]:
    srv = FileServer().start()
    yield srv
    srv.stop()
