"""Test hook loaded by the worker (STEMSEP_WORKER_TEST_HOOK): registers the `test_fault` model type (and
serves `dsp_center_split` entries that carry `test_fault`: FaultOrCenterSplit).

`fault` (in the job's settings or the model entry's `test_fault`) picks a misbehaviour; each is something
real runtimes do (die, hang, print from C, exit) or a broken protocol line that only a buggy worker could
send. Every fault first leaves a half-written file in the job's staging dir, so tests can check nothing
survives.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import sys
import time
from typing import Any

import numpy as np

from runtimes.legacy import adapter as legacy


def _raw(ctx: Any, data: bytes) -> None:
    """Write straight to the protocol fd, bypassing the encoder (only a broken worker would)."""
    channel = ctx._emit.__self__
    os.write(channel._out, data)


class FaultModel:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.fault = settings.get("fault", "none")
        self.chunks = int(settings.get("chunks", 4))
        self.chunk_seconds = float(settings.get("chunk_seconds", 0.0))

    @classmethod
    def load(cls, job: Any, device: str) -> "FaultModel":
        # From the job's settings (client tests) or the registry entry's own `test_fault` (CLI tests).
        return cls({**job.model.get("test_fault", {}), **job.settings})

    def separate(self, mix: np.ndarray, sample_rate: int, ctx: Any) -> dict[str, np.ndarray]:
        (ctx.staging_dir / "half-written.wav").write_bytes(b"RIFF....WAVE")
        for i in range(self.chunks):
            ctx.check_cancelled()
            time.sleep(self.chunk_seconds)
            ctx.progress("separate", i + 1, self.chunks)
            if i == 0:
                self._misbehave(ctx)
        return {"vocals": mix * 0.5, "instrumental": mix * 0.5}

    def _misbehave(self, ctx: Any) -> None:
        fault = self.fault
        if fault == "c_garbage":
            os.write(1, b"GARBAGE from fd 1, not JSON\n")
            libc = ctypes.CDLL(None)
            libc.puts(b"garbage from C puts()")
            libc.fflush(None)
            print("garbage from print()")
            sys.stdout.flush()
        elif fault == "freeze":  # a hang no thread can answer for: the whole process stops
            os.kill(os.getpid(), signal.SIGSTOP)
        elif fault == "sleep":  # hangs in the job while the heartbeat thread keeps going
            time.sleep(3600)
        elif fault == "sleep_deaf_to_sigterm":  # as `sleep`, in a process that ignores SIGTERM (some libraries
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # install their own handler): only SIGKILL stops it
            time.sleep(3600)
        elif fault == "exit":
            sys.exit(1)
        elif fault == "oversized":
            _raw(ctx, json.dumps({"type": "progress", "job": ctx.job.id, "stage": "x" * (2 << 20),
                                  "done": 1, "total": 1}).encode() + b"\n")
        elif fault == "malformed":
            _raw(ctx, b'{"type": "progress", "job": \n')
        elif fault == "unknown_type":
            _raw(ctx, json.dumps({"type": "telemetry", "job": ctx.job.id}).encode() + b"\n")
        elif fault == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        elif fault == "probe_env":  # report what the worker can see, for the isolation test
            import importlib.util

            import runtimes

            ctx.warn(json.dumps({"sys_path": sys.path, "runtimes": runtimes.__file__,
                                 "typer": importlib.util.find_spec("typer") is not None,
                                 "environ": sorted(os.environ)}))


class FaultOrCenterSplit:
    """Registry entries for CLI tests must pass preflight, whose capability facts refuse a model type
    stemsep-legacy does not build; so those entries use the DSP type, and this loads a FaultModel for the ones
    that carry `test_fault` and the real center split for every other (the default model, in the same tests)."""

    @classmethod
    def load(cls, job: Any, device: str) -> Any:
        if "test_fault" in job.model:
            return FaultModel.load(job, device)
        module, _, name = _CENTER_SPLIT.partition(":")
        return getattr(importlib.import_module(module), name).load(job, device)


_CENTER_SPLIT = legacy.MODEL_TYPES["dsp_center_split"]
legacy.MODEL_TYPES["test_fault"] = f"{__name__}:FaultModel"
legacy.MODEL_TYPES["dsp_center_split"] = f"{__name__}:FaultOrCenterSplit"
