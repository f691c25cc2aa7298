"""Which STFT features feed which band: BS-Roformer's contiguous split and Mel-Roformer's mel bands.

Feature layout (both families): the STFT of a chunk is arranged (frame, bin, channel, re/im), so the
flat feature index of (bin f, channel s, part c) is (f * channels + s) * 2 + c. A band takes the
features of its bins in ascending order. BS-Roformer's bands tile the bins exactly; Mel-Roformer's
bands overlap (neighbouring triangular mel filters share bins), so a bin's mask is the mean of the
masks of every band that covers it.

Mel band membership follows msst 0.1.0: the bins where librosa's Slaney-style mel filter bank
(`librosa.filters.mel(sr, n_fft, n_mels)`, norm and scale defaults) is positive, with the first bin
of the first band and the last bin of the last band forced in. The filter bank is recomputed here
with the same float64 arithmetic, so no librosa is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtimes.legacy.roformer.config import ArchConfig
from runtimes.legacy.roformer.errors import ConfigError


@dataclass(frozen=True)
class BandLayout:
    widths: tuple[int, ...]  # features per band (bins * channels * 2)
    gather: np.ndarray | None  # int64 flat feature index per band feature; None: identity (BS)
    bins_per_band: tuple[int, ...]
    cover: np.ndarray | None  # float32 per flat feature: how many bands cover its bin (mel)

    @property
    def num_bands(self) -> int:
        return len(self.widths)

    @property
    def total(self) -> int:
        return sum(self.widths)


def band_layout(arch: ArchConfig) -> BandLayout:
    if arch.is_mel:
        return _mel_layout(arch)
    widths = tuple(2 * arch.channels * n for n in arch.freqs_per_bands)
    return BandLayout(widths=widths, gather=None, bins_per_band=arch.freqs_per_bands, cover=None)


def _mel_layout(arch: ArchConfig) -> BandLayout:
    member = mel_band_membership(arch.mel_sample_rate, arch.stft_n_fft, arch.num_bands)
    channels = arch.channels
    bins = [np.flatnonzero(row) for row in member]
    # (bin, channel, part) features of each band, bands in order: msst's freq_indices, times 2 for re/im.
    per_bin = np.arange(channels * 2)
    gather = np.concatenate([(b[:, None] * channels * 2 + per_bin[None, :]).reshape(-1) for b in bins]).astype(np.int64)
    cover = np.repeat(member.sum(axis=0).astype(np.float32), channels * 2)
    return BandLayout(widths=tuple(len(b) * channels * 2 for b in bins), gather=gather,
                      bins_per_band=tuple(len(b) for b in bins), cover=cover)


def mel_band_membership(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Boolean (n_mels, n_fft // 2 + 1): which STFT bins each mel band covers (as msst builds it)."""
    weights = slaney_mel_filter_bank(sample_rate, n_fft, n_mels)
    weights[0, 0] = 1.0
    weights[-1, -1] = 1.0
    member = weights > 0
    uncovered = np.flatnonzero(~member.any(axis=0))
    if uncovered.size:
        raise ConfigError(f"{n_mels} mel bands at {sample_rate} Hz leave {uncovered.size} of {member.shape[1]} STFT bins "
                          f"uncovered (first: bin {uncovered[0]})",
                          hint="use fewer mel bands (model.num_bands) or a longer STFT (model.stft_n_fft)")
    return member


def slaney_mel_filter_bank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel with its defaults (fmin 0, fmax sr/2, Slaney scale and norm), float32."""
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    spacing = np.diff(hz_points)
    ramps = np.subtract.outer(hz_points, fft_freqs)
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / spacing[i]
        upper = ramps[i + 2] / spacing[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_points[2:n_mels + 2] - hz_points[:n_mels]))[:, None]
    return weights


# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4).
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    if hz >= _MIN_LOG_HZ:
        return _MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOGSTEP
    return hz / _F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = _F_SP * mels
    log_part = mels >= _MIN_LOG_MEL
    hz[log_part] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log_part] - _MIN_LOG_MEL))
    return hz
