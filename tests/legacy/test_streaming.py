"""Progress, cancel, and streaming: file-to-file separation equals the in-memory result, and its
memory stays flat when the track gets ten times longer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.legacy.conftest import DEMO_MIX, demo_input, ours_env, ours_ok, run_ours

API_CHECKS = Path(__file__).with_name("api_checks.py")

pytestmark = pytest.mark.envs  # builds real uv envs (stemsep-legacy torch, msst 0.1.0)


def api(legacy_python: Path, *args: str) -> dict:
    proc = subprocess.run([str(legacy_python), str(API_CHECKS), *args], capture_output=True, text=True, env=ours_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_progress_per_batch_and_cancel_between_batches(legacy_python, tiny_bs, mix3):
    config, ckpt = tiny_bs
    out = api(legacy_python, "progress-cancel", str(config), str(ckpt), str(mix3))
    steps = out["steps"]
    total = steps[0][1]
    assert total >= 4 and [s[1] for s in steps] == [total] * len(steps)
    assert [s[0] for s in steps] == list(range(2, total, 2)) + [total]  # one step per batch of 2 chunks
    assert out["cancelled"] and out["cancel_checks"] == 2  # checked before each batch, stopped at the second


def test_streamed_file_equals_in_memory(legacy_python, tiny_mel, workdir, tmp_path):
    config, ckpt = tiny_mel
    audio, rate = sf.read(DEMO_MIX, dtype="float32", always_2d=True)
    wav = tmp_path / "mix.wav"
    sf.write(wav, audio[: int(2.5 * rate)], rate, subtype="FLOAT")
    out = api(legacy_python, "stream", str(config), str(ckpt), str(wav), str(tmp_path))
    assert out["stems"] == ["vocals"] and out["max_diff"] == 0.0


def test_streamed_memory_does_not_grow_with_length(legacy_python, tiny_bs, tmp_path):
    """6 s vs 180 s of audio: the streamed run's peak RSS may differ by allocator noise (measured up to
    ~16 MiB between identical runs), not by a buffer of the long track (60 MiB, which holding the input
    or any one stem whole would add)."""
    config, ckpt = tiny_bs
    audio, rate = sf.read(DEMO_MIX, dtype="float32", always_2d=True)
    peaks = {}
    for seconds in (6, 180):
        wav = tmp_path / f"{seconds}s.wav"
        sf.write(wav, np.tile(audio, (seconds // 10 + 1, 1))[: seconds * rate], rate, subtype="FLOAT")
        run = run_ours(legacy_python, config, ckpt, wav, tmp_path / f"out{seconds}", "--stream", "--num-overlap", "1")
        ours_ok(run)
        peaks[seconds] = run.result()["peak_rss_mib"]
    buffer_mib = 180 * rate * 2 * 4 / 2**20  # one 180-s stereo float32 buffer: ~60 MiB
    assert peaks[180] - peaks[6] < buffer_mib / 2, peaks
