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

The track is read, processed and written in blocks of STFT frames with a few frames of context on
each side (`center_split_blocks`; the worker streams the input file into the stem files through it),
so memory stays flat whatever the track's length, progress is reported per block and cancel is
honoured between blocks; the output does not depend on the block size (tests/worker/test_dsp_streaming.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

STEMS = ("vocals", "instrumental")
MONO_BLOCK = 1 << 16  # frames per block when a mono input is passed through


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


Read = Callable[[int, int], np.ndarray]  # (start, stop) -> float (stop - start, 2), inside the track


def center_split_blocks(
    read: Read,
    frames: int,
    sample_rate: int,
    params: CenterSplitParams = CenterSplitParams(),
    progress: Callable[[int, int], None] | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Split a stereo track of `frames` frames, read block by block, into (vocals, instrumental) blocks.

    Yields float32 (n, 2) pairs in order, from frame 0 to the end; memory depends on the block size only.
    Each block reads its frames plus `smooth_frames` context frames on each side, so the smoothing sees
    what it would see over the whole track; the overlap-add keeps the unfinished tail of a block (the
    samples later frames still add to) and hands on only what no later frame touches. Additions happen
    in the same order as over the whole track, so the result does not depend on the block size.
    """
    n_fft = _frame_size(sample_rate, params.frame_seconds)
    hop = n_fft // 4
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft))  # sqrt periodic Hann
    # sqrt-Hann in and out at 75 % overlap sums to 2: divide it out. Padding the track by n_fft zeros on
    # both sides ("padded" positions below) puts every input sample in the fully overlapped interior.
    n_frames = (frames + n_fft) // hop + 1
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = np.clip(np.minimum((freqs - params.voice_low_hz * 0.5) / (params.voice_low_hz * 0.5),
                              (params.voice_high_hz * 1.5 - freqs) / (params.voice_high_hz * 0.5)), 0.0, 1.0)
    ctx = params.smooth_frames
    n_blocks = max(1, -(-n_frames // params.block_frames))
    tail = np.zeros(0)  # overlap-added vocal from `origin` on, still open to later frames
    origin = 0  # padded position of tail[0]; everything before it has been handed on
    for b in range(n_blocks):
        if check_cancelled:
            check_cancelled()
        f0, f1 = b * params.block_frames, min(n_frames, (b + 1) * params.block_frames)
        g0, g1 = max(0, f0 - ctx), min(n_frames, f1 + ctx)  # with context frames for the smoothing
        lo, hi = g0 * hop, (g1 - 1) * hop + n_fft
        x = _read_padded(read, frames, n_fft, lo, hi)
        idx = (np.arange(g0, g1) * hop - lo)[:, None] + np.arange(n_fft)[None, :]
        left = np.fft.rfft(x[idx, 0] * window, axis=1).T  # (bins, frames)
        right = np.fft.rfft(x[idx, 1] * window, axis=1).T
        s_lr = _smooth((left * np.conj(right)).real, params.smooth_bins, ctx)
        s_ll = _smooth(np.abs(left) ** 2, params.smooth_bins, ctx)
        s_rr = _smooth(np.abs(right) ** 2, params.smooth_bins, ctx)
        similarity = 2.0 * s_lr / (s_ll + s_rr + 1e-20)
        mask = np.clip((similarity - params.similarity_floor) / (1.0 - params.similarity_floor), 0.0, 1.0)
        mask = mask ** params.mask_power * band[:, None]
        keep = slice(f0 - g0, f1 - g0)
        mid = 0.5 * (left[:, keep] + right[:, keep]) * mask[:, keep]
        grains = np.fft.irfft(mid.T, n=n_fft, axis=1) * window / 2.0
        out = np.zeros((f1 - 1) * hop + n_fft - origin)
        out[:len(tail)] = tail
        for i, start in enumerate(np.arange(f0, f1) * hop - origin):
            out[start:start + n_fft] += grains[i]
        done = f1 * hop if b < n_blocks - 1 else len(out) + origin  # later frames start at f1 * hop
        first, last = max(origin, n_fft), min(done, n_fft + frames)  # the track's part of [origin, done)
        if last > first:
            mix = x[first - lo:last - lo]
            vocal = out[first - origin:last - origin, None].repeat(2, axis=1)
            yield vocal.astype(np.float32), (mix - vocal).astype(np.float32)
        tail, origin = out[done - origin:], done
        if progress:
            progress(b + 1, n_blocks)


def _read_padded(read: Read, frames: int, pad: int, lo: int, hi: int) -> np.ndarray:
    """Padded positions [lo, hi) of the track as float64 (hi - lo, 2): zeros outside [pad, pad + frames)."""
    x = np.zeros((hi - lo, 2))
    start, stop = max(lo, pad), min(hi, pad + frames)
    if stop > start:
        x[start - lo:stop - lo] = read(start - pad, stop - pad)
    return x


def center_split(
    mix: np.ndarray,
    sample_rate: int,
    params: CenterSplitParams = CenterSplitParams(),
    progress: Callable[[int, int], None] | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Split a stereo mix (frames, 2) held in memory into vocals and instrumental, both (frames, 2) float32."""
    if mix.ndim != 2 or mix.shape[1] != 2:
        raise ValueError(f"center_split needs a stereo (frames, 2) array, got shape {mix.shape}")
    vocals, instrumental = zip(*center_split_blocks(lambda lo, hi: mix[lo:hi], len(mix), sample_rate, params,
                                                    progress, check_cancelled))
    return {"vocals": np.concatenate(vocals), "instrumental": np.concatenate(instrumental)}


class CenterSplit:
    """The `dsp_center_split` model type for the stemsep-legacy adapter."""

    sample_rate = None  # any rate: the split works on whatever the input has

    def __init__(self, params: CenterSplitParams) -> None:
        self.params = params

    @classmethod
    def load(cls, job: Any, device: str) -> "CenterSplit":
        # No weights; settings from the job message may tune the block size (memory vs progress granularity).
        block = job.settings.get("block_frames")
        return cls(CenterSplitParams(block_frames=int(block)) if block else CenterSplitParams())

    def separate_to_files(self, audio: Any, ctx: Any) -> list[Any]:
        """Stream the job's input (`ctx.open_input()`) into the two stem files in the staging dir
        (`ctx.stem_writer`), block by block: memory stays flat whatever the track's length."""
        from runtimes.adapter import StemFile

        if audio.channels > 2:
            ctx.fail("E_INPUT_CHANNELS", f"the input has {audio.channels} channels; this model takes mono or stereo",
                     hint="downmix to stereo first (e.g. `ffmpeg -i in.wav -ac 2 out.wav`)")
        with ctx.stem_writer("vocals", audio.sample_rate, audio.channels) as vocals, \
                ctx.stem_writer("instrumental", audio.sample_rate, audio.channels) as instrumental:
            for vocal_block, rest_block in self._blocks(audio, ctx):
                vocals.write(vocal_block)
                instrumental.write(rest_block)
        return [StemFile("vocals", vocals.path.name), StemFile("instrumental", instrumental.path.name)]

    def _blocks(self, audio: Any, ctx: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if audio.channels == 1:
            ctx.warn("mono input: a centre/side split needs two channels, so the whole input is returned "
                     "as instrumental and vocals are silent")
            for start in range(0, audio.frames, MONO_BLOCK):
                ctx.check_cancelled()
                block = audio.read(start, min(start + MONO_BLOCK, audio.frames))
                yield np.zeros_like(block), block
            ctx.progress("separate", 1, 1)
            return
        yield from center_split_blocks(audio.read, audio.frames, audio.sample_rate, self.params,
                                       progress=lambda done, total: ctx.progress("separate", done, total),
                                       check_cancelled=ctx.check_cancelled)
