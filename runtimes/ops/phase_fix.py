"""Phase Fix (phase swapper): the target's magnitude with its phase blended toward a donor's, by frequency.

Per channel, STFT n_fft 2048, hop 512, periodic Hann, centre frames reflect-padded (the scripts'
`torch.stft(..., pad_mode="reflect")`); T = target's spectrum, D = donor's (the reference model's
instrumental, or the stem the recipe names), f = the bin's frequency, linspace(0, sr // 2, n_fft/2 + 1)
as the scripts compute it:

    out[k, t] = |T[k, t]| * exp(1j * wrap(angle T + b(f) * (angle D - angle T)))
    wrap(p)   = (p + pi) mod 2 pi - pi         (torch.remainder; the difference itself is not wrapped)
    ramp(f)   = 0 for f < low, (f - low) / (high - low) for low <= f <= high, 1 for f > high;
                low == high: 0 below, 1 at and above (a hard swap at that frequency)

then the ISTFT (window-sum-square normalised) back to the inputs' length (aligned by `length_policy`). The curves:

- colab: b(f) = 0.25 + weight * ramp(f). Source: the published torch phase-fixer scripts (becruily's
  `frequency_blend_phases` with base_factor 0.25 and scale_factor; santilli_'s Colab exposes
  scale_factor as "high frequency weight", default 0.8). `weight` is not clamped: b above 1 pushes the
  phase past the donor's, and 2 gives a different result from 1, as the guide's users expect. The
  scripts refuse low == high; here that is the hard swap above.
- uvr: b(f) = ramp(f): the target's phase below `low`, a linear crossfade, the donor's phase above
  `high` (UVR's Tools > Phase Swapper, as the guide describes it: "500/500 means you use original phase
  below 500 Hz and hard cutoff/swap to transferred phase above", jarredou). UVR's tool has no weight, so
  this curve takes none (weight 1 only). UVR's own code was not available to read; the crossfade blends
  the angles exactly as the colab curve does (its formula with base 0 and weight 1).

The magnitude is always the target's: only the phase moves.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from runtimes.ops.errors import OpError
from runtimes.ops.spec import LENGTH_POLICY, Op, Param, check_stft, stft_params
from runtimes.ops.stft import spectral_map

CURVES = ("colab", "uvr")
COLAB_BASE = 0.25  # base_factor of the published scripts
DEFAULT_WEIGHT = {"colab": 0.8, "uvr": 1.0}  # the Colab's "high frequency weight"; UVR has none


def ramp(freqs: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    if low_hz == high_hz:
        return (freqs >= high_hz).astype(np.float64)
    return np.clip((freqs - low_hz) / (high_hz - low_hz), 0.0, 1.0)


def blend_factors(curve: str, freqs: np.ndarray, low_hz: float, high_hz: float, weight: float) -> np.ndarray:
    base = COLAB_BASE if curve == "colab" else 0.0
    return base + weight * ramp(freqs, low_hz, high_hz)


def script_frequencies(sample_rate: int, n_fft: int) -> np.ndarray:
    """torch.linspace(0, sr // 2, n_fft // 2 + 1), as the scripts build their bin frequencies."""
    return np.linspace(0.0, float(sample_rate // 2), n_fft // 2 + 1)


def blend(target: np.ndarray, donor: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|target| with the blended phase; spectra (..., bins, frames), b (bins,)."""
    phase_t, phase_d = np.angle(target), np.angle(donor)
    phase = phase_t + b[:, None] * (phase_d - phase_t)
    phase = np.mod(phase + np.pi, 2 * np.pi) - np.pi
    return np.abs(target) * np.exp(1j * phase)


def phase_fix(signals: list[np.ndarray], sample_rate: int, *, curve: str, low_hz: float, high_hz: float,
              weight: float | None, n_fft: int, hop: int) -> np.ndarray:
    check_stft("phase_fix", n_fft, hop)
    if high_hz < low_hz:
        raise OpError(f"phase_fix: low_hz {low_hz:g} is above high_hz {high_hz:g}",
                      "the blend ramps up from low_hz to high_hz",
                      "Swap them; equal values give a hard swap at that frequency.")
    if weight is None:
        weight = DEFAULT_WEIGHT[curve]
    elif curve == "uvr" and weight != 1.0:
        raise OpError(f"phase_fix: curve uvr with weight {weight:g}",
                      "UVR's Phase Swapper has no weight: below low_hz the target's phase, above high_hz "
                      "the donor's", "Use curve colab for a weighted blend, or leave weight unset.")
    b = blend_factors(curve, script_frequencies(sample_rate, n_fft), low_hz, high_hz, weight)
    combine: Callable[[list[np.ndarray]], np.ndarray] = lambda specs: blend(specs[0], specs[1], b)
    return spectral_map(signals, combine, n_fft=n_fft, hop=hop, length=signals[0].shape[1], pad_mode="reflect")


OP = Op(
    name="phase_fix",
    summary="Keep the target's magnitude, blend its phase toward the donor's above a frequency",
    inputs=("target", "donor"),
    params=(
        Param("curve", "str", "colab", "colab: the phase-fixer scripts' blend (base 0.25 + weight * ramp); "
              "uvr: UVR's Phase Swapper (target phase below low_hz, donor phase above high_hz)", choices=CURVES),
        Param("low_hz", "float", 500.0, "where the ramp starts (Hz)", minimum=0.0),
        Param("high_hz", "float", 5000.0, "where the ramp ends (Hz); equal to low_hz: a hard swap", minimum=0.0),
        Param("weight", "float", None, "the scripts' high frequency weight (colab; not clamped); "
              "none: 0.8 for colab, 1 for uvr (its only value)", nullable=True),
        *stft_params(2048, 512, "the published phase-fixer scripts"),
        LENGTH_POLICY,
    ),
    source="the published torch phase-fixer scripts (frequency_blend_phases); UVR Tools > Phase Swapper",
    run=phase_fix,
)
