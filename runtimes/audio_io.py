"""Audio in and out of a job, the same for every runtime: the input checked once, stems written in the job's format.

- `open_input(path, warn)`: the input opened for reading block by block, after the checks every job gets
  (exists, decodes, holds frames, no NaN/infinite samples, a warning when the file is shorter than its
  header says). The checks read the file once, block by block, so memory stays flat whatever its length.
- `read_input(path, warn)`: the same checks, the whole input as one array (runtimes that need it in RAM).
- `StemWriter`: one stem written block by block: WAV as 32-bit float, FLAC as 24-bit integers (FLAC
  cannot hold float: samples beyond full scale are clipped, counted, and reported once).

The worker writes array stems with StemWriter; adapters that stream (stemsep-legacy's Roformer) write
theirs with it too (`JobContext.stem_writer`), so every stem file is made the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf

from runtimes import protocol as p
from runtimes.errors import JobError

BLOCK_FRAMES = 1 << 16  # frames per block when a file is read or checked block by block
SUBTYPES = {"wav": "FLOAT", "flac": "PCM_24"}
_DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, TypeError)
Warn = Callable[[str], None]


class InputAudio:
    """A checked input, read block by block: `read(start, stop)` -> float32 (frames, channels)."""

    def __init__(self, file: sf.SoundFile, frames: int) -> None:
        self.file = file
        self.frames = frames  # what decodes: a truncated file holds fewer frames than its header says
        self.channels = int(file.channels)
        self.sample_rate = int(file.samplerate)

    def read(self, start: int, stop: int) -> np.ndarray:
        try:
            self.file.seek(start)
            return self.file.read(stop - start, dtype="float32", always_2d=True)
        except _DECODE_ERRORS as exc:
            raise _undecodable(Path(self.file.name), exc) from None

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "InputAudio":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_input(path: Path, warn: Warn) -> InputAudio:
    """The input, checked (one pass over its blocks), ready to be read block by block."""
    fh = _open(path)
    try:
        frames, bad, first = 0, 0, None
        for block in fh.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
            n_bad, at = _nonfinite(block)
            if n_bad and first is None:
                first = frames + at
            bad += n_bad
            frames += len(block)
        _check(path, fh, frames, bad, first, warn)
    except _DECODE_ERRORS as exc:
        fh.close()
        raise _undecodable(path, exc) from None
    except BaseException:
        fh.close()
        raise
    return InputAudio(fh, frames)


def read_input(path: Path, warn: Warn) -> tuple[np.ndarray, int]:
    """The whole input as float32 (frames, channels) and its sample rate, after the same checks."""
    with _open(path) as fh:
        try:
            audio = fh.read(dtype="float32", always_2d=True)
        except _DECODE_ERRORS as exc:
            raise _undecodable(path, exc) from None
        bad, first = _nonfinite(audio)
        _check(path, fh, len(audio), bad, first, warn)
        return audio, int(fh.samplerate)


def _open(path: Path) -> sf.SoundFile:
    if not path.is_file():
        raise JobError(p.E_INPUT_NOT_FOUND, f"input {path} does not exist or is not a file")
    try:
        return sf.SoundFile(str(path))
    except _DECODE_ERRORS as exc:
        raise _undecodable(path, exc) from None


def _undecodable(path: Path, exc: BaseException) -> JobError:
    return JobError(p.E_INPUT_UNDECODABLE, f"cannot decode {path.name}: {exc}",
                    hint="check that it is an audio file (WAV, FLAC, OGG, MP3, AIFF...) and not truncated; "
                         "convert it with ffmpeg if needed")


def _nonfinite(block: np.ndarray) -> tuple[int, int]:
    """How many samples of `block` are NaN or infinite, and the frame of the first (0 when none)."""
    finite = np.isfinite(block)
    if finite.all():
        return 0, 0
    return int(block.size - np.count_nonzero(finite)), int(np.argmin(finite.all(axis=1)))


def _check(path: Path, fh: sf.SoundFile, frames: int, bad: int, first: int | None, warn: Warn) -> None:
    rate = fh.samplerate
    if frames == 0:
        raise JobError(p.E_INPUT_EMPTY, f"{path.name} decodes but holds no audio (0 frames)",
                       hint="export the file again; it has a header and no samples")
    if re.search(r"^data\s*:.*should be", fh.extra_info, re.MULTILINE):  # libsndfile found less than the header says
        warn(f"{path.name} looks truncated: its header promises more audio than the file holds; "
             f"separated the {frames / rate:.2f} s that are there")
    if bad:
        raise JobError(p.E_INPUT_NONFINITE,
                       f"{path.name} holds {bad} NaN or infinite samples (first at {(first or 0) / rate:.3f} s)",
                       hint="repair or re-export the file; separation of non-finite audio is undefined")


class StemWriter:
    """One stem file in the job's format, written block by block (`write`), closed by `with` or `close()`.

    `warn` hears once, at close, how many samples FLAC had to clip. Write errors are E_OUTPUT_WRITE."""

    def __init__(self, path: Path, sample_rate: int, channels: int, fmt: str, *, label: str, warn: Warn) -> None:
        if fmt not in SUBTYPES:
            raise JobError(p.E_BAD_JOB, f"unknown output format {fmt!r}", hint=f"use one of {', '.join(SUBTYPES)}")
        self.path, self.fmt, self.label, self.clipped = path, fmt, label, 0
        self._warn = warn
        try:
            self._file = sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=channels,
                                      format=fmt.upper(), subtype=SUBTYPES[fmt])
        except Exception as exc:  # noqa: BLE001 - permissions, a full disk...
            raise self._error(exc) from exc

    def write(self, block: Any) -> None:
        data = np.asarray(block, dtype=np.float32)
        if data.ndim == 1:
            data = data[:, None]
        if self.fmt == "flac":  # FLAC holds integers only: clip, and count what had to be clipped
            over = int(np.count_nonzero(np.abs(data) > 1.0))
            if over:
                self.clipped += over
                data = np.clip(data, -1.0, 1.0)
        try:
            self._file.write(data)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from exc

    def close(self) -> None:
        """Finish the file; then say how many samples were clipped, if any."""
        if self._file.closed:
            return
        try:
            self._file.close()
        except Exception as exc:  # noqa: BLE001 - the last block is flushed here
            raise self._error(exc) from exc
        if self.clipped:
            self._warn(f"{self.label}: {self.clipped} samples above full scale were clipped for FLAC; "
                       "use WAV (float) to keep them")

    def __enter__(self) -> "StemWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        elif not self._file.closed:  # the job failed anyway: release the file, say nothing more
            try:
                self._file.close()
            except Exception:  # noqa: BLE001
                pass

    def _error(self, exc: BaseException) -> JobError:
        return JobError(p.E_OUTPUT_WRITE, f"cannot write stem {self.label} into {self.path.parent.parent}: {exc}",
                        hint="check free space and write permission of the output dir")
