"""One model's inputs on one machine: the artifacts, the env from the driver's lock, one worker kept loaded.

Both engines run inputs through this class, so `--engine local` and `--engine ray` make the same files: the local
engine calls it in the driver's process, a Ray actor calls it on its node (envmgr/batch/ray_engine.py). It needs
nothing but what `Unit` carries (picklable: the typed model entry, not the registry's frozen view) and the node's
own machine config: the env is built from the driver's lock, so every node has the identical env (its id derives
from the lock), and the artifacts are fetched into the node's model store and verified by sha256.

A failed input gets a debug bundle written here, where its worker's transcript and stderr are
(envmgr/batch/bundles.py); a runner that could not start writes one, named by each of its inputs' errors.
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
    from envmgr.envs.request import EnvRequest
    from envmgr.jobs.job_record import JobRecord
    from envmgr.jobs.separate import Plan
    from envmgr.worker.client import Timeouts, WorkerClient


@dataclass(frozen=True)
class Unit:
    """One model group of a batch as the engines get it: the plan (no preflight report; inputs given one by one)
    and the lock its env is built from; for debug bundles, the batch's command and the group's preflight report."""

    plan: Plan
    lock: Lock | None
    command: tuple[str, ...] = ()
    preflight: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """How events and the ledger name the group: its model id."""
        return self.plan.model.id


def error_result(err: StemSepError) -> dict[str, Any]:
    return {"error": err.to_dict()}


def output_error(message: str, err: OSError) -> dict[str, Any]:
    """An input's result when its outputs could not be written where the driver asked."""
    return {"error": {"code": "E_OUTPUT", "message": message, "why": str(err),
                      "hint": "check the output dir is writable on every node", "exit_code": 2}}


class ModelRunner:
    def __init__(self, unit: Unit, timeouts: Timeouts | None = None) -> None:
        self.unit, self.timeouts = unit, timeouts
        self.plan = unit.plan
        self.client: WorkerClient | None = None
        self.env: Any = None
        self.failed: StemSepError | None = None  # why the runner could not start: every input fails with it
        self.request: EnvRequest | None = None
        self.start_bundle: Path | None = None  # the bundle of `failed`, written at the first input
        self.private_bundles: Path | None = None  # with --collect: where bundles wait to be returned

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
            self.request = request = request_for_model(self.plan.model, self.plan.runtime, self.config)
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
            return self._start_failure(path, collect)
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
            out = self._failure(err, path, collect)
        except OSError as err:
            out = output_error(f"cannot write the stems of {path}", err)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        out["seconds"] = time.monotonic() - started
        return out

    def _failure(self, err: StemSepError, path: Path, collect: bool) -> dict[str, Any]:
        """The input's error result, naming its debug bundle (with `collect`, the bundle's bytes come along)."""
        from envmgr.batch.bundles import bundle_dir, named, write_batch_bundle

        folder = self._private_bundles() if collect else bundle_dir(self.plan.output_dir)
        bundle = write_batch_bundle(self._record(path), err, getattr(self, "config", None), folder)
        return named(error_result(err), bundle, collect)

    def _start_failure(self, path: Path, collect: bool) -> dict[str, Any]:
        """Every input of a runner that could not start fails with its error and names one bundle, written at the
        first (returned as bytes once, with `collect`)."""
        if self.start_bundle is None:
            out = self._failure(self.failed, path, collect)  # type: ignore[arg-type]
            self.start_bundle = Path(out["error"].get("debug_bundle") or "")
            return out
        out = error_result(self.failed)  # type: ignore[arg-type]
        if self.start_bundle.name:
            out["error"]["debug_bundle"] = str(self.start_bundle)
        return out

    def _private_bundles(self) -> Path:
        if self.private_bundles is None:
            self.private_bundles = Path(tempfile.mkdtemp(prefix="stemsep-batch-bundles-"))
        return self.private_bundles

    def _record(self, path: Path) -> JobRecord:
        """What the bundle of `path`'s run needs: its one-input plan, the group's preflight report, the env
        request and lock (or the env), and the worker with its transcript and stderr."""
        from envmgr.jobs.job_record import JobRecord

        record = JobRecord(command=list(self.unit.command) or ["stemsep", "batch"], kind="batch")
        if self.unit.preflight is not None:
            record.note_event({"type": "preflight", "report": self.unit.preflight})
        model_id = self.plan.model.id
        record.note_plans([replace(self.plan, inputs=(path,))])
        if self.env is not None:
            record.note_env(model_id, self.env)
        if self.request is not None:
            if self.env is None:
                record.note_env_failed(model_id, self.manager, self.request, self.unit.lock)
            record.note_request(model_id, self.request)
        if self.client is not None:
            record.note_worker(self.client, getattr(self.env, "id", ""), self.plan.runtime)
        return record

    def close(self) -> None:
        if self.private_bundles is not None:
            shutil.rmtree(self.private_bundles, ignore_errors=True)
            self.private_bundles = None
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.env is not None and self.failed is None:
            self.manager.record_use(self.env.id, self.plan.model.id)
