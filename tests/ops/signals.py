"""Synthetic signals with known content for the ops tests."""

from __future__ import annotations

import numpy as np

SR = 44100
N_FFT = 2048


def bin_hz(k: int, n_fft: int = N_FFT, sr: int = SR) -> float:
    """The centre frequency of bin k: a tone there has a whole number of cycles per frame."""
    return k * sr / n_fft


def tone(hz: float, frames: int, *, amp: float = 0.5, phase: float = 0.0, channels: int = 2, sr: int = SR) -> np.ndarray:
    """amp * cos(2 pi hz t + phase) in every channel, float32 (frames, channels)."""
    t = np.arange(frames) / sr
    mono = amp * np.cos(2 * np.pi * hz * t + phase)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def middle(x: np.ndarray, margin: int = 4096) -> np.ndarray:
    """Away from the edges, where the centre padding makes frames differ from the steady state."""
    return x[margin:-margin]
