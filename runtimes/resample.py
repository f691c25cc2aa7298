"""Input at another sample rate than the model's: resampled once, block by block, into a float WAV in the job's
staging dir (soxr's streaming resampler, very-high quality), so memory stays flat whatever the track's length.
The model then reads that file as its input and its stems come out at the model's rate, as msst and
audio-separator do with theirs (so preflight's one rule, W_RESAMPLE, holds for every runtime).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import numpy as np
import soundfile as sf

from runtimes.audio_io import BLOCK_FRAMES, InputAudio


def resample_file(audio: InputAudio, rate: int, path: Path,
                  progress: Optional[Any] = None) -> InputAudio:
    """`audio` at `rate`, written to `path` (32-bit float WAV) and opened for reading block by block."""
    import soxr

    stream = soxr.ResampleStream(audio.sample_rate, rate, audio.channels, dtype="float32", quality="VHQ")
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=audio.channels, subtype="FLOAT") as out:
        for start in range(0, audio.frames, BLOCK_FRAMES):
            stop = min(start + BLOCK_FRAMES, audio.frames)
            out.write(stream.resample_chunk(np.ascontiguousarray(audio.read(start, stop)), last=False))
            if progress is not None:
                progress(stop, audio.frames)
        out.write(stream.resample_chunk(np.zeros((0, audio.channels), dtype=np.float32), last=True))
    file = sf.SoundFile(str(path))
    return InputAudio(file, file.frames)


@contextmanager
def at_model_rate(audio: InputAudio, rate: Optional[int], ctx: Any) -> Iterator[InputAudio]:
    """`audio` as the model takes it: itself when the model takes any rate (None) or the input is at `rate`, else
    resampled (with a warning the user sees in the result)."""
    if rate is None or audio.sample_rate == rate:
        yield audio
        return
    path = ctx.staging_dir / f"input-{rate}Hz.wav"
    resampled = resample_file(audio, rate, path, lambda done, total: ctx.progress("resample", done, total))
    ctx.warn(f"{ctx.job.input.name} is {audio.sample_rate} Hz; resampled to the model's {rate} Hz "
             f"(stems are {rate} Hz)")
    try:
        yield resampled
    finally:
        resampled.close()
        path.unlink(missing_ok=True)
