"""`stemsep serve --stdio`: StemSep's desktop-app backend contract (docs/serve.md; the reference is
../shared/reference/stemsep-app-backend-contract.md) over the durable queue and scheduler.

JSON lines both ways. The first line out is `bridge_ready`; then every request `{"command", "id", ...payload}`
gets one reply `{"id", "success": true, "data"}` or `{"id", "success": false, "error": "CODE: message"}`;
events (`type`, never `success`) come between. Requests run on a small thread pool, so `ping` answers while
a preflight or an install is busy; lines are written whole under one lock. Better than the app's own
backend: a failure of any command is a `success:false` reply and never ends the process; a malformed line
gets a `backend_warning` and the stream goes on; a cancelled running job always ends with a terminal event
(the queue's: the scheduler stops the worker between chunks). stdin EOF ends the server (exit 0).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

from envmgr.serve.queue import FINAL, QUEUED, RUNNING, QueueError
from envmgr.serve.stdio_catalog import (
    AppError,
    Catalog,
    catalog_status,
    listing_counts,
    recipes,
)
from envmgr.serve.stdio_events import job_events, snapshot
from registry.errors import StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.serve.scheduler import Scheduler
    from envmgr.serve.stdio_fields import AppFields

log = logging.getLogger("stemsep.serve.stdio")
BACKEND_NAME = "stemsep-runtime"
_FOLLOW_WAIT = 1.0  # seconds a job's event follower waits for more before looking again


class StdioServer:
    def __init__(self, scheduler: Scheduler, config: MachineConfig, out: IO[str]) -> None:
        self.scheduler, self.queue, self.config = scheduler, scheduler.queue, config
        self._out, self._write_lock = out, threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stdio-cmd")
        self._submit_lock = threading.Lock()
        self._following: set[str] = set()
        self._stopping = threading.Event()
        self.commands: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": self.ping, "get_backend_status": self.backend_status,
            "get_catalog": self.get_catalog, "get_models": self.get_models, "get_recipes": lambda p: recipes(),
            "get_workflows": lambda p: {"workflows": []}, "get_catalog_status": lambda p: catalog_status(),
            "get_selection_installation": self.selection_installation, "install_selection": self.install_selection,
            "resolve_execution_plan": self.execution_plan, "separation_preflight": self.preflight,
            "run_selection_job": self.run_selection_job, "separate_audio": self.run_selection_job,
            "get_selection_job": self.get_selection_job, "list_selection_jobs": self.list_selection_jobs,
            "cancel_selection_job": self.cancel_selection_job, "cancel_job": self.cancel_selection_job,
            "pause_queue": self.pause_queue, "resume_queue": self.resume_queue, "reorder_queue": self.reorder_queue,
            "get-gpu-devices": self.gpu_devices, "get_gpu_devices": self.gpu_devices,
            "get_runtime_fingerprint": self.runtime_fingerprint,
        }

    # --- the stream ----------------------------------------------------------------------------------
    def serve(self, lines: IO[str]) -> None:
        """bridge_ready, then one request per line until stdin ends."""
        self.write(self.bridge_ready())
        for job in self.queue.list((QUEUED, RUNNING)):  # left by an earlier server: their end is news too
            self.follow(job.id, after_seq=job.last_seq)
        for line in lines:
            if line.strip():
                self.handle_line(line)
        self._stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def handle_line(self, line: str) -> None:
        try:
            request = json.loads(line)
        except ValueError as exc:
            self.write({"type": "backend_warning", "message": f"malformed request: not JSON ({exc})"})
            return
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            self.write({"type": "backend_warning", "message": "malformed request: expected an object with a "
                                                               "string `command`"})
            return
        nested = request.get("payload")
        if isinstance(nested, dict):  # the schema allows it; top-level keys win (the app flattens)
            request = {**nested, **request}
        self._pool.submit(self._answer, request)

    def _answer(self, request: dict[str, Any]) -> None:
        command, reply_id = request["command"], request.get("id")
        reply: dict[str, Any] = {} if reply_id is None else {"id": reply_id}
        then: Callable[[], None] | None = None
        try:
            handler = self.commands.get(command)
            if handler is None:
                raise AppError("UNKNOWN_COMMAND", f"Unknown command: {command}")
            data = handler(request)
            if isinstance(data, _Then):
                data, then = data.data, data.then
            reply.update(success=True, data=data)
        except AppError as err:
            reply.update(success=False, error=f"{err.app_code}: {_message(err)}")
        except QueueError as err:
            code = "NOT_FOUND" if err.code in ("E_JOB_UNKNOWN", "E_JOB_FINISHED") else "INVALID"
            reply.update(success=False, error=f"{code}: {_message(err)}")
        except StemSepError as err:
            reply.update(success=False, error=f"{_APP_CODES.get(command, 'FAILED')}: {_message(err)}")
        except Exception as exc:  # a bug answers as a failure; the server goes on
            print(f"stemsep serve --stdio: {command}: {traceback.format_exc()}", file=sys.stderr, flush=True)
            reply.update(success=False, error=f"INTERNAL: {type(exc).__name__}: {exc} (a bug in StemSep; "
                                              "the traceback is on stderr)")
        self.write(reply)
        if then is not None:
            then()

    def write(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, default=str, ensure_ascii=False)
        with self._write_lock:
            try:
                self._out.write(text + "\n")
                self._out.flush()
            except (BrokenPipeError, ValueError):
                self._stopping.set()  # the app is gone; stdin's end follows

    # --- events of jobs ------------------------------------------------------------------------------
    def follow(self, job_id: str, after_seq: int = 0) -> None:
        """Stream a job's events as the app's, from `after_seq`, until its terminal event (one thread per job)."""
        with self._submit_lock:
            if job_id in self._following:
                return
            self._following.add(job_id)
        threading.Thread(target=self._follow, args=(job_id, after_seq), daemon=True, name=f"follow-{job_id[:8]}").start()

    def _follow(self, job_id: str, after_seq: int) -> None:
        mapper = job_events(self.queue.get(job_id))
        seq = 0
        try:
            while not self._stopping.is_set():
                for event in self.queue.events(job_id, seq):
                    seq = event["seq"]
                    for app_event in mapper.map(event):
                        if seq > after_seq:
                            self.write(app_event)
                    if event["type"] in FINAL:
                        return
                self.queue.wait_events(job_id, seq, _FOLLOW_WAIT)
        except Exception:  # the queue closed under us at shutdown
            if not self._stopping.is_set():
                print(f"stemsep serve --stdio: events of {job_id}: {traceback.format_exc()}", file=sys.stderr)
        finally:
            with self._submit_lock:
                self._following.discard(job_id)

    # --- readiness ----------------------------------------------------------------------------------
    def bridge_ready(self) -> dict[str, Any]:
        from envmgr.serve.stdio_system import gpu_devices, stemsep_version

        try:
            models, recipe_count = listing_counts()
        except StemSepError as err:  # a broken registry: say so, keep serving (commands will say why)
            print(f"stemsep serve --stdio: the registry cannot be read: {err}", file=sys.stderr, flush=True)
            models, recipe_count = 0, 0
        has_gpu = bool(gpu_devices()["gpus"])
        capabilities = [c for c, on in (("models", models > 0), ("recipes", recipe_count > 0), ("gpu", has_gpu),
                                        ("separation", True)) if on]
        return {"type": "bridge_ready", "capabilities": capabilities, "models_count": models,
                "recipes_count": recipe_count, "backend": {"name": BACKEND_NAME, "version": stemsep_version()},
                "catalog": catalog_status()}

    def ping(self, payload: dict[str, Any]) -> dict[str, Any]:
        from envmgr.serve.stdio_system import gpu_devices

        return {"status": "ok", "ok": True, "rust_backend": False, "has_gpu": bool(gpu_devices()["gpus"])}

    def backend_status(self, payload: dict[str, Any]) -> dict[str, Any]:
        from envmgr.serve.stdio_system import gpu_devices

        jobs = self.queue.list((QUEUED, RUNNING))
        running = [self._snapshot(j) for j in jobs if j.state == RUNNING]
        queued = [self._snapshot(j) for j in jobs if j.state == QUEUED]
        return {"backend_ready": True, "worker_busy": bool(running),
                "active_job_id": running[0]["jobId"] if running else None, "active_jobs": running,
                "queue_depth": len(queued), "queued_jobs": queued, "queue_paused": self.queue.paused,
                "rust_backend": False, "has_gpu": bool(gpu_devices()["gpus"])}

    def gpu_devices(self, payload: dict[str, Any]) -> dict[str, Any]:
        from envmgr.serve.stdio_system import gpu_devices

        return gpu_devices()

    def runtime_fingerprint(self, payload: dict[str, Any]) -> dict[str, Any]:
        import platform

        from envmgr.serve.stdio_system import stemsep_version

        return {"executable": sys.executable, "version": platform.python_version(), "platform": platform.platform(),
                "stemsep": stemsep_version(), "note": "models run in their own envs; `stemsep doctor` lists them"}

    # --- catalog ------------------------------------------------------------------------------------
    def _catalog(self) -> Catalog:
        from envmgr.artifacts import ArtifactStore

        return Catalog(self.scheduler.registry(), ArtifactStore(self.config.model_store))

    def get_catalog(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._catalog().catalog()

    def get_models(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return self._catalog().models()

    def selection_installation(self, payload: dict[str, Any]) -> dict[str, Any]:
        catalog = self._catalog()
        return catalog.installation(*catalog.selection(payload))

    def execution_plan(self, payload: dict[str, Any]) -> dict[str, Any]:
        catalog = self._catalog()
        return catalog.execution_plan(*catalog.selection(payload), payload.get("config"))

    def preflight(self, payload: dict[str, Any]) -> dict[str, Any]:
        from envmgr.serve.stdio_preflight import separation_preflight

        return separation_preflight(payload, self._catalog(), self.config, self._gpus())

    def install_selection(self, payload: dict[str, Any]) -> Any:
        from envmgr.serve.stdio_install import install_selection

        catalog = self._catalog()
        kind, selection_id = catalog.selection(payload)
        data, start = install_selection(catalog, kind, selection_id, self.write)
        return _Then(data, start)

    # --- jobs ---------------------------------------------------------------------------------------
    def run_selection_job(self, payload: dict[str, Any]) -> Any:
        catalog = self._catalog()
        kind, selection_id = catalog.selection(payload)
        given = _pick(payload, "inputFile", "input_file", "file_path", "filePath")
        if not isinstance(given, str) or not given:
            raise AppError("INVALID", "inputFile is required", code="E_JOB_SPEC", hint="send the audio file's path")
        fields = self._fields(payload, catalog, kind, selection_id)
        if fields.refused:  # a field we cannot honour is refused by name, never dropped
            raise fields.refused[0]
        output_dir = _pick(payload, "outputDir", "output_dir")
        spec: dict[str, Any] = {"inputs": [os.path.abspath(given)],
                                "output_dir": os.path.abspath(output_dir) if output_dir else None,
                                "format": fields.output_format}
        # a recipe runs as `stemsep run` runs it (the scheduler's recipe jobs); a model as `stemsep separate`
        spec.update({"kind": "recipe", "recipe": selection_id} if kind == "recipe"
                    else {"kind": "separate", "models": [selection_id]})
        if fields.spec_options():
            spec["options"] = fields.spec_options()
        try:
            if kind == "model":
                from envmgr.serve.stdio_fields import check_settings

                check_settings(catalog.registry, selection_id, None, fields, self.config)
            with self._submit_lock:  # the app re-sends on a timeout: the same request is the same job
                same = next((j for j in self.queue.list((QUEUED, RUNNING)) if _same(j.spec.to_json(), spec)), None)
                job_id = same.id if same is not None else self.scheduler.submit(spec)
        except StemSepError as err:
            raise AppError("START_FAILED", f"Failed to start separation: {_message(err)}") from err
        job = self._snapshot(self.queue.get(job_id))
        data = {"job_id": job_id, "status": job["status"], "job": job, "deduplicated": same is not None}
        return _Then(data, lambda: self.follow(job_id))  # after the reply: it precedes the job's events

    def _fields(self, payload: dict[str, Any], catalog: Catalog, kind: str, selection_id: str) -> AppFields:
        """The app's job fields (overlap, device, stems ...) in our terms, with what cannot be honoured."""
        from envmgr.serve.stdio_fields import read_fields

        stems = list(catalog.model(selection_id).capabilities.stems) if kind == "model" else None
        return read_fields(payload, model_stems=stems, is_recipe=kind == "recipe", server_gpus=self._gpus())

    def _gpus(self) -> list[int]:
        return sorted({s["gpu"] for s in self.scheduler.slots() if s["gpu"] is not None})

    def get_selection_job(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._snapshot(self.queue.get(_job_id(payload)))

    def list_selection_jobs(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        jobs = sorted(self.queue.list(), key=lambda j: j.created, reverse=True)
        return [self._snapshot(j) for j in jobs]

    def cancel_selection_job(self, payload: dict[str, Any]) -> dict[str, Any]:
        job = self.queue.cancel(_job_id(payload))
        return {"job_id": job.id, "status": "cancelled" if job.state in FINAL else "cancelling",
                "job": self._snapshot(job)}

    def pause_queue(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.queue.pause()
        return {"paused": True}

    def resume_queue(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.queue.resume()
        self.scheduler.wake()
        return {"paused": False}

    def reorder_queue(self, payload: dict[str, Any]) -> dict[str, Any]:
        ids = payload.get("job_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise AppError("INVALID", "job_ids must be a list of job ids")
        return {"queued": [j.id for j in self.queue.reorder(ids)]}

    def _snapshot(self, job: Any) -> dict[str, Any]:
        output_dir = str(self.scheduler.paths.output_dir(job.spec.output_dir, job.id)) \
            if job.spec.output_dir is None else job.spec.output_dir
        return snapshot(job, self.queue.events(job.id), output_dir)


class _Then:
    """A reply's data and what to do once the reply is written (events that must follow it)."""

    def __init__(self, data: Any, then: Callable[[], None]) -> None:
        self.data, self.then = data, then


_APP_CODES = {"run_selection_job": "START_FAILED", "separate_audio": "START_FAILED",
              "install_selection": "INSTALL_SELECTION_FAILED"}


def _message(err: StemSepError | AppError) -> str:
    text = err.message
    if err.code and err.code not in text:
        text += f" [{err.code}]"
    return f"{text}; {err.hint}" if err.hint else text


def _pick(payload: dict[str, Any], *names: str) -> Any:
    return next((payload[n] for n in names if payload.get(n) not in (None, "")), None)


def _job_id(payload: dict[str, Any]) -> str:
    job_id = _pick(payload, "job_id", "selection_job_id", "jobId")
    if not isinstance(job_id, str):
        raise AppError("INVALID", "job_id is required")
    return job_id


def _same(stored: dict[str, Any], spec: dict[str, Any]) -> bool:
    return all(stored.get(k) == (list(v) if isinstance(v, tuple) else v) for k, v in spec.items())


def protocol_stdout() -> IO[str]:
    """The protocol's own copy of stdout; fd 1 then points at stderr, so a stray print, a library's warning
    or a child process that inherits stdout can never put a non-JSON line into the app's stream."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out
