"""The interface every runtime implements, and what the worker hands an adapter for one job.

An adapter lives in `runtimes/<runtime>/adapter.py` and is named in ADAPTERS below. The worker
calls `load()` once, after `hello` (this is where heavy imports happen; its answer becomes `ready`),
then `separate(ctx)` once per job. An adapter returns its stems either as arrays (`StemArray`: the
worker writes them in the requested format) or as files it wrote itself into `ctx.staging_dir`
(`StemFile`: e.g. audio-separator, which writes its own files and returns bare names, or stemsep-legacy's
Roformer, which streams its stems through `ctx.stem_writer` so memory stays flat). Either way
the worker moves finished files into the output dir only when the whole job has succeeded.

This module imports only the stdlib at module level: numpy/soundfile are imported where used.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from runtimes import protocol as p
from runtimes.errors import JobCancelled, JobError

if TYPE_CHECKING:
    import numpy as np

    from runtimes.audio_io import InputAudio, StemWriter

# Runtime id -> "module:Class". Later runtimes add one line each.
ADAPTERS: dict[str, str] = {
    "stemsep-legacy": "runtimes.legacy.adapter:LegacyAdapter",
    "audio-separator": "runtimes.audio_separator.adapter:AudioSeparatorAdapter",
    "msst": "runtimes.msst.adapter:MsstAdapter",
}


@dataclass(frozen=True)
class RuntimeInfo:
    """What `load()` reports; sent as `ready`."""

    versions: dict[str, str]
    device: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StemArray:
    """A stem as audio: (frames, channels) float array; the worker writes it."""

    name: str
    audio: "np.ndarray"
    sample_rate: int


@dataclass(frozen=True)
class StemFile:
    """A stem the adapter wrote itself, inside ctx.staging_dir (a bare name or a path there)."""

    name: str
    path: str


@dataclass(frozen=True)
class Job:
    """The `separate` message, typed. Everything the adapter may use arrives here."""

    id: str
    model: dict[str, Any]
    artifacts: dict[str, str]
    settings: dict[str, Any]
    input: Path
    output_dir: Path
    output_format: str
    output_names: dict[str, str]
    output_template: str
    device: str | None = None

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> "Job":
        return cls(id=msg["job"], model=msg["model"], artifacts=dict(msg["artifacts"]), settings=dict(msg["settings"]),
                   input=Path(msg["input"]), output_dir=Path(msg["output_dir"]), output_format=msg["output_format"],
                   output_names=dict(msg["output_names"]), output_template=msg["output_template"],
                   device=msg.get("device"))

    @property
    def model_id(self) -> str:
        return str(self.model.get("id", "?"))

    @property
    def model_type(self) -> str | None:
        return (self.model.get("runtime") or {}).get("model_type")

    def artifact(self, filename: str) -> Path:
        """Path of an artifact the host resolved for this job; a clear job error if it is not there."""
        path = self.artifacts.get(filename)
        if not path or not os.path.isfile(path):
            raise JobError(p.E_ARTIFACT_MISSING, f"artifact {filename!r} of model {self.model_id} is missing"
                           + (f" at {path}" if path else " from the job"),
                           hint=f"run `stemsep preflight -m {self.model_id}` to download and verify it")
        return Path(path)


class JobContext:
    """One job's link back to the worker: progress, cancel, warnings, input reading, staging dir."""

    def __init__(self, job: Job, staging_dir: Path, emit: Callable[[dict[str, Any]], None],
                 is_cancelled: Callable[[], bool], device: str) -> None:
        self.job = job
        self.staging_dir = staging_dir
        self.device = job.device or device
        self.warnings: list[str] = []
        self._emit = emit
        self._is_cancelled = is_cancelled
        self._files = 0  # stem files handed out by stem_writer

    @property
    def settings(self) -> dict[str, Any]:
        return self.job.settings

    def progress(self, stage: str, done: float, total: float) -> None:
        self._emit({"type": "progress", "job": self.job.id, "stage": stage, "done": done, "total": total})

    @property
    def cancelled(self) -> bool:
        return self._is_cancelled()

    def check_cancelled(self) -> None:
        """Call between chunks: raises JobCancelled once the host asked to cancel."""
        if self._is_cancelled():
            raise JobCancelled()

    def warn(self, message: str) -> None:
        """A warning the user should see; it travels in the job's `result`."""
        self.warnings.append(message)

    def fail(self, code: str, message: str, hint: str = "") -> None:
        raise JobError(code, message, hint)

    def read_input(self) -> tuple["np.ndarray", int]:
        """The input as float32 (frames, channels) and its sample rate; clear job errors for bad audio."""
        from runtimes.audio_io import read_input

        self.progress("read", 0, 1)
        audio, sample_rate = read_input(self.job.input, self.warn)
        self.progress("read", 1, 1)
        return audio, sample_rate

    def open_input(self) -> "InputAudio":
        """The input after the same checks, to read block by block (`with ctx.open_input() as audio:`):
        for adapters that stream, so memory does not grow with the track's length."""
        from runtimes.audio_io import open_input

        self.progress("read", 0, 1)
        audio = open_input(self.job.input, self.warn)
        self.progress("read", 1, 1)
        return audio

    def stem_writer(self, name: str, sample_rate: int, channels: int) -> "StemWriter":
        """A file for stem `name` in the staging dir, in the job's output format, written block by block;
        once it is closed, return `StemFile(name, writer.path.name)` for it."""
        from runtimes.audio_io import StemWriter

        self._files += 1
        path = self.staging_dir / f"stream-{self._files}.{self.job.output_format}"
        return StemWriter(path, sample_rate, channels, self.job.output_format, label=name, warn=self.warn)


class Adapter:
    """Base of runtime adapters."""

    runtime: str = ""

    def load(self) -> RuntimeInfo:
        """Import the runtime's libraries and pick the device. Called once, before `ready`."""
        raise NotImplementedError

    def separate(self, ctx: JobContext) -> Sequence[StemArray | StemFile]:
        """Run one job. Raise JobError for failures the user can act on; call ctx.check_cancelled() between chunks."""
        raise NotImplementedError

    def close(self) -> None:
        """Release models and devices before the worker exits."""


def load_adapter(runtime: str) -> Adapter:
    """Instantiate the adapter of `runtime` (imports only its module; heavy imports wait for load())."""
    target = ADAPTERS.get(runtime)
    if target is None:
        raise JobError(p.E_RUNTIME_UNKNOWN, f"this worker has no adapter for runtime {runtime!r}",
                       hint=f"known runtimes: {', '.join(sorted(ADAPTERS))}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)()
