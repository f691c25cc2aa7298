"""Ensembles of one stem from several models, with audio-separator 0.47.1's exact semantics.

Source: python-audio-separator 0.47.1, `separator/ensembler.py` (`Ensembler.ensemble`) and
`separator/uvr_lib_v5/spec_utils.py` (`ensembling`, `ensemble_wav`, `wave_to_spectrogram_no_mp`).
Inputs x_1..x_n (channels, frames), zero-padded to the longest first (their policy; `length_policy`
here), weights w_i (default all 1). Per sample s, or per STFT bin X_i[c, k, t] (librosa.stft, n_fft 2048,
hop 1024, zero-padded centre frames; istft with window-sum-square normalisation back to the input length):

    avg_wave      sum_i w_i x_i / sum_i w_i
    median_wave   median_i x_i
    min_wave      x_j with j = argmin_i |x_i|   (ties: the first input)
    max_wave      x_j with j = argmax_i |x_i|   (ties: the first input)
    avg_fft       istft( sum_i w_i X_i / sum_i w_i )
    median_fft    istft( median_i Re X_i + 1j median_i Im X_i )   (real and imaginary parts separately:
                  theirs; not a median by magnitude)
    min_fft       istft( X_j ), j = argmin_i |X_i|   (ties: the first input)
    max_fft       istft( X_j ), j = argmax_i |X_i|   (ties: the first input)
    uvr_max_spec  UVR's pairwise fold: acc = X_1; acc = X_i where |X_i| >= |acc| else acc, for i = 2..n
                  (ties: the later input), istft(acc)
    uvr_min_spec  the same fold with |X_i| <= |acc|
    ensemble_wav  the frames split into 240 consecutive chunks (numpy.array_split's sizes); each chunk
                  taken whole from the input with the lowest mean |x| over that chunk (all channels)

Where we differ on purpose (the agreement test names each; docs/recipes.md explains them):
- ensemble_wav: their Ensembler hands (channels, length) arrays to `spec_utils.ensemble_wav`, whose
  `np.array_split` then splits the channel axis, not time: each channel is taken whole from the quietest
  input and time is never chunked. We split time, as the function's own comments intend.
- uvr_*: their istft has no `length`, so the result is hop * (frames - 1) samples, not the input's length
  (up to a hop shorter); ours is the input's length (the common samples are identical).
- Weights: they fall back to equal weights, with a log warning, when the count is wrong or the sum is 0 or
  not finite, and ignore weights for every algorithm but avg_*; we refuse those with an OpError (uniform
  weights, which change nothing, are accepted everywhere). Weights must be >= 0.
- One input: they return it unchanged; we refuse (an ensemble of one is a recipe mistake).
- More than two channels: their FFT algorithms keep only the first two; ours process every channel.
- Precision: float64 throughout (theirs follows the input's dtype: complex64 spectra for float32 input).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from runtimes.ops.errors import OpError
from runtimes.ops.spec import LENGTH_POLICY, Op, Param, check_stft, stft_params
from runtimes.ops.stft import spectral_map

WAVE = ("avg_wave", "median_wave", "min_wave", "max_wave")
FFT = ("avg_fft", "median_fft", "min_fft", "max_fft")
UVR = ("uvr_max_spec", "uvr_min_spec")
ALGORITHMS = WAVE + FFT + UVR + ("ensemble_wav",)
WEIGHTED = ("avg_wave", "avg_fft")
ENSEMBLE_WAV_CHUNKS = 240  # spec_utils.ensemble_wav's split_size


def ensemble(signals: list[np.ndarray], sample_rate: int, *, algorithm: str, weights: list[float] | None,
             n_fft: int, hop: int) -> np.ndarray:
    w = _weights(algorithm, weights, len(signals))
    if algorithm in WAVE:
        return _wave(algorithm, [np.asarray(s, np.float64) for s in signals], w)
    if algorithm == "ensemble_wav":
        return _quietest_chunks(signals, ENSEMBLE_WAV_CHUNKS)
    check_stft("ensemble", n_fft, hop)
    combine = _uvr_fold(algorithm) if algorithm in UVR else _per_bin(algorithm, w)
    return spectral_map(signals, combine, n_fft=n_fft, hop=hop, length=signals[0].shape[1])


def _weights(algorithm: str, weights: list[float] | None, count: int) -> np.ndarray:
    if weights is None:
        return np.ones(count)
    if len(weights) != count:
        raise OpError(f"ensemble: {len(weights)} weights for {count} inputs", "there is one weight per input",
                      "Give as many weights as the step has inputs, in the same order.")
    w = np.asarray(weights, np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise OpError(f"ensemble: weights {weights}", "weights are >= 0 and at least one is > 0",
                      "Give non-negative weights, e.g. [2, 1].")
    if algorithm not in WEIGHTED and not (w == w[0]).all():
        raise OpError(f"ensemble: algorithm {algorithm} with unequal weights {weights}",
                      f"only {' and '.join(WEIGHTED)} weigh their inputs (audio-separator ignores weights "
                      "for the others)", f"Drop the weights, or use {' or '.join(WEIGHTED)}.")
    return w


def _wave(algorithm: str, xs: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    if algorithm == "avg_wave":
        return sum((x * wi for x, wi in zip(xs, w)), np.zeros_like(xs[0])) / w.sum()
    stack = np.stack(xs)
    if algorithm == "median_wave":
        return np.median(stack, axis=0)
    return _pick(stack, np.argmin if algorithm == "min_wave" else np.argmax)


def _pick(stack: np.ndarray, arg: Callable[..., np.ndarray]) -> np.ndarray:
    """stack[j] per element, j = arg over axis 0 of |stack| (numpy's argmin/argmax: ties go to the first)."""
    idx = arg(np.abs(stack), axis=0)[None]
    return np.take_along_axis(stack, idx, axis=0)[0]


def _per_bin(algorithm: str, w: np.ndarray) -> Callable[[list[np.ndarray]], np.ndarray]:
    def combine(specs: list[np.ndarray]) -> np.ndarray:
        if algorithm == "avg_fft":
            acc = np.zeros_like(specs[0])
            for s, wi in zip(specs, w):
                acc += s * wi
            return acc / w.sum()
        stack = np.stack(specs)
        if algorithm == "median_fft":
            return np.median(stack.real, axis=0) + 1j * np.median(stack.imag, axis=0)
        return _pick(stack, np.argmin if algorithm == "min_fft" else np.argmax)

    return combine


def _uvr_fold(algorithm: str) -> Callable[[list[np.ndarray]], np.ndarray]:
    def combine(specs: list[np.ndarray]) -> np.ndarray:
        acc = specs[0]
        for s in specs[1:]:
            take = np.abs(s) >= np.abs(acc) if algorithm == "uvr_max_spec" else np.abs(s) <= np.abs(acc)
            acc = np.where(take, s, acc)
        return acc

    return combine


def _quietest_chunks(signals: list[np.ndarray], chunks: int) -> np.ndarray:
    frames = signals[0].shape[1]
    out = np.empty((signals[0].shape[0], frames))
    size, extra = divmod(frames, chunks)  # array_split: the first `extra` chunks hold one more frame
    start = 0
    for i in range(chunks):
        stop = start + size + (1 if i < extra else 0)
        if stop > start:
            means = [np.abs(np.asarray(s[:, start:stop], np.float64)).mean() for s in signals]
            out[:, start:stop] = signals[int(np.argmin(means))][:, start:stop]
        start = stop
    return out


OP = Op(
    name="ensemble",
    summary="Combine the same stem from several models into one",
    inputs=("stem",),
    variadic=True,
    min_inputs=2,
    params=(
        Param("algorithm", "str", "avg_wave", "how the inputs are combined", choices=ALGORITHMS),
        Param("weights", "float_list", None, "one weight per input, >= 0 (avg_wave, avg_fft); none: all 1",
              minimum=0.0, nullable=True),
        *stft_params(2048, 1024, "audio-separator's Ensembler and spec_utils"),
        LENGTH_POLICY,
    ),
    source="python-audio-separator 0.47.1 separator/ensembler.py, uvr_lib_v5/spec_utils.py",
    run=ensemble,
)
