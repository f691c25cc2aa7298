"""Phase Fix on synthetic signals with known phase.

Tones sit on bin centres (a whole number of cycles per 2048-sample frame) far from the band edges, so
each occupies three bins wholly below or above the ramp. Where the blend factor b is 0 or 1 (uvr outside
its band; colab above its band with weight 0.75: 0.25 + 0.75 = 1) the result is a clean tone: the
target's amplitude with the target's or the donor's phase. Elsewhere b is fractional and, as in the
published scripts, the per-frame principal angles make the result frame-dependent: there the test checks
the spectra the op builds (magnitude exactly the target's, phase the formula's), and the whole op against
an independent straightforward implementation of the published script.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtimes.ops import OPS, OpError
from runtimes.ops.phase_fix import blend, blend_factors, script_frequencies
from runtimes.ops.stft import stft
from tests.ops.signals import SR, bin_hz, middle, tone

PHASE_FIX = OPS["phase_fix"]
N = SR  # one second
LOW_TONE, HIGH_TONE = bin_hz(10), bin_hz(400)  # ~215 Hz and ~8613 Hz


def two_tones(low_phase: float, high_phase: float, *, low_amp: float, high_amp: float) -> np.ndarray:
    return tone(LOW_TONE, N, amp=low_amp, phase=low_phase) + tone(HIGH_TONE, N, amp=high_amp, phase=high_phase)


TARGET = two_tones(0.3, 1.1, low_amp=0.5, high_amp=0.4)
DONOR = two_tones(-2.0, 2.6, low_amp=0.2, high_amp=0.7)


def fix(target: np.ndarray = TARGET, donor: np.ndarray = DONOR, **params: object) -> np.ndarray:
    return PHASE_FIX.apply([target, donor], SR, **params)


def test_registry_entry() -> None:
    params = {p.name: p for p in PHASE_FIX.params}
    assert PHASE_FIX.inputs == ("target", "donor") and PHASE_FIX.max_inputs == 2
    assert params["curve"].choices == ("colab", "uvr") and params["weight"].nullable
    assert (params["n_fft"].default, params["hop"].default) == (2048, 512)


def test_uvr_keeps_the_target_phase_below_and_takes_the_donor_phase_above() -> None:
    out = fix(curve="uvr", low_hz=1000, high_hz=4000)
    expected = two_tones(0.3, 2.6, low_amp=0.5, high_amp=0.4)  # target amplitudes, donor's high phase
    assert np.abs(middle(out - expected)).max() < 1e-4


def test_low_equal_to_high_is_a_hard_swap_not_a_no_op() -> None:
    out = fix(curve="uvr", low_hz=2000, high_hz=2000)
    assert np.abs(middle(out - TARGET)).max() > 0.1
    expected = two_tones(0.3, 2.6, low_amp=0.5, high_amp=0.4)
    assert np.abs(middle(out - expected)).max() < 1e-4
    high_target, high_donor = tone(HIGH_TONE, N, amp=0.4, phase=1.1), tone(HIGH_TONE, N, amp=0.7, phase=2.6)
    out = fix(high_target, high_donor, curve="colab", low_hz=2000, high_hz=2000, weight=0.75)
    assert np.abs(middle(out - tone(HIGH_TONE, N, amp=0.4, phase=2.6))).max() < 1e-4


def test_colab_weight_075_reaches_the_donor_phase_above_the_band() -> None:
    """0.25 + 0.75 = 1 above high_hz: the target's amplitude with the donor's phase."""
    high_target, high_donor = tone(HIGH_TONE, N, amp=0.4, phase=1.1), tone(HIGH_TONE, N, amp=0.7, phase=2.6)
    out = fix(high_target, high_donor, curve="colab", low_hz=500, high_hz=5000, weight=0.75)
    assert np.abs(middle(out - tone(HIGH_TONE, N, amp=0.4, phase=2.6))).max() < 1e-4


@pytest.mark.parametrize("curve, weight", [("colab", 0.8), ("colab", 2.0), ("uvr", None)])
def test_built_spectrum_has_the_target_magnitude_and_the_curve_phase(curve: str, weight: float | None) -> None:
    t = stft(TARGET.T.astype(np.float64), n_fft=2048, hop=512, pad_mode="reflect")
    d = stft(DONOR.T.astype(np.float64), n_fft=2048, hop=512, pad_mode="reflect")
    freqs = script_frequencies(SR, 2048)
    b = blend_factors(curve, freqs, 1000, 4000, weight if weight is not None else 1.0)
    out = blend(t, d, b)
    assert np.allclose(np.abs(out), np.abs(t), rtol=1e-12, atol=1e-12)  # magnitude: always the target's
    below, above = freqs < 1000, freqs > 4000
    base = 0.25 if curve == "colab" else 0.0
    top = base + (weight if weight is not None else 1.0)
    assert np.allclose(b[below], base) and np.allclose(b[above], top)
    phase_t, phase_d = np.angle(t), np.angle(d)
    loud = np.abs(t) > 1e-3 * np.abs(t).max()  # where a phase is defined well
    for mask, factor in ((below, base), (above, top)):
        want = np.exp(1j * (phase_t + factor * (phase_d - phase_t)))
        got = np.exp(1j * np.angle(out))
        sel = loud & mask[None, :, None]
        assert sel.any() and np.abs(got[sel] - want[sel]).max() < 1e-9


def test_weight_2_differs_from_weight_1() -> None:
    one, two = fix(curve="colab", weight=1.0), fix(curve="colab", weight=2.0)
    assert np.abs(one - two).max() > 0.05


def published_colab(target: np.ndarray, donor: np.ndarray, sr: int, low: float, high: float, scale: float) -> np.ndarray:
    """The torch phase-fixer script's arithmetic written out plainly (numpy, loops): reflect-padded
    periodic-Hann STFT 2048/512, per-bin blend factor with base_factor 0.25, (1 - b) phi_t + b phi_d
    wrapped with remainder, target magnitude, overlap-add ISTFT divided by the window envelope."""
    n_fft, hop, base = 2048, 512, 0.25
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    factors = np.empty(len(freqs))
    for i, f in enumerate(freqs):
        if f < low:
            factors[i] = base
        elif f > high:
            factors[i] = base + scale
        else:
            factors[i] = base + scale * (f - low) / (high - low)
    length = target.shape[0]
    out = np.zeros_like(target, dtype=np.float64)
    for c in range(target.shape[1]):
        pt = np.pad(target[:, c].astype(np.float64), n_fft // 2, mode="reflect")
        pd = np.pad(donor[:, c].astype(np.float64), n_fft // 2, mode="reflect")
        frames = 1 + (len(pt) - n_fft) // hop
        y = np.zeros(n_fft + hop * (frames - 1))
        env = np.zeros_like(y)
        for t in range(frames):
            st = np.fft.rfft(pt[t * hop:t * hop + n_fft] * window)
            sd = np.fft.rfft(pd[t * hop:t * hop + n_fft] * window)
            phase = (1 - factors) * np.angle(st) + factors * np.angle(sd)
            phase = np.remainder(phase + np.pi, 2 * np.pi) - np.pi
            y[t * hop:t * hop + n_fft] += np.fft.irfft(np.abs(st) * np.exp(1j * phase), n=n_fft) * window
            env[t * hop:t * hop + n_fft] += window ** 2
        y = y[n_fft // 2:] / np.where(env[n_fft // 2:] > 1e-11, env[n_fft // 2:], 1.0)
        out[:, c] = y[:length]
    return out


@pytest.mark.parametrize("low, high, weight", [(500, 5000, 0.8), (420, 4200, 2.0), (1000, 9000, 1.85)])
def test_colab_matches_an_independent_implementation_of_the_published_script(low: float, high: float, weight: float) -> None:
    rng = np.random.default_rng(7)
    target = (rng.standard_normal((30000, 2)) * 0.3).astype(np.float32)
    donor = (target * 0.5 + rng.standard_normal((30000, 2)) * 0.2).astype(np.float32)
    ours = PHASE_FIX.apply([target, donor], SR, curve="colab", low_hz=low, high_hz=high, weight=weight)
    theirs = published_colab(target, donor, SR, low, high, weight)
    assert np.abs(ours - theirs).max() <= 1e-5


def test_defaults_are_the_colab_curve_with_weight_08() -> None:
    assert np.array_equal(fix(), fix(curve="colab", low_hz=500, high_hz=5000, weight=0.8))


@pytest.mark.parametrize("params, match", [
    ({"curve": "uvr", "weight": 2.0}, "UVR's Phase Swapper has no weight"),
    ({"low_hz": 5000, "high_hz": 500}, "low_hz 5000 is above high_hz 500"),
    ({"curve": "swap"}, "must be one of"),
    ({"hop": 2048}, "hop above n_fft/2"),
])
def test_bad_params_are_refused(params: dict, match: str) -> None:
    with pytest.raises(OpError, match=match):
        fix(**params)


def test_mismatched_lengths_follow_the_policy() -> None:
    short = TARGET[:30000]
    assert fix(short, DONOR).shape == (N, 2)
    assert fix(short, DONOR, length_policy="trim").shape == (30000, 2)
    with pytest.raises(OpError, match="different lengths"):
        fix(short, DONOR, length_policy="strict")
