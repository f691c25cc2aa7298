"""The ensemble op's own behaviour (no env): the registry entry, each algorithm on inputs whose answer is
known, tie rules, length policies and the refusals. Agreement with audio-separator's Ensembler itself:
test_ensemble_agreement.py (envs)."""

from __future__ import annotations

import numpy as np
import pytest

from runtimes.ops import OPS, OpError
from runtimes.ops.ensemble import ALGORITHMS, WEIGHTED

ENSEMBLE = OPS["ensemble"]


def run(inputs: list[np.ndarray], **params: object) -> np.ndarray:
    return ENSEMBLE.apply(inputs, 44100, **params)


def col(*values: float) -> np.ndarray:
    return np.array(values, np.float32)[:, None]


def noise(seed: int, frames: int = 20000, channels: int = 2) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((frames, channels)) * 0.3).astype(np.float32)


def test_registry_entry_declares_inputs_params_and_anchor_defaults() -> None:
    params = {p.name: p for p in ENSEMBLE.params}
    assert ENSEMBLE.variadic and ENSEMBLE.min_inputs == 2 and ENSEMBLE.max_inputs is None
    assert set(params["algorithm"].choices) == {
        "avg_wave", "median_wave", "min_wave", "max_wave", "avg_fft", "median_fft", "min_fft", "max_fft",
        "uvr_max_spec", "uvr_min_spec", "ensemble_wav"}
    assert (params["n_fft"].default, params["hop"].default) == (2048, 1024)
    assert params["length_policy"].default == "pad" and params["weights"].nullable
    assert "audio-separator 0.47.1" in ENSEMBLE.source


def test_wave_algorithms_per_sample() -> None:
    a, b, c = col(1, -4, 0.5), col(-2, 3, 0.25), col(0.5, 1, -1)
    assert np.allclose(run([a, b, c], algorithm="avg_wave"), (a + b + c) / 3)
    assert np.allclose(run([a, b], algorithm="avg_wave", weights=[3, 1]), (3 * a + b) / 4)
    assert np.array_equal(run([a, b, c], algorithm="median_wave"), col(0.5, 1, 0.25))
    assert np.array_equal(run([a, b, c], algorithm="max_wave"), col(-2, -4, -1))  # by |x|, sign kept
    assert np.array_equal(run([a, b, c], algorithm="min_wave"), col(0.5, 1, 0.25))


def test_wave_ties_go_to_the_first_input() -> None:
    a, b = col(1, -2), col(-1, 2)
    assert np.array_equal(run([a, b], algorithm="max_wave"), a)
    assert np.array_equal(run([a, b], algorithm="min_wave"), a)


def test_fft_ties_go_to_the_first_input_uvr_fold_to_the_later() -> None:
    """x and -x have the same magnitude in every bin: argmax/argmin pick the first, UVR's >= / <= fold
    the later (spec_utils.ensembling)."""
    x = noise(1)
    for algorithm in ("max_fft", "min_fft"):
        assert np.abs(run([x, -x], algorithm=algorithm) - x).max() < 1e-6
    for algorithm in ("uvr_max_spec", "uvr_min_spec"):
        assert np.abs(run([x, -x], algorithm=algorithm) + x).max() < 1e-6


def test_fft_algorithms_pick_per_bin_by_magnitude() -> None:
    """A loud low tone in one input, a loud high tone in the other: max_fft keeps both loud tones,
    min_fft both quiet ones, avg_fft equals avg_wave (the STFT is linear and resynthesises exactly)."""
    from tests.ops.signals import bin_hz, middle, tone

    n = 44100
    one = tone(bin_hz(20), n, amp=0.8) + tone(bin_hz(400), n, amp=0.1)
    two = tone(bin_hz(20), n, amp=0.1) + tone(bin_hz(400), n, amp=0.8)
    loud = tone(bin_hz(20), n, amp=0.8) + tone(bin_hz(400), n, amp=0.8)
    quiet = tone(bin_hz(20), n, amp=0.1) + tone(bin_hz(400), n, amp=0.1)
    assert np.abs(middle(run([one, two], algorithm="max_fft") - loud)).max() < 1e-4
    assert np.abs(middle(run([one, two], algorithm="min_fft") - quiet)).max() < 1e-4
    assert np.abs(run([one, two], algorithm="avg_fft") - run([one, two], algorithm="avg_wave")).max() < 1e-6


def test_median_fft_takes_real_and_imaginary_medians() -> None:
    """Three inputs: the median of Re and Im separately (theirs), which for x, 2x, 10x is 2x."""
    x = noise(2)
    assert np.abs(run([x, 2 * x, 10 * x], algorithm="median_fft") - 2 * x).max() < 1e-5


def test_ensemble_wav_takes_each_time_chunk_from_the_quietest_input() -> None:
    n = 24000  # 240 chunks of 100 frames
    quiet_first = np.concatenate([np.full((n // 2, 2), 0.1), np.full((n // 2, 2), 0.9)]).astype(np.float32)
    quiet_second = np.concatenate([np.full((n // 2, 2), -0.8), np.full((n // 2, 2), 0.2)]).astype(np.float32)
    out = run([quiet_first, quiet_second], algorithm="ensemble_wav")
    assert np.array_equal(out[: n // 2], quiet_first[: n // 2])
    assert np.array_equal(out[n // 2:], quiet_second[n // 2:])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_output_is_float32_frames_channels_padded_to_the_longest(algorithm: str) -> None:
    a, b = noise(3, 5000, 2), noise(4, 7777, 2)
    out = run([a, b], algorithm=algorithm)
    assert out.dtype == np.float32 and out.shape == (7777, 2)
    assert run([a, b], algorithm=algorithm, length_policy="trim").shape == (5000, 2)


def test_mono_inputs_stay_mono() -> None:
    assert run([noise(5, 3000, 1), noise(6, 3000, 1)], algorithm="max_fft").shape == (3000, 1)


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a not in WEIGHTED])
def test_unequal_weights_are_refused_where_audio_separator_ignores_them(algorithm: str) -> None:
    a, b = noise(7, 3000), noise(8, 3000)
    with pytest.raises(OpError, match="only avg_wave and avg_fft weigh"):
        run([a, b], algorithm=algorithm, weights=[2, 1])
    run([a, b], algorithm=algorithm, weights=[1, 1])  # uniform weights change nothing: accepted


@pytest.mark.parametrize("params, match", [
    ({"weights": [1, 2, 3]}, "3 weights for 2 inputs"),
    ({"weights": [-1, 2]}, "weights.*>= 0|must lie in"),
    ({"weights": [0, 0]}, "at least one is > 0"),
    ({"algorithm": "max_spec"}, "must be one of"),
    ({"algorithm": "avg_fft", "hop": 1500}, "hop above n_fft/2"),
    ({"n_fft": 8}, "must lie in"),
    ({"length_policy": "strict"}, "different lengths"),
    ({"window": "hann"}, "unknown parameter"),
])
def test_bad_params_are_refused_with_what_why_and_what_to_do(params: dict, match: str) -> None:
    with pytest.raises(OpError, match=match) as info:
        run([noise(9, 3000), noise(10, 3100)], **params)
    assert info.value.why and info.value.hint and isinstance(info.value, ValueError)


def test_bad_inputs_are_refused() -> None:
    stereo, mono = noise(11, 3000, 2), noise(12, 3000, 1)
    with pytest.raises(OpError, match="at least 2"):
        run([stereo])
    with pytest.raises(OpError, match=r"\[1, 2\] channels"):
        run([stereo, mono])
    with pytest.raises(OpError, match="different sample rates"):
        ENSEMBLE.apply([stereo, stereo], [44100, 48000])
    with pytest.raises(OpError, match=r"float array \(frames, channels\)"):
        run([stereo[:, 0], stereo[:, 1]])
    bad = stereo.copy()
    bad[10, 0] = np.nan
    with pytest.raises(OpError, match="NaN"):
        run([stereo, bad])
