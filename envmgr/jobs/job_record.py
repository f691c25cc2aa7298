"""The facts of one job run, noted as they become known, for a debug bundle (envmgr/diagnostics/bundle.py).

A command that runs jobs makes one `JobRecord` and hands it to the run (`run_separation(record=)`); the run
notes its plans, each model's env request and lock (also when the env could not be built), the env it got,
every worker it started (whose transcript and stderr log the client keeps) and the events it emitted. Nothing
here writes or computes anything costly: on success without `--debug-bundle` the record is just dropped.
"""

from __future__ import annotations

import collections
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from envmgr.envs.lock import Lock
    from envmgr.envs.manager import Env, EnvManager
    from envmgr.envs.request import EnvRequest
    from envmgr.worker.client import WorkerClient

_SKIPPED_EVENTS = ("progress", "artifact.progress")  # many, and the transcript has the worker's own


@dataclass
class EnvFacts:
    request: EnvRequest | None = None
    lock: Lock | None = None
    env: Env | None = None


@dataclass
class WorkerFacts:
    env_id: str
    runtime: str
    client: WorkerClient


@dataclass
class JobRecord:
    """What ran, in what env, with which worker, and what happened, for the job `kind` started by `command`."""

    command: list[str] = field(default_factory=lambda: ["stemsep", *sys.argv[1:]])
    kind: str = "separate"
    started_at: float = field(default_factory=time.time)
    plans: list[Any] = field(default_factory=list)  # envmgr.jobs.separate.Plan (typed so: no import cycle)
    envs: dict[str, EnvFacts] = field(default_factory=dict)  # model id -> its env
    workers: list[WorkerFacts] = field(default_factory=list)
    events: collections.deque[dict[str, Any]] = field(default_factory=lambda: collections.deque(maxlen=1000))
    # a recipe run: model id -> its step ({"id", "reads"}), and each input a step model's job got (rows of
    # note_step_input): a step reading another step's stem is replayed on that stem, not on the recipe's input
    steps: dict[str, dict[str, str]] = field(default_factory=dict)
    step_inputs: list[dict[str, str]] = field(default_factory=list)

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)

    def note_plans(self, plans: list[Any]) -> None:
        self.plans = list(plans)

    def note_step(self, model_id: str, step_id: str, reads: str) -> None:
        self.steps[model_id] = {"id": step_id, "reads": reads}

    def note_step_input(self, model_id: str, step_id: str, reads: str, recipe_input: str, path: str,
                        sha256: str) -> None:
        """The file a recipe step's model job reads for `recipe_input`: the reference `reads` (`mix`: the input
        itself; else an earlier step's stem, in the run's job folder or the step cache)."""
        self.step_inputs.append({"model": model_id, "step": step_id, "reads": reads, "recipe_input": recipe_input,
                                 "path": path, "sha256": sha256})

    def note_event(self, event: dict[str, Any]) -> None:
        if event.get("type") not in _SKIPPED_EVENTS:
            self.events.append(event)

    def noting(self, emit: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None]:
        """`emit` that notes every event here first (`emit` None: only noted)."""
        def both(event: dict[str, Any]) -> None:
            self.note_event(event)
            if emit is not None:
                emit(event)
        return both

    def preflight_reports(self) -> list[dict[str, Any]]:
        """Every preflight report of the run, also those of plans that were never made (a blocked run)."""
        return [e["report"] for e in self.events if e.get("type") == "preflight"]

    def note_request(self, model_id: str, request: EnvRequest) -> None:
        self.envs.setdefault(model_id, EnvFacts()).request = request

    def note_env(self, model_id: str, env: Env) -> None:
        facts = self.envs.setdefault(model_id, EnvFacts())
        facts.env, facts.lock = env, env.lock

    def note_env_failed(self, model_id: str, manager: EnvManager, request: EnvRequest, lock: Lock | None) -> None:
        """The env could not be had: keep the lock it was being built from (the given one, else the cached one
        for the request, when the resolve got that far)."""
        facts = self.envs.setdefault(model_id, EnvFacts(request=request))
        if lock is None:
            try:
                lock = manager.cached_lock(request)
            except Exception:  # no interpreter, unreadable cache: the bundle says "no lock"
                lock = None
        facts.lock = lock

    def note_worker(self, client: WorkerClient, env_id: str, runtime: str) -> None:
        if not any(w.client is client for w in self.workers):  # a warm worker serves many of a run's inputs
            self.workers.append(WorkerFacts(env_id, runtime, client))
