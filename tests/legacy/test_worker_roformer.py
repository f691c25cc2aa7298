"""Our Roformer through the real worker: a `separate` job for a `bs_roformer` model in the
stemsep-legacy torch env, as the host sends it. Stems, residual, progress, cancel and errors."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from envmgr.config import load_config
from envmgr.worker_client import JobFailed, Timeouts, WorkerClient
from envmgr.worker_code import ensure_worker_code
from tests.legacy.conftest import DEMO_MIX, ours_ok, run_ours

pytestmark = pytest.mark.envs  # builds real uv envs (stemsep-legacy torch, msst 0.1.0)


@pytest.fixture(scope="module")
def client(legacy_python: Path) -> Any:
    code = ensure_worker_code(load_config().cache_dir)
    worker = WorkerClient(legacy_python, "stemsep-legacy", code, timeouts=Timeouts(silence=120.0, exit_grace=5.0))
    ready = worker.start()
    assert "torch" in ready["versions"]
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def wav(workdir: Path) -> Path:
    audio, rate = sf.read(DEMO_MIX, dtype="float32", always_2d=True)
    path = workdir / "demo2s.wav"
    sf.write(path, audio[3 * rate: 5 * rate], rate, subtype="FLOAT")
    return path


def job(tiny_bs: tuple[Path, Path], wav: Path, out: Path, settings: dict[str, Any] | None = None,
        unsafe_pickle: bool = False) -> dict[str, Any]:
    config, ckpt = tiny_bs
    model = {"id": "tiny-bs-roformer", "runtime": {"allowed": ["stemsep-legacy"], "model_type": "bs_roformer"},
             "artifacts": {"primary": {"kind": "checkpoint", "filename": ckpt.name, "unsafe_pickle": unsafe_pickle},
                           "config": {"kind": "config", "filename": config.name}},
             "capabilities": {"stems": ["vocals", "instrumental"]}}
    return {"job": uuid.uuid4().hex[:12], "model": model, "artifacts": {ckpt.name: str(ckpt), config.name: str(config)},
            "settings": settings or {}, "input": str(wav), "output_dir": str(out), "output_format": "wav",
            "output_names": {s: f"demo_({s}).wav" for s in ("vocals", "instrumental")},
            "output_template": "demo_({stem}).wav"}


def test_worker_separates_with_our_roformer(client, tiny_bs, wav, legacy_python, tmp_path):
    events: list[dict[str, Any]] = []
    settings = {"inference": {"num_overlap": 4, "batch_size": 3}}
    result = client.run(job(tiny_bs, wav, tmp_path / "out", settings), events.append)
    files = {s["name"]: Path(s["path"]) for s in result["stems"]}
    assert sorted(files) == ["instrumental", "vocals"]
    vocals, rate = sf.read(files["vocals"], dtype="float32", always_2d=True)
    instrumental, _ = sf.read(files["instrumental"], dtype="float32", always_2d=True)
    mix, _ = sf.read(wav, dtype="float32", always_2d=True)
    assert rate == 44100 and vocals.shape == mix.shape
    np.testing.assert_allclose(vocals + instrumental, mix, atol=1e-6)  # the residual stem
    # The same as our command line with the same native settings.
    np.save(tmp_path / "mix.npy", mix)
    cli = ours_ok(run_ours(legacy_python, *tiny_bs, tmp_path / "mix.npy", tmp_path / "cli", "--num-overlap", "4",
                           "--batch-size", "3"))
    assert float(np.abs(cli["vocals"] - vocals).max()) == 0.0
    steps = [(e["done"], e["total"]) for e in events if e.get("type") == "progress" and e.get("stage") == "separate"]
    assert steps and steps[-1][0] == steps[-1][1] and [d for d, _ in steps] == sorted(d for d, _ in steps)


def test_bad_native_settings_fail_the_job_cleanly(client, tiny_bs, wav, tmp_path):
    with pytest.raises(JobFailed) as err:
        client.run(job(tiny_bs, wav, tmp_path / "out", {"chunk_size": 3, "num_overlap": 4}))
    assert err.value.code == "E_MODEL_LOAD" and "num_overlap 4 exceeds chunk_size 3" in err.value.message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
