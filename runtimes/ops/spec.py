"""What an operation declares (`Op`, `Param`) and the checks every op shares before its kernel runs.

The recipe schema reads `Op.inputs` and `Op.params` to validate a step before anything runs; the runner
calls `Op.apply`. Audio crosses this seam as float32 (frames, channels) arrays, the layout soundfile
reads and writes; kernels get float64 (channels, frames), one row per channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from runtimes.ops.errors import OpError

REQUIRED = object()  # a Param default meaning "the step must give it"
LENGTH_POLICIES = ("pad", "trim", "strict")


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "float", "int", "str" or "float_list"
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False  # None is a valid value (its meaning is in `doc`)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, op: str, value: Any) -> Any:
        """The value, checked against type, choices and range; an OpError saying which rule it breaks."""
        if value is None and self.nullable:
            return None
        where = f"{op}: parameter '{self.name}'"
        if self.type == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise OpError(f"{where} is {value!r}", f"it must be one of {', '.join(self.choices)}",
                              f"Set {self.name} to one of those ({self.doc}).")
            return value
        if self.type == "float_list":
            if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
                raise OpError(f"{where} is {value!r}", "it must be a list of numbers", f"Give {self.name} as e.g. [2, 1].")
            for v in value:
                self._in_range(where, float(v))
            return [float(v) for v in value]
        if self.type == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise OpError(f"{where} is {value!r}", "it must be a whole number", f"Give {self.name} as an integer.")
            self._in_range(where, value)
            return value
        if not _is_number(value):
            raise OpError(f"{where} is {value!r}", "it must be a number", f"Give {self.name} as a number ({self.doc}).")
        value = float(value)
        self._in_range(where, value)
        return value

    def _in_range(self, where: str, value: float) -> None:
        if not math.isfinite(value):
            raise OpError(f"{where} is {value}", "it must be a finite number", f"Give {self.name} a finite value.")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            bounds = f"[{self.minimum if self.minimum is not None else '-inf'}, " \
                     f"{self.maximum if self.maximum is not None else 'inf'}]"
            raise OpError(f"{where} is {value:g}", f"it must lie in {bounds}", f"Choose {self.name} in that range.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Op:
    """An audio operation: its inputs (one role per position; `variadic`: the last role repeats, at least
    `min_inputs`), its params and its kernel `run(signals, sample_rate, **params) -> (channels, frames)`."""

    name: str
    summary: str
    inputs: tuple[str, ...]
    params: tuple[Param, ...]
    source: str  # whose formula it follows
    run: Callable[..., np.ndarray] = field(repr=False)
    variadic: bool = False
    min_inputs: int = 0

    @property
    def max_inputs(self) -> int | None:
        return None if self.variadic else len(self.inputs)

    def resolve_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every param's value (defaults filled in), each checked; unknown or missing ones refused."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise OpError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}",
                          f"{self.name} takes {', '.join(known) or 'no parameters'}", "Remove or rename them.")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in params:
                out[p.name] = p.check(self.name, params[p.name])
            elif p.required:
                raise OpError(f"{self.name}: parameter '{p.name}' is missing", "it has no default",
                              f"Give {p.name} ({p.doc}).")
            else:
                out[p.name] = p.default
        return out

    def apply(self, inputs: Sequence[np.ndarray], sample_rate: int | Sequence[int], **params: Any) -> np.ndarray:
        """Run the op on float (frames, channels) arrays sharing one sample rate (one rate, or one per
        input: they must agree; resampling is the runner's job); returns float32 (frames, channels)."""
        resolved = self.resolve_params(params)
        rate = self._one_rate(inputs, sample_rate)
        signals = self._signals(inputs)
        if "length_policy" in resolved:
            signals = align_lengths(self.name, signals, resolved.pop("length_policy"))
        out = self.run(signals, rate, **resolved)
        return np.ascontiguousarray(out.T, dtype=np.float32)

    def _one_rate(self, inputs: Sequence[np.ndarray], sample_rate: int | Sequence[int]) -> int:
        rates = [sample_rate] * len(inputs) if isinstance(sample_rate, int) else list(sample_rate)
        if len(rates) != len(inputs):
            raise OpError(f"{self.name}: {len(rates)} sample rates for {len(inputs)} inputs",
                          "give one rate, or one per input", "Pass the rate each input was read at.")
        if any(not isinstance(r, int) or r <= 0 for r in rates):
            raise OpError(f"{self.name}: sample rates {rates}", "a rate is a positive integer in Hz",
                          "Pass the rate each input was read at.")
        if len(set(rates)) > 1:
            raise OpError(f"{self.name}: inputs at different sample rates {rates}",
                          "per-sample and per-bin operations need one rate",
                          "Resample the inputs to one rate (the first input's) before this step.")
        return rates[0]

    def _signals(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        count = len(inputs)
        if count < max(self.min_inputs, 1) or (self.max_inputs is not None and count != self.max_inputs):
            wanted = f"at least {self.min_inputs}" if self.variadic else f"{len(self.inputs)} ({', '.join(self.inputs)})"
            raise OpError(f"{self.name}: {count} input(s) given", f"it takes {wanted}",
                          "Give the step the inputs it names.")
        signals = []
        for i, a in enumerate(inputs):
            role = self.inputs[min(i, len(self.inputs) - 1)]
            a = np.asarray(a)
            if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0 or not np.issubdtype(a.dtype, np.floating):
                raise OpError(f"{self.name}: input {i + 1} ({role}) has shape {a.shape} and dtype {a.dtype}",
                              "audio is a non-empty float array (frames, channels)",
                              "Read the stem with soundfile (always_2d=True, dtype='float32').")
            if not np.isfinite(a).all():
                raise OpError(f"{self.name}: input {i + 1} ({role}) holds NaN or infinite samples",
                              "the step that produced it failed numerically", "Re-run or replace that step.")
            signals.append(a.T)  # (channels, frames), a view
        channels = {s.shape[0] for s in signals}
        if len(channels) > 1:
            raise OpError(f"{self.name}: inputs have {sorted(channels)} channels",
                          "per-channel operations need one channel count",
                          "Make the stems all mono or all stereo (duplicate a mono stem) before this step.")
        return signals


def align_lengths(op: str, signals: list[np.ndarray], policy: str) -> list[np.ndarray]:
    """pad: zero-pad to the longest (audio-separator's Ensembler); trim: cut to the shortest; strict: refuse."""
    lengths = [s.shape[1] for s in signals]
    if len(set(lengths)) == 1:
        return signals
    if policy == "strict":
        raise OpError(f"{op}: inputs have different lengths {lengths} (frames)", "length_policy is strict",
                      "Use length_policy pad (zero-pad to the longest) or trim (cut to the shortest).")
    if policy == "trim":
        n = min(lengths)
        return [s[:, :n] for s in signals]
    n = max(lengths)
    return [np.pad(s, ((0, 0), (0, n - s.shape[1]))) if s.shape[1] < n else s for s in signals]


LENGTH_POLICY = Param("length_policy", "str", "pad",
                      "inputs of different lengths: pad = zero-pad to the longest (audio-separator), "
                      "trim = cut to the shortest, strict = refuse", choices=LENGTH_POLICIES)


def stft_params(n_fft: int, hop: int, source: str) -> tuple[Param, Param]:
    return (Param("n_fft", "int", n_fft, f"STFT size (default: {source})", minimum=16, maximum=65536),
            Param("hop", "int", hop, f"STFT hop in samples, at most n_fft/2 (default: {source})", minimum=1))


def check_stft(op: str, n_fft: int, hop: int) -> None:
    """hop <= n_fft/2 keeps the Hann windows' square sum above zero everywhere (exact resynthesis)."""
    if hop > n_fft // 2:
        raise OpError(f"{op}: hop {hop} with n_fft {n_fft}", "a hop above n_fft/2 leaves samples no window covers",
                      "Use a hop of at most n_fft/2.")
