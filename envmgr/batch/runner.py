"""One model's inputs on one machine: the artifacts, the env from the driver's lock, one worker kept loaded.

Both engines run inputs through this class, so `--engine local` and `--engine ray` make the same files: the local
engine calls it in the driver's process, a Ray actor calls it on its node (envmgr/batch/ray_engine.py). It needs
nothing but what `Unit` carries (picklable: the typed model entry, not the registry's frozen view) and the node's
own machine config: the env is built from the driver's lock, so every node has the identical env (its id derives
from the lock), and the artifacts are fetched into the node's model store and verified by sha256.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import StemSepError

if TYPE_CHECKING:
    from envmgr.envs.lock import Lock
    from envmgr.jobs.separate import Plan
    from envmgr.worker.client import Timeouts, WorkerClient


@dataclass(frozen=True)
class Unit:
    """One model group of a batch as the engines get it: the plan (no preflight report; inputs given one by one)
    and the lock its env is built from."""

    plan: Plan
    lock: Lock | None


def error_result(err: StemSepError) -> dict[str, Any]:
    return {"error": err.to_dict()}


class ModelRunner:
    def __init__(self, unit: Unit, timeouts: Timeouts | None = None) -> None:
        self.unit, self.timeouts = unit, timeouts
        self.plan = unit.plan
        self.client: WorkerClient | None = None
        self.env: Any = None
        self.failed: StemSepError | None = None  # why the runner could not start: every input fails with it

    def start(self) -> ModelRunner:
        """Artifacts, env and worker; a failure is kept and returned for each input instead of raised."""
        from envmgr.config import load_config
        from envmgr.errors import Cancelled
        from envmgr.envs.manager import EnvManager
        from envmgr.envs.request import request_for_model
        from envmgr.jobs.separate import fetch_artifacts
        from envmgr.worker.code_copy import ensure_worker_code

        try:
            self.config = load_config()
            self.plan = fetch_artifacts(self.plan, lambda event: None, self.config)
            self.manager = EnvManager(self.config)
            request = request_for_model(self.plan.model, self.plan.runtime, self.config)
            self.env = self.manager.ensure(request, lock=self.unit.lock)
            self.code = ensure_worker_code(self.config.cache_dir)
            self._spawn()
        except Cancelled:
            raise
        except StemSepError as err:
            self.failed = err
        return self

    def _spawn(self) -> None:
        from envmgr.worker.client import Timeouts, WorkerClient

        self.client = WorkerClient(self.env.python, self.plan.runtime, self.code, env_id=self.env.id,
                                   timeouts=self.timeouts or Timeouts())
        self.client.start()

    def info(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "env_id": getattr(self.env, "id", None),
                "worker_pid": self.client.pid if self.client else None,
                "error": self.failed.to_dict() if self.failed else None}

    def run(self, path: Path, *, collect: bool = False) -> dict[str, Any]:
        """Separate one input: {"stems": [...], "seconds"} or {"error": {...}}. With `collect`, the stems are made
        in a private temp dir and returned as bytes (`files`: name -> bytes) for the driver to write."""
        from envmgr.errors import Cancelled

        if self.failed is not None:
            return error_result(self.failed)
        started = time.monotonic()
        plan = self.plan
        scratch = Path(tempfile.mkdtemp(prefix="stemsep-batch-")) if collect else None
        try:
            if scratch is not None:
                plan = replace(plan, output_dir=scratch)
            else:
                plan.output_dir.mkdir(parents=True, exist_ok=True)
            if self.client is None or not self.client.alive:  # the last one crashed on an input
                self._spawn()
            assert self.client is not None
            result = self.client.run(plan.job_message(path))
            out: dict[str, Any] = {"stems": result["stems"], "warnings": result.get("warnings") or []}
            if scratch is not None:
                out["files"] = {Path(s["path"]).name: Path(s["path"]).read_bytes() for s in result["stems"]}
        except Cancelled:
            raise  # Ctrl-C ends the batch; the input is not failed, it is left for the next submission
        except StemSepError as err:
            out = error_result(err)
        except OSError as err:
            out = {"error": {"code": "E_OUTPUT", "message": f"cannot write the stems of {path}", "why": str(err),
                             "hint": "check the output dir is writable on every node", "exit_code": 2}}
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        out["seconds"] = time.monotonic() - started
        return out

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.env is not None and self.failed is None:
            self.manager.record_use(self.env.id, self.plan.model.id)
