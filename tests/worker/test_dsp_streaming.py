"""The default model (builtin-center-split) through a real worker streams: its stem files equal the
whole-file result at every block size (block boundaries and the file's tail included, stereo and mono),
and the worker's memory does not grow with the track's length."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from envmgr.worker.client import Timeouts, WorkerClient
from envmgr.worker.code_copy import WorkerCode
from runtimes.legacy.dsp import CenterSplitParams, center_split
from tests.worker.conftest import DEMO_MIX, make_job

pytestmark = pytest.mark.envs  # a real uv-built stemsep-legacy env

RATE = 44100
FRAMES = 7 * RATE + 12345  # not a multiple of the hop: the last block ends inside a frame
HOP = 1024  # the DSP's hop at 44.1 kHz (n_fft 4096)


@pytest.fixture
def start(dsp_env: Any, worker_code: WorkerCode):
    clients: list[WorkerClient] = []

    def _start() -> WorkerClient:
        client = WorkerClient(dsp_env.python, "stemsep-legacy", worker_code, env_id=dsp_env.id,
                              timeouts=Timeouts(silence=60.0, exit_grace=5.0))
        clients.append(client)
        client.start()
        return client

    yield _start
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def flac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real FLAC (what users feed): the demo mix cut to an odd length, so the worker seeks in a compressed file."""
    audio, rate = sf.read(DEMO_MIX, dtype="float32", always_2d=True)
    path = tmp_path_factory.mktemp("in") / "mix.flac"
    sf.write(path, audio[:FRAMES], rate, subtype="PCM_16")
    return path


def separate(client: WorkerClient, wav: Path, out: Path, settings: dict[str, Any]) -> tuple[dict[str, np.ndarray], list]:
    events: list[dict[str, Any]] = []
    result = client.run(make_job(wav, out, settings=settings), events.append)
    stems = {s["name"]: sf.read(s["path"], dtype="float32", always_2d=True)[0] for s in result["stems"]}
    steps = [(e["done"], e["total"]) for e in events if e.get("type") == "progress" and e.get("stage") == "separate"]
    return stems, steps


def whole_file(mix: np.ndarray) -> dict[str, np.ndarray]:
    """The reference: one STFT block over the whole track, in memory."""
    return center_split(mix, RATE, CenterSplitParams(block_frames=10**9))


@pytest.mark.parametrize("block_frames", [1, 7, 128, 10**6])
def test_streamed_stems_equal_the_whole_file_result(start, flac, tmp_path, block_frames):
    mix = sf.read(flac, dtype="float32", always_2d=True)[0]
    reference = whole_file(mix)
    assert np.abs(reference["vocals"]).max() > 0.05  # the comparison is not between silences
    stems, steps = separate(start(), flac, tmp_path, {"block_frames": block_frames})
    n_frames = (FRAMES + 4096) // HOP + 1
    assert steps[-1] == (steps[-1][1], -(-n_frames // block_frames)), "not processed in blocks of this size"
    for name, ref in reference.items():
        assert stems[name].shape == mix.shape, name  # the tail is there, to the last frame
        diff = np.abs(stems[name] - ref)
        assert diff.max() <= 1e-6, (name, float(diff.max()), int(diff.argmax()) // 2)
    np.testing.assert_allclose(stems["vocals"] + stems["instrumental"], mix, atol=1e-6)


def test_mono_input_streams_the_mix_into_instrumental(start, flac, tmp_path):
    mono = sf.read(flac, dtype="float32", always_2d=True)[0][:, :1]
    path = tmp_path / "mono.wav"
    sf.write(path, mono, RATE, subtype="FLOAT")
    events: list[dict[str, Any]] = []
    result = start().run(make_job(path, tmp_path / "out", settings={"block_frames": 7}), events.append)
    stems = {s["name"]: sf.read(s["path"], dtype="float32", always_2d=True)[0] for s in result["stems"]}
    assert stems["instrumental"].shape == mono.shape and np.array_equal(stems["instrumental"], mono)
    assert stems["vocals"].shape == mono.shape and not stems["vocals"].any()
    assert any("mono input" in w for w in result["warnings"]), result["warnings"]


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), read while it is alive."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def test_worker_memory_does_not_grow_with_the_track(start, tmp_path):
    """5 s vs 180 s, a fresh worker each: the peaks may differ by allocator noise, not by the audio (the
    whole-track version grew by ~240 MiB per minute, ~700 MiB here; one 180-s stereo float32 buffer is 60 MiB)."""
    audio = sf.read(DEMO_MIX, dtype="float32", always_2d=True)[0]
    peaks = {}
    for seconds in (5, 180):
        wav = tmp_path / f"{seconds}s.wav"
        sf.write(wav, np.tile(audio, (seconds // 10 + 1, 1))[: seconds * RATE], RATE, subtype="FLOAT")
        client = start()
        client.run(make_job(wav, tmp_path / f"out{seconds}"))
        peaks[seconds] = peak_rss_mib(client.pid)
        client.close()
    buffer_mib = 180 * RATE * 2 * 4 / 2**20
    assert peaks[180] - peaks[5] < buffer_mib / 2, peaks
