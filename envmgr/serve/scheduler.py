"""Runs the queue's jobs: `concurrency` slots (the CLI's default: one per GPU, each pinned to it; one without a
GPU), each a thread with its own warm workers (envmgr/serve/workers.py), taking the next job from the durable
queue (envmgr/serve/queue.py). Finished jobs' uploads and old finished jobs go (envmgr/serve/retention.py).

Which job next: the head of the queue, except that a slot whose last job had the same group (same kind,
models and runtime: the same workers and loaded weights) takes the next job of that group first, so a
model is not reloaded between jobs that share it. Fairness: a job can be passed over this way at most
`max_bypass` times; then it runs next, so no job waits for ever behind a long run of another model.

A job runs as `stemsep separate` runs it (plan_separation per model, then run_separation) with its
events appended to the queue as they come, between the queue's own `started` and its terminal event
(`completed`, `failed` or `cancelled`: exactly one, always last). Cancelling a running job asks its
worker to stop between chunks; the next input of the job does not start.

`Scheduler.submit` is what both front ends call: it checks the spec's paths (envmgr/serve/paths.py) and
that its kind can run, then queues it.
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from envmgr.errors import Cancelled
from envmgr.serve.paths import PathPolicy
from envmgr.serve.queue import CANCELLED, COMPLETED, FAILED, FINAL, Job, JobQueue
from envmgr.serve.retention import SWEEP_INTERVAL_S, Retention
from envmgr.serve.spec import JobSpec, SpecError, parse_spec
from envmgr.serve.workers import WarmWorkers
from envmgr.worker.client import Timeouts
from registry.errors import ExitCode, StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.jobs.job_record import JobRecord

log = logging.getLogger("stemsep.serve")
RUNNABLE_KINDS = ("separate", "recipe")


class _Stop(BaseException):
    """The server is stopping: the running job is left `running`, so the next server runs it again."""


@dataclass
class _Slot:
    index: int
    workers: WarmWorkers
    last_group: str | None = None
    job: Job | None = None
    worker_job: str | None = None  # the protocol job id the worker is running now
    thread: threading.Thread | None = None
    record: JobRecord | None = None  # the running job's facts, for its debug bundle if it fails


@dataclass
class _Run:
    """What one job's run collected from its events."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


class Scheduler:
    def __init__(self, queue: JobQueue, config: MachineConfig, paths: PathPolicy, *, concurrency: int = 1,
                 gpus: Sequence[int] = (), max_bypass: int = 4, keep_workers: int = 2,
                 timeouts: Timeouts = Timeouts()) -> None:
        """`gpus`: the machine's GPU indices; slot i is pinned to gpus[i % len(gpus)] (none: no pinning)."""
        self.queue, self.config, self.paths = queue, config, paths
        self.max_bypass = max_bypass
        self._slots = [_Slot(i, WarmWorkers(keep=keep_workers, timeouts=timeouts,
                                            gpu=gpus[i % len(gpus)] if gpus else None))
                       for i in range(max(1, concurrency))]
        self._bypassed: dict[str, int] = {}
        self._registry: tuple[Any, Any] | None = None  # (files' stamp, Registry): read again when a file changes
        self._registry_lock = threading.Lock()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self.retention = Retention.from_config(queue, paths, config)
        self._sweeper: threading.Thread | None = None
        queue.on_cancel(self._cancel_running)

    # --- front ends --------------------------------------------------------------------------------
    def submit(self, raw: dict[str, Any] | JobSpec) -> str:
        """Check a job spec (shape, kind, paths) and queue it; returns its id. Raises SpecError/PathRefused."""
        spec = raw if isinstance(raw, JobSpec) else parse_spec(raw)
        if spec.kind not in RUNNABLE_KINDS:
            raise SpecError(f"{spec.kind} jobs cannot run yet", code="E_JOB_KIND_NOT_RUNNABLE",
                            why="this server runs: " + ", ".join(RUNNABLE_KINDS),
                            hint="run the models of the recipe as separate jobs for now")
        if spec.kind == "recipe":
            _recipe(spec.recipe or "")  # an unknown id is the client's error, said now: E_UNKNOWN_RECIPE
        if spec.options.get("env"):  # as `--env NAME`: adopted (E_UNKNOWN_ENV), for the spec's runtime if it names one
            from envmgr.preflight.adopted_env import chosen_env

            chosen_env(spec.options["env"], spec.runtime, self.config)
        for given in spec.inputs:
            self.paths.input_path(given)
        if spec.output_dir is not None:
            self.paths.output_dir(spec.output_dir, "")
        job_id = self.queue.submit(spec)
        self.wake()
        return job_id

    def wake(self) -> None:
        """Something changed (a job queued, the queue resumed): idle slots look again."""
        with self._wake:
            self._wake.notify_all()

    # --- life ----------------------------------------------------------------------------------------
    def start(self) -> "Scheduler":
        self.retention.sweep()  # before any job runs: what the last server left beyond the limits
        self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True, name="serve-retention")
        self._sweeper.start()
        for slot in self._slots:
            slot.thread = threading.Thread(target=self._loop, args=(slot,), daemon=True, name=f"serve-slot-{slot.index}")
            slot.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; a running job's worker is asked to stop and the job stays `running` in the queue,
        so the next server runs it again from the start. Then the warm workers are stopped."""
        self._stopping.set()
        self.wake()
        for slot in self._slots:
            self._stop_worker_job(slot)
        for slot in self._slots:
            if slot.thread is not None:
                slot.thread.join(timeout)
            slot.workers.close()
        if self._sweeper is not None:
            self._sweeper.join(timeout)

    def registry(self) -> Any:
        """The registry `separate` would read, parsed once per change of its files (not once per job)."""
        from envmgr.catalog.registry_files import load, registry_files
        from registry.stamps import stamp

        base, overlays = registry_files()
        key = stamp([*base, *overlays])
        with self._registry_lock:
            if self._registry is None or self._registry[0] != key:
                self._registry = (key, load())
            return self._registry[1]

    def slots(self) -> list[dict[str, Any]]:
        """Each slot: its index, the GPU it is pinned to (None: not pinned) and the job it runs (None: idle)."""
        return [{"slot": s.index, "gpu": s.workers.gpu, "job": s.job.id if s.job else None} for s in self._slots]

    @property
    def workers_started(self) -> int:
        return sum(slot.workers.started for slot in self._slots)

    # --- the slots -----------------------------------------------------------------------------------
    def _loop(self, slot: _Slot) -> None:
        while not self._stopping.is_set():
            job = self.queue.claim(lambda queued: self._pick(slot, queued))
            if job is None:
                with self._wake:
                    self._wake.wait(1.0)
                continue
            slot.job = job
            try:
                self._run(slot, job)
            except _Stop:
                return
            finally:
                slot.job = slot.worker_job = None
                self._bypassed.pop(job.id, None)
            self.retention.release_uploads(job)

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(SWEEP_INTERVAL_S):
            try:
                self.retention.sweep()
            except Exception:  # never the server's end: the next sweep tries again
                log.warning("retention sweep failed: %s", traceback.format_exc())

    def _pick(self, slot: _Slot, queued: list[Job]) -> Job | None:
        if self._stopping.is_set():
            return None
        return pick_next(queued, slot.last_group, self._bypassed, self.max_bypass)

    def _run(self, slot: _Slot, job: Job) -> None:
        from envmgr.jobs.job_record import JobRecord

        slot.last_group = job.group
        slot.record = JobRecord(command=["stemsep", "serve", "job", job.id], kind=f"serve {job.spec.kind}")
        run = _Run()
        emit = self._emitter(slot, job, run)
        try:
            RUNNERS[job.spec.kind](self, slot, job, emit)
        except _Stop:
            raise
        except StemSepError as err:
            if self._stopping.is_set():
                raise _Stop() from None
            if self.queue.get(job.id).cancel_requested or isinstance(err, Cancelled) or err.code == "E_CANCELLED":
                self._finish_cancelled(job, run)
            else:
                error = {**err.to_dict(), **self._bundle(slot, err, None)}
                self.queue.finish(job.id, FAILED, result=_result(run), error=error, event=error)
            return
        except Exception as exc:  # a bug: the job fails, the server goes on
            trace = traceback.format_exc()
            log.error("job %s: %s", job.id, trace)
            bug = StemSepError(f"internal error: {exc}", code="E_INTERNAL", exit_code=ExitCode.INTERNAL,
                               why=type(exc).__name__,
                               hint="this is a bug in StemSep; the server's log has the traceback")
            error = {"code": bug.code, "message": bug.message, "why": bug.why, "hint": bug.hint,
                                     **self._bundle(slot, bug, trace)}
            self.queue.finish(job.id, FAILED, result=_result(run), error=error, event=error)
            return
        if self._stopping.is_set():
            raise _Stop()
        if self.queue.get(job.id).cancel_requested:
            self._finish_cancelled(job, run)
        else:
            self.queue.finish(job.id, COMPLETED, result=_result(run), event={"outputs": run.outputs})

    def _bundle(self, slot: _Slot, err: StemSepError, trace: str | None) -> dict[str, str]:
        """A failed job's debug bundle, as `stemsep separate` writes one (none for what the client asked wrong:
        exit 2); {"debug_bundle": path} for its error, {} when none was written (the log says why)."""
        from envmgr.diagnostics.bundle import wants_bundle, write_bundle

        if slot.record is None or not wants_bundle(err):
            return {}
        try:
            path = write_bundle(slot.record, err, config=self.config, traceback=trace)
        except Exception:  # never instead of the job's own outcome
            log.warning("could not write the debug bundle: %s", traceback.format_exc())
            return {}
        return {"debug_bundle": str(path)}

    def _finish_cancelled(self, job: Job, run: _Run) -> None:
        self.queue.finish(job.id, CANCELLED, result=_result(run), event={"message": "cancelled while running"})

    def _emitter(self, slot: _Slot, job: Job, run: _Run) -> Callable[[dict[str, Any]], None]:
        models: dict[str, str] = {}  # worker job id -> model: a worker's `result` does not name its model

        def emit(event: dict[str, Any]) -> None:
            kind = event.get("type")
            if kind == "job":  # a worker job is about to start: the moment a cancel or a stop takes effect
                if self._stopping.is_set():
                    raise _Stop()
                if self.queue.get(job.id).cancel_requested:
                    raise Cancelled("the job was cancelled", why="a client cancelled it")
                slot.worker_job = event.get("job")
                models[event["job"]] = event.get("model", "")
            elif kind == "result" and job.spec.kind == "separate":  # a recipe's step results are intermediates
                run.outputs.append({"input": event.get("input"), "model": models.get(event.get("job", "")),
                                    "stems": {s["name"]: s["path"] for s in event.get("stems", [])}})
            elif kind == "output":  # a recipe's final output, written in place
                run.outputs.append({"input": event.get("input"), "model": job.spec.recipe,
                                    "stems": {event["name"]: event["path"]}})
            elif kind == "error":
                run.errors.append(event)
            self.queue.append_event(job.id, event)
        return emit

    def _cancel_running(self, job_id: str) -> None:
        cancelled = self.queue.get(job_id)
        if cancelled.state in FINAL:  # it was queued: it ended at once, its uploads can go
            self.retention.release_uploads(cancelled)
            return
        for slot in self._slots:
            if slot.job is not None and slot.job.id == job_id:
                self._stop_worker_job(slot)

    def _stop_worker_job(self, slot: _Slot) -> None:
        worker, worker_job = slot.workers.current, slot.worker_job
        if worker is not None and worker_job is not None and worker.alive:
            try:
                worker.request_cancel(worker_job)
            except StemSepError:
                pass  # the worker is gone already: the job's run ends with that error


def pick_next(queued: list[Job], last_group: str | None, bypassed: dict[str, int], max_bypass: int) -> Job:
    """The head of the queue, or the next job of `last_group` (the slot's warm model) while every job it
    would jump over has been passed over fewer than `max_bypass` times. Counts the jumps in `bypassed`."""
    head = queued[0]
    if last_group is None or head.group == last_group or bypassed.get(head.id, 0) >= max_bypass:
        return head
    same = next((j for j in queued if j.group == last_group), None)
    if same is None:
        return head
    ahead = queued[:queued.index(same)]
    if any(bypassed.get(j.id, 0) >= max_bypass for j in ahead):
        return next(j for j in ahead if bypassed.get(j.id, 0) >= max_bypass)
    for job in ahead:  # every job it jumps over waits once more
        bypassed[job.id] = bypassed.get(job.id, 0) + 1
    return same


def _result(run: _Run) -> dict[str, Any]:
    return {"outputs": run.outputs, "stems": {Path(p).name: p for o in run.outputs for p in o["stems"].values()}}


def _run_separate(scheduler: Scheduler, slot: _Slot, job: Job, emit: Callable[[dict[str, Any]], None]) -> None:
    """A separate job: every model passes preflight before any runs (as `stemsep separate -m A -m B`)."""
    from envmgr.jobs.output_checks import remove_staging_dirs
    from envmgr.jobs.separate import plan_separation, run_separation

    spec = job.spec
    inputs = [scheduler.paths.input_path(given) for given in spec.inputs]
    output_dir = scheduler.paths.output_dir(spec.output_dir, job.id)
    if job.attempts > 1 and spec.output_dir is None:
        remove_staging_dirs(output_dir)  # the job's own dir: what a killed attempt's worker left half-written
    options = spec.job_options()
    registry = scheduler.registry()
    plans = [plan_separation(inputs, model, spec.runtime, output_dir, spec.format, options,
                             registry=registry, config=scheduler.config, emit=emit)
             for model in (spec.models or [None])]
    run_separation(plans, emit, config=scheduler.config, workers=slot.workers, record=slot.record)


def _recipe(recipe_id: str) -> Any:
    """The packaged or user recipe with this id (the catalog `stemsep recipes list` shows)."""
    from envmgr.catalog.recipe_files import get_recipe

    return get_recipe(recipe_id)


def _run_recipe(scheduler: Scheduler, slot: _Slot, job: Job, emit: Callable[[dict[str, Any]], None]) -> None:
    """A recipe job, as `stemsep run` runs it: the whole graph passes preflight first, then its steps run
    model-major with the content cache (envmgr/jobs/recipe_run.py). Its workers are the run's own, not the
    slot's warm ones: a recipe spans several envs and closes them at its end."""
    from envmgr.jobs.output_checks import remove_staging_dirs
    from envmgr.jobs.recipe_run import plan_recipe, run_recipe

    spec = job.spec
    inputs = [scheduler.paths.input_path(given) for given in spec.inputs]
    output_dir = scheduler.paths.output_dir(spec.output_dir, job.id)
    if job.attempts > 1 and spec.output_dir is None:
        remove_staging_dirs(output_dir)
    record = slot.record
    if record is not None:  # its bundle holds what `stemsep run`'s does: preflight, step plans, envs, events
        emit = record.noting(emit)
    plan = plan_recipe(_recipe(spec.recipe or ""), inputs, output_dir, spec.format, spec.job_options(),
                       config=scheduler.config, registry=scheduler.registry(), emit=emit)
    if record is not None:
        record.note_plans(list(plan.models.values()))
    run_recipe(plan, emit, config=scheduler.config, record=record)


RUNNERS: dict[str, Callable[[Scheduler, _Slot, Job, Callable[[dict[str, Any]], None]], None]] = {
    "separate": _run_separate,
    "recipe": _run_recipe,
}
