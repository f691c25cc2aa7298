"""The default model's DSP against the demo mix's known stems, and the demo mix itself."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import soundfile as sf

from runtimes.errors import JobCancelled
from runtimes.legacy.dsp import CenterSplitParams, center_split
from tests.conftest import REPO
from tests.worker.conftest import DEMO_MIX


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo() -> dict:
    return _load_script("make_demo_mix").make_demo()


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2)))


def test_bundled_demo_mix_is_small_and_matches_the_script(demo: dict) -> None:
    assert DEMO_MIX.stat().st_size <= 2_000_000
    mix, sr = sf.read(DEMO_MIX, always_2d=True)
    assert sr == demo["sample_rate"] and mix.shape == demo["mix"].shape == (sr * 10, 2)
    # The file is the script's output at 16 bits: regenerating reproduces it to the quantisation step.
    assert np.max(np.abs(mix - demo["mix"])) < 2 / 32768
    assert np.allclose(demo["vocals"] + demo["instrumental"], demo["mix"])
    assert np.allclose(demo["vocals"][:, 0], demo["vocals"][:, 1])  # the voice is dead centre
    assert np.std(demo["instrumental"][:, 0] - demo["instrumental"][:, 1]) > 0.01  # the band is not


def test_center_split_beats_the_mix_baseline_on_the_demo(demo: dict) -> None:
    out = center_split(demo["mix"].astype(np.float32), demo["sample_rate"])
    vocals, instrumental = sdr(demo["vocals"], out["vocals"]), sdr(demo["instrumental"], out["instrumental"])
    baseline_vocals = sdr(demo["vocals"], demo["mix"])
    assert baseline_vocals < 0
    assert vocals > 10 and vocals - baseline_vocals > 12, (vocals, baseline_vocals)
    assert instrumental > 12, instrumental
    assert out["vocals"].dtype == np.float32 and out["vocals"].shape == demo["mix"].shape
    assert np.allclose(out["vocals"] + out["instrumental"], demo["mix"], atol=1e-6)  # stems add back to the input


def test_output_does_not_depend_on_the_block_size(demo: dict) -> None:
    mix = demo["mix"][: 3 * 44100].astype(np.float32)
    a = center_split(mix, 44100, CenterSplitParams(block_frames=5))
    b = center_split(mix, 44100, CenterSplitParams(block_frames=1000))
    assert np.allclose(a["vocals"], b["vocals"], atol=1e-6)


def test_progress_is_per_block_and_cancel_is_honoured_between_blocks(demo: dict) -> None:
    mix = demo["mix"][: 2 * 44100].astype(np.float32)
    seen: list[tuple[int, int]] = []
    center_split(mix, 44100, CenterSplitParams(block_frames=16), progress=lambda d, t: seen.append((d, t)))
    assert len(seen) > 3 and [d for d, _ in seen] == list(range(1, len(seen) + 1)) and seen[-1][0] == seen[-1][1]

    calls = []

    def cancel_after_two() -> None:
        calls.append(1)
        if len(calls) > 2:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        center_split(mix, 44100, CenterSplitParams(block_frames=16), check_cancelled=cancel_after_two)
    assert len(calls) == 3


@pytest.mark.parametrize("sr", [8000, 192000])
def test_works_at_any_sample_rate(sr: int) -> None:
    t = np.arange(sr // 2) / sr
    centre, side = np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1234 * t)
    mix = np.stack([centre + side, centre], axis=1).astype(np.float32)
    out = center_split(mix, sr)
    assert out["vocals"].shape == mix.shape
    inner = slice(sr // 10, -sr // 10)
    assert sdr(np.stack([centre, centre], 1)[inner], out["vocals"][inner]) > 6


def test_rejects_anything_but_stereo() -> None:
    with pytest.raises(ValueError, match="stereo"):
        center_split(np.zeros((100, 1), np.float32), 44100)
