"""invert, band_split and high_pass: the plain operations a recipe needs around its models.

- invert [mix, stem]: mix - stem, per sample ("the rest": e.g. the instrumental from a vocals-only
  model). No STFT, so it is exact: mix == stem + result.
- band_split [low_source, high_source]: per STFT bin (librosa's defaults: periodic Hann, zero-padded
  centre frames; n_fft 2048, hop 512 here), f the bin's centre frequency k * sr / n_fft,
      out = gain_low(f) * LOW + gain_high(f) * HIGH,
      u(f) = 0 below crossover - width/2, 1 above crossover + width/2, linear between (width 0: a hard
      split, u = 1 from the crossover up); fade "linear": gains 1 - u and u (they sum to 1: two identical
      sources give that source back); fade "equal_power": gains cos(pi u / 2) and sin(pi u / 2) (their
      squares sum to 1).
- high_pass: a zero-phase filter per STFT bin with the magnitude response of an order-n Butterworth
  high-pass, |H(f)| = 1 / sqrt(1 + (cutoff / f)^(2n)) (|H(0)| = 0): -3 dB at the cutoff, falling
  6n dB per octave below it (`order`, default 4: 24 dB/octave). Zero-phase keeps the stem aligned with
  the others a recipe mixes it with.
Sources: textbook formulas (no anchor implements these in the reference tools' code).
"""

from __future__ import annotations

import numpy as np

from runtimes.ops.errors import OpError
from runtimes.ops.spec import LENGTH_POLICY, REQUIRED, Op, Param, check_stft, stft_params
from runtimes.ops.stft import bin_frequencies, spectral_map

FADES = ("linear", "equal_power")


def invert(signals: list[np.ndarray], sample_rate: int) -> np.ndarray:
    return np.asarray(signals[0], np.float64) - np.asarray(signals[1], np.float64)


def crossover_gains(freqs: np.ndarray, crossover_hz: float, width_hz: float, fade: str) -> tuple[np.ndarray, np.ndarray]:
    """(low gain, high gain) per frequency."""
    if width_hz == 0:
        u = (freqs >= crossover_hz).astype(np.float64)
    else:
        u = np.clip((freqs - (crossover_hz - width_hz / 2)) / width_hz, 0.0, 1.0)
    if fade == "equal_power":
        return np.cos(np.pi / 2 * u), np.sin(np.pi / 2 * u)
    return 1.0 - u, u


def band_split(signals: list[np.ndarray], sample_rate: int, *, crossover_hz: float, width_hz: float, fade: str,
               n_fft: int, hop: int) -> np.ndarray:
    check_stft("band_split", n_fft, hop)
    _below_nyquist("band_split", "crossover_hz", crossover_hz, sample_rate)
    low, high = crossover_gains(bin_frequencies(sample_rate, n_fft), crossover_hz, width_hz, fade)
    return spectral_map(signals, lambda s: s[0] * low[:, None] + s[1] * high[:, None], n_fft=n_fft, hop=hop,
                        length=signals[0].shape[1])


def high_pass_gain(freqs: np.ndarray, cutoff_hz: float, order: int) -> np.ndarray:
    with np.errstate(divide="ignore"):
        ratio = np.where(freqs > 0, cutoff_hz / np.where(freqs > 0, freqs, 1.0), np.inf)
    return 1.0 / np.sqrt(1.0 + ratio ** (2 * order))


def high_pass(signals: list[np.ndarray], sample_rate: int, *, cutoff_hz: float, order: int, n_fft: int,
              hop: int) -> np.ndarray:
    check_stft("high_pass", n_fft, hop)
    _below_nyquist("high_pass", "cutoff_hz", cutoff_hz, sample_rate)
    gain = high_pass_gain(bin_frequencies(sample_rate, n_fft), cutoff_hz, order)
    return spectral_map(signals, lambda s: s[0] * gain[:, None], n_fft=n_fft, hop=hop, length=signals[0].shape[1])


def _below_nyquist(op: str, name: str, hz: float, sample_rate: int) -> None:
    if hz >= sample_rate / 2:
        raise OpError(f"{op}: {name} {hz:g} Hz", f"it is not below the Nyquist frequency ({sample_rate / 2:g} Hz "
                      f"at {sample_rate} Hz)", f"Choose {name} below {sample_rate / 2:g} Hz.")


INVERT = Op(
    name="invert",
    summary="The mix minus a stem: what the stem's model left out",
    inputs=("mix", "stem"),
    params=(LENGTH_POLICY,),
    source="per-sample subtraction",
    run=invert,
)

BAND_SPLIT = Op(
    name="band_split",
    summary="Low band from one stem, high band from another, crossfaded around a crossover",
    inputs=("low_source", "high_source"),
    params=(
        Param("crossover_hz", "float", REQUIRED, "the crossover frequency (Hz)", minimum=0.0),
        Param("width_hz", "float", 0.0, "crossfade width centred on the crossover (Hz); 0: a hard split",
              minimum=0.0),
        Param("fade", "str", "linear", "linear: gains sum to 1; equal_power: squared gains sum to 1",
              choices=FADES),
        *stft_params(2048, 512, "librosa's n_fft, a quarter-frame hop"),
        LENGTH_POLICY,
    ),
    source="STFT-domain crossover (textbook)",
    run=band_split,
)

HIGH_PASS = Op(
    name="high_pass",
    summary="Remove what lies below a cutoff (zero-phase, Butterworth magnitude)",
    inputs=("stem",),
    params=(
        Param("cutoff_hz", "float", REQUIRED, "the -3 dB frequency (Hz)", minimum=0.0),
        Param("order", "int", 4, "Butterworth order: the slope below the cutoff is 6 * order dB/octave",
              minimum=1, maximum=24),
        *stft_params(2048, 512, "librosa's n_fft, a quarter-frame hop"),
    ),
    source="Butterworth magnitude response applied per STFT bin (textbook)",
    run=high_pass,
)
