"""`stemsep run` end to end through the real CLI: one recipe with a `separate` step on each of the three runtimes
(the same tiny real-architecture BS-Roformer checkpoint, served by a local HTTP server through a user registry
overlay, as tests/runtimes/test_side_by_side.py serves it), an ensemble, a Phase Fix whose donor model is a valid
reference, and a last high-pass step. A second run with only the last step changed runs only that step: every
other step is a cache hit (the `step_input` events say so) and no model worker starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from envmgr.worker.process import TEST_HOOK_ENV
from tests.recipes.conftest import sep, write_recipes
from tests.runtimes.conftest import (  # noqa: F401 (fixtures)
    demo_clip,
    model_entry,
    msst_env,
    network_log,
    runtime_env,
    single_threaded_torch,
    tiny_bs,
    workdir,
)
from tests.runtimes.test_side_by_side import CLOSED_PORT_PROXY, served, server  # noqa: F401 (fixture)
from tests.support.cli import home_sharing_session_envs, json_events, run_cli, write_user_registry

pytestmark = [pytest.mark.envs, pytest.mark.slow]

RUNTIME_MODELS = {"rt-msst": "msst", "rt-audio-separator": "audio-separator", "rt-legacy": "stemsep-legacy"}


def entries(server: Any, tiny: tuple[Path, Path]) -> list[dict[str, Any]]:
    config, ckpt = tiny
    out = []
    for model_id, runtime in RUNTIME_MODELS.items():
        entry = model_entry(model_id, [runtime])
        entry["artifacts"] = {"primary": served(server, model_id, ckpt, "checkpoint"),
                              "config": served(server, model_id, config, "config")}
        if runtime == "stemsep-legacy":  # our Roformer needs torch; this one is the Phase Fix reference
            entry["requirements"]["torch"] = {"required": True}
            entry["capabilities"]["roles"].append("phase_fix_reference")
            entry["phase_fix"] = {"is_valid_reference": True,
                                  "recommended_params": {"lowHz": 500, "highHz": 5000, "highFreqWeight": 2.0}}
        out.append(entry)
    return out


def chain(cutoff_hz: float) -> dict[str, Any]:
    return {"id": "three_runtimes", "steps": [
        sep("a", "rt-msst"), sep("b", "rt-audio-separator"), sep("c", "rt-legacy"),
        {"id": "ens", "op": "ensemble", "inputs": ["a.vocals", "b.vocals"], "params": {"algorithm": "max_fft"}},
        {"id": "fix", "op": "phase_fix", "inputs": ["a.other", "c.other"]},
        {"id": "hp", "op": "high_pass", "inputs": ["fix.other"], "params": {"cutoff_hz": cutoff_hz}}],
        "outputs": {"vocals": "ens.vocals", "other": "hp.other"}}


@pytest.fixture(scope="module")
def stemsep(tmp_path_factory: pytest.TempPathFactory, network_log: Path, server: Any,  # noqa: F811
            tiny_bs: tuple[Path, Path]) -> Any:  # noqa: F811
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_ops

    for runtime in RUNTIME_MODELS.values():  # built here, where the package index is reachable; the CLI has none
        runtime_env(runtime)
    EnvManager().ensure(request_for_ops())
    home = tmp_path_factory.mktemp("run-home")
    write_user_registry(home, "runtimes", entries(server, tiny_bs))
    env = {**home_sharing_session_envs(home), "HTTP_PROXY": CLOSED_PORT_PROXY, "HTTPS_PROXY": CLOSED_PORT_PROXY,
           "ALL_PROXY": CLOSED_PORT_PROXY, "NO_PROXY": "127.0.0.1,localhost", TEST_HOOK_ENV: os.environ[TEST_HOOK_ENV]}

    def call(*args: Any) -> Any:
        return run_cli(*args, env=env, timeout=1800)
    return call


def test_three_runtimes_ensemble_and_phase_fix_then_only_the_changed_step(stemsep: Any, tmp_path: Path) -> None:
    clip = demo_clip(tmp_path / "song.wav", 2.0)
    out = tmp_path / "out"
    first = stemsep("run", write_recipes(tmp_path / "r1.json", chain(100.0)), clip, "-o", out, "--json")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    events = json_events(first.stdout)
    report = events[0]["report"]
    assert report["can_proceed"] and [s["id"] for s in report["steps"]] == ["a", "b", "c", "ens", "fix", "hp"]
    fix = next(s for s in report["steps"] if s["id"] == "fix")
    assert fix["phase_fix"]["op_params"] == {"curve": "colab", "low_hz": 500, "high_hz": 5000, "weight": 2.0}
    steps = [e for e in events if e["type"] == "step"]
    assert [(e["step"], e["index"], e["total"], e["model"]) for e in steps] == [
        ("a", 1, 6, "rt-msst"), ("b", 2, 6, "rt-audio-separator"), ("c", 3, 6, "rt-legacy"),
        ("ens", 4, 6, None), ("fix", 5, 6, None), ("hp", 6, 6, None)]
    assert not any(e["cached"] for e in events if e["type"] == "step_input")
    workers = [e for e in events if e["type"] == "worker"]
    assert len(workers) == 4  # one per model env, one for the ops (light stemsep-legacy env)
    outputs = {e["name"]: Path(e["path"]) for e in events if e["type"] == "output"}
    assert outputs == {"vocals": out / "song_(vocals)_three_runtimes.wav", "other": out / "song_(other)_three_runtimes.wav"}
    for path in outputs.values():
        info = sf.info(str(path))
        assert info.samplerate == 44100 and info.channels == 2 and info.frames == 88200
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # the job folder is gone
    before = outputs["vocals"].read_bytes()

    second = stemsep("run", write_recipes(tmp_path / "r2.json", chain(150.0)), clip, "-o", out, "--json")
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    events = json_events(second.stdout)
    cached = {e["step"]: e["cached"] for e in events if e["type"] == "step_input"}
    assert cached == {"a": True, "b": True, "c": True, "ens": True, "fix": True, "hp": False}
    assert [e["step"] for e in events if e["type"] == "job"] == ["hp"]  # the only step that ran
    assert len([e for e in events if e["type"] == "worker"]) == 1  # the ops worker; no model was loaded
    assert outputs["vocals"].read_bytes() == before
