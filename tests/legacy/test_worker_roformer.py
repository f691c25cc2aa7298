"""Our Roformer through the real worker: a `separate` job for a `bs_roformer` model in the
stemsep-legacy torch env, as the host sends it. The worker path streams (input file -> stem files
in the staging dir): stems equal the in-memory result, the residual stem, FLAC output, mono input,
bad input caught before inference, cancel, and memory that does not grow with the track's length."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from envmgr.config import load_config
from envmgr.worker.client import Cancelled, JobFailed, Timeouts, WorkerClient
from envmgr.worker.code_copy import ensure_worker_code
from tests.legacy.conftest import DEMO_MIX, ours_ok, run_ours

pytestmark = pytest.mark.envs  # builds real uv envs (stemsep-legacy torch, msst 0.1.0)


@pytest.fixture(scope="module")
def client(legacy_python: Path) -> Any:
    worker = start_worker(legacy_python)
    assert worker.ready and "torch" in worker.ready["versions"]
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def wav(workdir: Path) -> Path:
    audio, rate = sf.read(DEMO_MIX, dtype="float32", always_2d=True)
    path = workdir / "demo2s.wav"
    sf.write(path, audio[3 * rate: 5 * rate], rate, subtype="FLOAT")
    return path


def start_worker(legacy_python: Path) -> WorkerClient:
    worker = WorkerClient(legacy_python, "stemsep-legacy", ensure_worker_code(load_config().cache_dir),
                          timeouts=Timeouts(silence=120.0, exit_grace=5.0))
    worker.start()
    return worker


def job(tiny_bs: tuple[Path, Path], wav: Path, out: Path, settings: dict[str, Any] | None = None,
        unsafe_pickle: bool = False, output_format: str = "wav") -> dict[str, Any]:
    config, ckpt = tiny_bs
    model = {"id": "tiny-bs-roformer", "runtime": {"allowed": ["stemsep-legacy"], "model_type": "bs_roformer"},
             "artifacts": {"primary": {"kind": "checkpoint", "filename": ckpt.name, "unsafe_pickle": unsafe_pickle},
                           "config": {"kind": "config", "filename": config.name}},
             "capabilities": {"stems": ["vocals", "instrumental"]}}
    return {"job": uuid.uuid4().hex[:12], "model": model, "artifacts": {ckpt.name: str(ckpt), config.name: str(config)},
            "settings": settings or {}, "input": str(wav), "output_dir": str(out), "output_format": output_format,
            "output_names": {s: f"demo_({s}).{output_format}" for s in ("vocals", "instrumental")},
            "output_template": f"demo_({{stem}}).{output_format}"}


def write_wav(path: Path, audio: np.ndarray, rate: int = 44100) -> Path:
    sf.write(path, audio, rate, subtype="FLOAT")
    return path


def read(path: Path | str) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0]


def stems_of(result: dict[str, Any]) -> dict[str, np.ndarray]:
    return {s["name"]: read(s["path"]) for s in result["stems"]}


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), read while it is alive."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


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
    stages = [e["stage"] for e in events if e.get("type") == "progress"]
    assert stages.index("read") < stages.index("separate") < stages.index("write")
    assert not list((tmp_path / "out").glob(".stemsep-*")), "the staging dir was left behind"


def test_bad_native_settings_fail_the_job_cleanly(client, tiny_bs, wav, tmp_path):
    with pytest.raises(JobFailed) as err:
        client.run(job(tiny_bs, wav, tmp_path / "out", {"chunk_size": 3, "num_overlap": 4}))
    assert err.value.code == "E_MODEL_LOAD" and "num_overlap 4 exceeds chunk_size 3" in err.value.message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_flac_output_is_24_bit_and_clipping_is_reported(client, tiny_bs, wav, tmp_path):
    """A mix with peaks above full scale: float WAV keeps them, FLAC (integers) clips them and says so."""
    loud = write_wav(tmp_path / "loud.wav", 3.0 * read(wav))
    as_wav = stems_of(client.run(job(tiny_bs, loud, tmp_path / "wav")))
    assert np.abs(as_wav["instrumental"]).max() > 1.0
    result = client.run(job(tiny_bs, loud, tmp_path / "flac", output_format="flac"))
    infos = {s["name"]: s for s in result["stems"]}
    assert {i["format"] for i in infos.values()} == {"FLAC"} and {i["subtype"] for i in infos.values()} == {"PCM_24"}
    assert all(Path(i["path"]).name == f"demo_({name}).flac" for name, i in infos.items())
    assert any("instrumental" in w and "clipped for FLAC" in w for w in result["warnings"]), result["warnings"]
    for name, audio in stems_of(result).items():
        np.testing.assert_allclose(audio, np.clip(as_wav[name], -1.0, 1.0), atol=2.0 ** -22)


def test_mono_input_gives_mono_stems_and_residual(client, tiny_bs, wav, tmp_path):
    mono = write_wav(tmp_path / "mono.wav", read(wav)[:, :1])
    stems = stems_of(client.run(job(tiny_bs, mono, tmp_path / "out")))
    assert {a.shape for a in stems.values()} == {read(mono).shape}
    np.testing.assert_allclose(stems["vocals"] + stems["instrumental"], read(mono), atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 48000, 192000])
def test_input_at_another_rate_is_resampled_to_the_models(client, tiny_bs, tmp_path, rate):
    """Preflight says such inputs are resampled (W_RESAMPLE) on every runtime; the worker does it: a 440 Hz tone at
    `rate` comes back as the same tone at the model's 44.1 kHz (the stems sum to the resampled mix), with a
    warning, and the resampled copy is gone with the staging dir."""
    seconds = 0.5
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    src = write_wav(tmp_path / f"tone-{rate}.wav", np.stack([tone, -tone], axis=1), rate)
    result = client.run(job(tiny_bs, src, tmp_path / "out"))
    stems = stems_of(result)
    assert {s["sample_rate"] for s in result["stems"]} == {44100}
    mix = stems["vocals"] + stems["instrumental"]
    assert abs(len(mix) - seconds * 44100) <= 1
    expected = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(len(mix)) / 44100)
    inner = slice(2000, len(mix) - 2000)  # away from the filter's edges
    np.testing.assert_allclose(mix[inner, 0], expected[inner], atol=2e-3)
    np.testing.assert_allclose(mix[inner, 1], -expected[inner], atol=2e-3)
    assert any(f"is {rate} Hz; resampled to the model's 44100 Hz" in w for w in result["warnings"]), result["warnings"]
    assert not list((tmp_path / "out").glob(".stemsep-*"))


def test_non_finite_input_fails_before_inference_and_writes_nothing(client, tiny_bs, wav, tmp_path):
    audio = read(wav)
    audio[44100 + 7, 1] = np.nan
    audio[60000, 0] = np.inf
    events: list[dict[str, Any]] = []
    with pytest.raises(JobFailed) as err:
        client.run(job(tiny_bs, write_wav(tmp_path / "nan.wav", audio), tmp_path / "out"), events.append)
    assert err.value.code == "E_INPUT_NONFINITE" and "2 NaN or infinite samples (first at 1.000 s)" in err.value.message
    assert not [e for e in events if e.get("stage") == "separate"], "inference started on a broken input"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_cancel_stops_the_stream_between_batches_and_leaves_nothing(client, tiny_bs, wav, tmp_path, host_stop_signals):
    long = write_wav(tmp_path / "long.wav", np.tile(read(wav), (3, 1)))
    seen: list[tuple[float, float]] = []

    def ctrl_c(event: dict[str, Any]) -> None:
        if event.get("type") == "progress" and event["stage"] == "separate":
            seen.append((event["done"], event["total"]))
            if len(seen) == 1:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does to the host

    with pytest.raises(Cancelled):
        client.run(job(tiny_bs, long, tmp_path / "cancelled", {"inference": {"num_overlap": 4, "batch_size": 1}}),
                   ctrl_c)
    assert seen[-1][0] < seen[-1][1], "the job ran to the end instead of stopping"
    assert client.alive and os.listdir(tmp_path / "cancelled") == []
    assert len(client.run(job(tiny_bs, wav, tmp_path / "next"))["stems"]) == 2  # the worker takes the next job


def test_worker_memory_does_not_grow_with_the_track(legacy_python, tiny_bs, wav, tmp_path):
    """4 s vs 180 s through a fresh worker each: the worker's peak RSS may differ by allocator noise
    (up to ~16 MiB between identical runs), not by the audio (the in-memory path grew by the input and
    both stems: 3 x 60 MiB here)."""
    peaks = {}
    for seconds in (4, 180):
        clip = write_wav(tmp_path / f"{seconds}s.wav", np.tile(read(wav), (seconds // 2, 1)))
        worker = start_worker(legacy_python)
        try:
            worker.run(job(tiny_bs, clip, tmp_path / f"out{seconds}", {"inference": {"num_overlap": 1}}))
            peaks[seconds] = peak_rss_mib(worker.pid)
        finally:
            worker.close()
    buffer_mib = 180 * 44100 * 2 * 4 / 2**20  # one 180-s stereo float32 buffer: ~60 MiB
    assert peaks[180] - peaks[4] < buffer_mib / 2, peaks
