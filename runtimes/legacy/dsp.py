"""The built-in default model: centre-channel extraction with soft time-frequency masks (numpy only).

What it does: a lead vocal is almost always mixed dead centre (the same signal in both channels),
while most instruments are panned or recorded in stereo. Per time-frequency bin we measure how
"centred" the stereo pair is, from smoothed cross- and auto-spectra:

    similarity = 2 Re(S_LR) / (S_LL + S_RR)      1: identical channels, 0: one-sided or uncorrelated,
                                                 < 0: out of phase

and turn that into a soft mask for the mid signal (L+R)/2, limited to the voice band. The vocal
estimate is the masked mid (identical in both channels); the instrumental is the mix minus it, so
the two stems always add back to the input exactly.

Good at: centre-panned lead vocals over panned or wide-stereo accompaniment; no weights, fast on CPU.
Bad at: anything else that is centred (bass, kick, snare, mono synth leads) leaks into vocals inside
the voice band; panned or stereo-reverbed vocals stay in the instrumental; mono input cannot be
split at all (the input is returned as instrumental, vocals silent, with a warning).

The signal is processed in blocks of STFT frames with a few frames of context, so memory stays flat
for long files, progress is reported per block and cancel is honoured between blocks; the output
does not depend on the block size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

STEMS = ("vocals", "instrumental")


@dataclass(frozen=True)
class CenterSplitParams:
    frame_seconds: float = 0.093  # ~4096 samples at 44.1 kHz: fine frequency resolution for harmonics
    block_frames: int = 128  # frames per processing block (~3 s at 44.1 kHz)
    smooth_frames: int = 2  # +- frames averaged when estimating the spectra
    smooth_bins: int = 1  # +- bins averaged
    similarity_floor: float = 0.75  # below: not centre (a source panned 30 % scores ~0.89)
    mask_power: float = 1.0  # > 1 sharpens the soft mask between the floor and 1
    voice_low_hz: float = 150.0  # centred bass and kick live below this (mask fades in from half of it)
    voice_high_hz: float = 12000.0


def _frame_size(sample_rate: int, seconds: float) -> int:
    return int(2 ** round(np.log2(max(64.0, seconds * sample_rate))))


def _smooth(x: np.ndarray, bins: int, frames: int) -> np.ndarray:
    """Box average over +-bins (axis 0) and +-frames (axis 1), edges replicated."""
    if bins:
        padded = np.pad(x, ((bins, bins), (0, 0)), mode="edge")
        c = np.cumsum(padded, axis=0)
        c = np.concatenate([np.zeros_like(c[:1]), c], axis=0)
        x = (c[2 * bins + 1:] - c[:-2 * bins - 1]) / (2 * bins + 1)
    if frames:
        padded = np.pad(x, ((0, 0), (frames, frames)), mode="edge")
        c = np.cumsum(padded, axis=1)
        c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
        x = (c[:, 2 * frames + 1:] - c[:, :-2 * frames - 1]) / (2 * frames + 1)
    return x


def center_split(
    mix: np.ndarray,
    sample_rate: int,
    params: CenterSplitParams = CenterSplitParams(),
    progress: Callable[[int, int], None] | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Split a stereo mix (frames, 2) into vocals and instrumental, both (frames, 2) float32."""
    if mix.ndim != 2 or mix.shape[1] != 2:
        raise ValueError(f"center_split needs a stereo (frames, 2) array, got shape {mix.shape}")
    x = mix.astype(np.float64)
    n_fft = _frame_size(sample_rate, params.frame_seconds)
    hop = n_fft // 4
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft))  # sqrt periodic Hann
    # sqrt-Hann in and out at 75 % overlap sums to 2: divide it out. Padding by n_fft on both sides
    # puts every input sample in the fully overlapped interior.
    padded = np.pad(x, ((n_fft, n_fft), (0, 0)))
    n_frames = (len(padded) - n_fft) // hop + 1
    out = np.zeros(len(padded))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = np.clip(np.minimum((freqs - params.voice_low_hz * 0.5) / (params.voice_low_hz * 0.5),
                              (params.voice_high_hz * 1.5 - freqs) / (params.voice_high_hz * 0.5)), 0.0, 1.0)
    ctx = params.smooth_frames
    n_blocks = max(1, -(-n_frames // params.block_frames))
    for b in range(n_blocks):
        if check_cancelled:
            check_cancelled()
        f0, f1 = b * params.block_frames, min(n_frames, (b + 1) * params.block_frames)
        g0, g1 = max(0, f0 - ctx), min(n_frames, f1 + ctx)  # with context frames for the smoothing
        starts = np.arange(g0, g1) * hop
        idx = starts[:, None] + np.arange(n_fft)[None, :]
        left = np.fft.rfft(padded[idx, 0] * window, axis=1).T  # (bins, frames)
        right = np.fft.rfft(padded[idx, 1] * window, axis=1).T
        s_lr = _smooth((left * np.conj(right)).real, params.smooth_bins, ctx)
        s_ll = _smooth(np.abs(left) ** 2, params.smooth_bins, ctx)
        s_rr = _smooth(np.abs(right) ** 2, params.smooth_bins, ctx)
        similarity = 2.0 * s_lr / (s_ll + s_rr + 1e-20)
        mask = np.clip((similarity - params.similarity_floor) / (1.0 - params.similarity_floor), 0.0, 1.0)
        mask = mask ** params.mask_power * band[:, None]
        keep = slice(f0 - g0, f1 - g0)
        mid = 0.5 * (left[:, keep] + right[:, keep]) * mask[:, keep]
        frames = np.fft.irfft(mid.T, n=n_fft, axis=1) * window / 2.0
        for i, start in enumerate(starts[keep]):
            out[start:start + n_fft] += frames[i]
        if progress:
            progress(b + 1, n_blocks)
    vocal = out[n_fft:n_fft + len(x)]
    vocals = np.stack([vocal, vocal], axis=1)
    return {"vocals": vocals.astype(np.float32), "instrumental": (x - vocals).astype(np.float32)}


class CenterSplit:
    """The `dsp_center_split` model type for the stemsep-legacy adapter."""

    def __init__(self, params: CenterSplitParams) -> None:
        self.params = params

    @classmethod
    def load(cls, job: Any, device: str) -> "CenterSplit":
        # No weights; settings from the job message may tune the block size (memory vs progress granularity).
        block = job.settings.get("block_frames")
        return cls(CenterSplitParams(block_frames=int(block)) if block else CenterSplitParams())

    def separate(self, mix: np.ndarray, sample_rate: int, ctx: Any) -> dict[str, np.ndarray]:
        if mix.shape[1] == 1:
            ctx.warn("mono input: a centre/side split needs two channels, so the whole input is returned "
                     "as instrumental and vocals are silent")
            ctx.progress("separate", 1, 1)
            return {"vocals": np.zeros_like(mix), "instrumental": mix.copy()}
        if mix.shape[1] != 2:
            ctx.fail("E_INPUT_CHANNELS", f"the input has {mix.shape[1]} channels; this model takes mono or stereo",
                     hint="downmix to stereo first (e.g. `ffmpeg -i in.wav -ac 2 out.wav`)")
        return center_split(mix, sample_rate, self.params,
                            progress=lambda done, total: ctx.progress("separate", done, total),
                            check_cancelled=ctx.check_cancelled)
