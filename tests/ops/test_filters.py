"""invert, band_split and high_pass on signals whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from runtimes.ops import OPS, OpError
from tests.ops.signals import SR, bin_hz, middle, tone

N = SR


def noise(seed: int, frames: int = N, channels: int = 2) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((frames, channels)) * 0.3).astype(np.float32)


def amplitude(x: np.ndarray, hz: float) -> float:
    """The amplitude of a bin-centred tone of `hz` in x (first channel, steady part)."""
    seg = middle(x)[:, 0].astype(np.float64)
    t = np.arange(len(seg)) / SR
    return float(2 * np.abs(np.mean(seg * np.exp(-2j * np.pi * hz * t))))


def test_invert_is_mix_minus_stem_exactly() -> None:
    mix, stem = noise(1), noise(2)
    rest = OPS["invert"].apply([mix, stem], SR)
    assert np.array_equal(rest, (mix - stem).astype(np.float32))
    assert OPS["invert"].inputs == ("mix", "stem")


def test_invert_pads_a_shorter_stem_by_default() -> None:
    mix, stem = noise(3), noise(4, N - 100)
    rest = OPS["invert"].apply([mix, stem], SR)
    assert rest.shape == mix.shape and np.array_equal(rest[-100:], mix[-100:])


def test_band_split_takes_lows_from_one_source_and_highs_from_the_other() -> None:
    low_hz, high_hz = bin_hz(20), bin_hz(200)  # ~430 Hz and ~4300 Hz around a 1000 Hz crossover
    low_source = tone(low_hz, N, amp=0.5) + tone(high_hz, N, amp=0.05)
    high_source = tone(low_hz, N, amp=0.02) + tone(high_hz, N, amp=0.6)
    for width, fade in ((0.0, "linear"), (400.0, "linear"), (400.0, "equal_power")):
        out = OPS["band_split"].apply([low_source, high_source], SR, crossover_hz=1000, width_hz=width, fade=fade)
        assert np.abs(middle(out - (tone(low_hz, N, amp=0.5) + tone(high_hz, N, amp=0.6)))).max() < 1e-4, (width, fade)


def test_band_split_of_one_source_with_itself_gives_it_back_with_a_linear_fade() -> None:
    x = noise(5)
    out = OPS["band_split"].apply([x, x], SR, crossover_hz=1000, width_hz=500)
    assert np.abs(out - x).max() < 1e-6


def test_band_split_crossfade_gains_inside_the_width() -> None:
    """At the crossover, linear gains are 1/2 each, equal-power gains sqrt(1/2) each."""
    hz = bin_hz(46)  # ~990.5 Hz; crossover placed exactly on it
    a, b = tone(hz, N, amp=0.4), tone(hz, N, amp=0.4, phase=np.pi / 2)
    lin = OPS["band_split"].apply([a, b], SR, crossover_hz=hz, width_hz=2000, fade="linear")
    eqp = OPS["band_split"].apply([a, b], SR, crossover_hz=hz, width_hz=2000, fade="equal_power")
    assert abs(amplitude(lin, hz) - 0.4 * abs(0.5 + 0.5j)) < 2e-3
    assert abs(amplitude(eqp, hz) - 0.4 * abs(np.sqrt(0.5) + np.sqrt(0.5) * 1j)) < 2e-3


def test_band_split_needs_a_crossover_below_nyquist() -> None:
    x = noise(6, 5000)
    with pytest.raises(OpError, match="crossover_hz' is missing"):
        OPS["band_split"].apply([x, x], SR)
    with pytest.raises(OpError, match="below the Nyquist"):
        OPS["band_split"].apply([x, x], SR, crossover_hz=30000)


@pytest.mark.parametrize("order", [2, 4])
def test_high_pass_follows_the_butterworth_magnitude(order: int) -> None:
    cutoff = bin_hz(80)  # ~1723 Hz
    for k, expected in ((40, 1 / np.sqrt(1 + 2.0 ** (2 * order))), (80, np.sqrt(0.5)), (320, 1.0)):
        x = tone(bin_hz(k), N, amp=0.5)
        out = OPS["high_pass"].apply([x], SR, cutoff_hz=cutoff, order=order)
        assert abs(amplitude(out, bin_hz(k)) / 0.5 - expected) < 0.02 * max(expected, 0.1), (k, order)


def test_high_pass_removes_dc_and_keeps_shape_and_dtype() -> None:
    x = (noise(7) + 0.5).astype(np.float32)
    out = OPS["high_pass"].apply([x], SR, cutoff_hz=200)
    assert out.shape == x.shape and out.dtype == np.float32
    assert abs(middle(out).mean()) < 1e-3 < abs(middle(x).mean())


def test_high_pass_refusals() -> None:
    x = noise(8, 5000)
    with pytest.raises(OpError, match="cutoff_hz' is missing"):
        OPS["high_pass"].apply([x], SR)
    with pytest.raises(OpError, match="whole number"):
        OPS["high_pass"].apply([x], SR, cutoff_hz=100, order=2.5)
    with pytest.raises(OpError, match=r"2 input\(s\) given: it takes 1 \(stem\)"):
        OPS["high_pass"].apply([x, x], SR, cutoff_hz=100)
