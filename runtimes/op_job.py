"""One `op` job: a recipe's audio operation (runtimes/ops) on stem files, its one stem written as stems are.

The inputs are read whole (stems of one song), brought to one sample rate and channel count first, as the ops
require (`Op.apply` refuses mixed rates or channel counts; that alignment is the runner's job):
- rate: every input at the first input's rate (soxr's very-high-quality resampler where the env has it, else a
  band-limited FFT resampler in numpy: the light env holds numpy and soundfile only);
- channels: a mono input next to stereo ones is duplicated to stereo (the same sound in both channels); other
  mismatches stay the op's refusal.
The stem is written into the job's staging dir and renamed into place only when complete, so the output dir
never holds a partial stem (as for `separate` jobs).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtimes import protocol as p


def run_op(msg: dict[str, Any], staging: Path, send: Callable[[dict[str, Any]], None],
           cancelled: Callable[[], bool]) -> dict[str, Any]:
    """Run the op of `msg`; returns the `stem` info (with `path`) of the file it wrote. Raises JobError."""
    import soundfile as sf

    from runtimes.audio_io import StemWriter, read_input
    from runtimes.errors import JobCancelled, JobError
    from runtimes.ops import OPS, OpError

    job, name = msg["job"], msg["op"]
    op = OPS.get(name)
    if op is None:
        raise JobError(p.E_BAD_JOB, f"unknown operation {name!r}", hint=f"known operations: {', '.join(sorted(OPS))}")
    if msg["output_format"] not in p.OUTPUT_FORMATS:
        raise JobError(p.E_BAD_JOB, f"unknown output format {msg['output_format']!r}",
                       hint=f"use one of {', '.join(p.OUTPUT_FORMATS)}")
    out_name = msg["output_name"]
    if not out_name or os.path.basename(out_name) != out_name or out_name.startswith("."):
        raise JobError(p.E_BAD_JOB, f"output name {out_name!r} is not a bare file name",
                       hint="output names may not contain directories or start with a dot")
    warnings: list[str] = []
    total = len(msg["inputs"]) + 2
    send({"type": "progress", "job": job, "stage": "read", "done": 0, "total": total})
    arrays, rates = [], []
    for i, path in enumerate(msg["inputs"], 1):
        audio, rate = read_input(Path(path), warnings.append)
        arrays.append(audio)
        rates.append(rate)
        send({"type": "progress", "job": job, "stage": "read", "done": i, "total": total})
        if cancelled():
            raise JobCancelled()
    arrays, rate = align(arrays, rates)
    try:
        result = op.apply(arrays, rate, **msg["params"])
    except OpError as exc:
        raise JobError(p.E_OP_INVALID, f"{exc.message}: {exc.why}", hint=exc.hint) from None
    send({"type": "progress", "job": job, "stage": name, "done": total - 1, "total": total})
    if cancelled():
        raise JobCancelled()
    tmp = staging / f"op.{msg['output_format']}"
    with StemWriter(tmp, rate, result.shape[1], msg["output_format"], label=msg["stem"], warn=warnings.append) as w:
        w.write(result)
    info = sf.info(str(tmp))
    target = Path(msg["output_dir"]) / out_name
    try:
        os.replace(tmp, target)
    except OSError as exc:
        raise JobError(p.E_OUTPUT_WRITE, f"cannot move the stem into {msg['output_dir']}: {exc}") from exc
    send({"type": "progress", "job": job, "stage": name, "done": total, "total": total})
    return {"name": msg["stem"], "path": str(target), "sample_rate": int(info.samplerate),
            "channels": int(info.channels), "frames": int(info.frames), "format": info.format,
            "subtype": info.subtype, "warnings": warnings}


def align(arrays: list[Any], rates: list[int]) -> tuple[list[Any], int]:
    """Every (frames, channels) array at the first one's rate, mono ones duplicated when others are stereo."""
    import numpy as np

    rate = rates[0]
    arrays = [a if r == rate else resample(a, r, rate) for a, r in zip(arrays, rates)]
    channels = {a.shape[1] for a in arrays}
    if channels == {1, 2}:
        arrays = [np.repeat(a, 2, axis=1) if a.shape[1] == 1 else a for a in arrays]
    return arrays, rate


def resample(audio: Any, src: int, dst: int) -> Any:
    """(frames, channels) float32 from `src` Hz to `dst` Hz."""
    import numpy as np

    try:
        import soxr
    except ImportError:
        soxr = None
    if soxr is not None:
        return np.asarray(soxr.resample(audio, src, dst, quality="VHQ"), dtype=np.float32)
    frames = audio.shape[0]
    n_out = round(frames * dst / src)
    spectrum = np.fft.rfft(audio.astype(np.float64), axis=0)
    bins = n_out // 2 + 1
    if bins <= spectrum.shape[0]:
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros((bins - spectrum.shape[0], audio.shape[1]), complex)])
    return (np.fft.irfft(spectrum, n=n_out, axis=0) * (n_out / frames)).astype(np.float32)


def op_result(msg: dict[str, Any], stem: dict[str, Any], started: float) -> dict[str, Any]:
    warnings = stem.pop("warnings")
    return {"type": "result", "job": msg["job"], "stems": [stem], "seconds": round(time.monotonic() - started, 4),
            "warnings": warnings}
