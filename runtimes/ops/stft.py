"""A numpy STFT/ISTFT equal to librosa 0.11's defaults, and a block-streaming spectral map built on it.

The anchors (audio-separator 0.47.1's Ensembler and spec_utils) call `librosa.stft(y, n_fft, hop_length)`
and `librosa.istft(S, hop_length, length)` with everything else default; the published phase-fixer
scripts call `torch.stft(..., window=hann_window(n_fft), pad_mode="reflect")` and `torch.istft(...,
length)`. Both are, exactly:

    window    w[n] = 0.5 - 0.5 cos(2 pi n / N)             periodic Hann, N = n_fft, no normalisation
    analysis  x padded by N//2 on both sides (zeros: librosa's default pad_mode "constant";
              reflection: the scripts' pad_mode "reflect"), frame t = padded[t*hop : t*hop + N],
              X[k, t] = rfft(w * frame_t)[k],  frames = 1 + (len + 2*(N//2) - N) // hop
    synthesis y = sum_t shift(w * irfft(X[:, t]), t*hop) / sum_t shift(w^2, t*hop)   (only where the
              window sum exceeds the float64 `tiny`, as librosa does), the first N//2 samples dropped,
              then cut or zero-padded to `length`

`spectral_map` runs that analysis on several signals, lets a per-bin function combine their spectra, and
synthesises the result, a block of frames at a time: every op here is per bin and per frame, so memory
stays bounded by the block, not the track, and the result does not depend on the block size.
Computation is float64 whatever the input precision.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np

PadMode = Literal["constant", "reflect"]  # librosa's default zeros; the phase-fixer scripts' reflection
BLOCK_FRAMES = 512  # frames analysed, combined and synthesised at once


def hann(n_fft: int) -> np.ndarray:
    """The periodic Hann window (scipy's get_window("hann", N, fftbins=True), torch.hann_window(N))."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)


def bin_frequencies(sample_rate: int, n_fft: int) -> np.ndarray:
    """Centre frequency in Hz of each rfft bin (librosa.fft_frequencies)."""
    return np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)


def frame_count(length: int, n_fft: int, hop: int) -> int:
    return 1 + (length + 2 * (n_fft // 2) - n_fft) // hop


class _Padded:
    """A (channels, samples) signal seen padded by `pad` on each side, the middle never copied whole."""

    def __init__(self, signal: np.ndarray, pad: int, mode: PadMode) -> None:
        samples = signal.shape[-1]
        if samples <= 2 * pad + 1:  # short: reflection may fold more than once, pad it whole (it is small)
            whole = np.pad(np.asarray(signal, np.float64), ((0, 0), (pad, pad)), mode=mode)
            self.parts = [(0, whole)]
        else:  # the pad only ever reflects the first/last pad+1 samples
            head = np.pad(np.asarray(signal[:, :pad + 1], np.float64), ((0, 0), (pad, 0)), mode=mode)[:, :pad]
            tail = np.pad(np.asarray(signal[:, -pad - 1:], np.float64), ((0, 0), (0, pad)), mode=mode)[:, -pad:]
            self.parts = [(0, head), (pad, signal), (pad + samples, tail)]

    def segment(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        for offset, part in self.parts:
            lo, hi = max(start, offset), min(stop, offset + part.shape[1])
            if lo < hi:
                pieces.append(np.asarray(part[:, lo - offset:hi - offset], np.float64))
        return np.concatenate(pieces, axis=1)


def _analyse(padded: _Padded, first: int, last: int, window: np.ndarray, hop: int) -> np.ndarray:
    """Frames first..last-1 of a padded signal -> (channels, bins, frames) complex128."""
    n_fft = window.shape[0]
    seg = padded.segment(first * hop, (last - 1) * hop + n_fft)
    framed = np.lib.stride_tricks.sliding_window_view(seg, n_fft, axis=-1)[:, ::hop]  # (C, frames, N)
    return np.fft.rfft(framed * window, axis=-1).transpose(0, 2, 1)


class _Synthesis:
    """librosa.istft's overlap-add and window-sum-square normalisation, fed a block of frames at a time."""

    def __init__(self, channels: int, frames: int, window: np.ndarray, hop: int) -> None:
        self.window, self.hop, self.frames = window, hop, frames
        self.y = np.zeros((channels, window.shape[0] + hop * (frames - 1)))

    def add(self, first: int, spec: np.ndarray) -> None:
        n_fft = self.window.shape[0]
        chunk = np.fft.irfft(spec, n=n_fft, axis=-2) * self.window[:, None]  # (C, N, frames)
        for j in range(spec.shape[-1]):
            start = (first + j) * self.hop
            self.y[:, start:start + n_fft] += chunk[:, :, j]

    def finish(self, length: int | None) -> np.ndarray:
        n_fft = self.window.shape[0]
        wss = np.zeros(self.y.shape[1])
        square = self.window ** 2
        for t in range(self.frames):
            wss[t * self.hop:t * self.hop + n_fft] += square
        nonzero = wss > np.finfo(np.float64).tiny
        y = self.y
        y[:, nonzero] /= wss[nonzero]
        y = y[:, n_fft // 2:]
        want = self.hop * (self.frames - 1) if length is None else length
        return y[:, :want] if y.shape[1] >= want else np.pad(y, ((0, 0), (0, want - y.shape[1])))


def spectral_map(signals: Sequence[np.ndarray], combine: Callable[[list[np.ndarray]], np.ndarray], *,
                 n_fft: int, hop: int, length: int | None = None, pad_mode: PadMode = "constant",
                 block_frames: int = BLOCK_FRAMES) -> np.ndarray:
    """Analyse each (channels, samples) signal (all the same shape), combine their spectra block by block
    and synthesise the combination as (channels, `length`) float64.

    `combine` gets one complex array per signal, each (channels, bins, frames_in_block) - librosa's
    layout - and returns one of the same shape. `length=None` is librosa's istft without `length`:
    hop * (frames - 1) samples."""
    channels, samples = signals[0].shape
    frames = frame_count(samples, n_fft, hop)
    window = hann(n_fft)
    padded = [_Padded(s, n_fft // 2, pad_mode) for s in signals]
    synthesis = _Synthesis(channels, frames, window, hop)
    for first in range(0, frames, block_frames):
        last = min(first + block_frames, frames)
        synthesis.add(first, combine([_analyse(p, first, last, window, hop) for p in padded]))
    return synthesis.finish(length)


def stft(signal: np.ndarray, *, n_fft: int, hop: int, pad_mode: PadMode = "constant") -> np.ndarray:
    """(channels, samples) -> (channels, bins, frames) complex128, the whole signal at once."""
    window = hann(n_fft)
    return _analyse(_Padded(signal, n_fft // 2, pad_mode), 0, frame_count(signal.shape[-1], n_fft, hop), window, hop)


def istft(spec: np.ndarray, *, n_fft: int, hop: int, length: int | None = None) -> np.ndarray:
    """(channels, bins, frames) -> (channels, samples) float64, librosa.istft's arithmetic."""
    synthesis = _Synthesis(spec.shape[0], spec.shape[-1], hann(n_fft), hop)
    synthesis.add(0, spec)
    return synthesis.finish(length)
