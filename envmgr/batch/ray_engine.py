"""`--engine ray`: the batch spread over a Ray cluster. Ray is the scheduler; we write none of our own.

Per model group, one thin actor per node (`--actors-per-node` of them) runs in the host's own environment (Ray
is an extra of the host, never installed into a model's env) and wraps a ModelRunner: it builds the env on its
node from the driver's lock, fetches and verifies the artifacts, spawns our JSON-lines worker and keeps the model
loaded across the inputs the driver routes to it. Groups run one after another, so a small cluster never waits on
actors of another model holding its CPUs. Faults: Ray restarts a dead actor (`max_restarts`) and re-runs the
calls it had (`max_task_retries`); a re-run input overwrites its stems with the same bytes, each renamed into
place whole, so a retry leaves no duplicate and no half file. Only this module imports ray.

A recipe group gets one recipe actor per node (`--actors-per-node` of them), each given its share of the group's
inputs in one call: it runs the host's recipe runner over them (model-major), so each step's model is loaded once
per actor for its whole share, and the node's step cache keeps what a killed actor had finished: Ray's retry of
the call re-runs only the steps not cached.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import ray
from ray.exceptions import RayError

from envmgr.batch.local_engine import Emit, Report
from envmgr.batch.recipe_runner import RecipeUnit, recipe_info, run_recipe_inputs
from envmgr.batch.runner import ModelRunner, Unit
from registry.errors import ExitCode, StemSepError

MAX_RESTARTS = 4
MAX_TASK_RETRIES = 4
IN_FLIGHT_PER_ACTOR = 2  # the next input is already queued on the actor when one finishes


class RayUnavailable(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_RAY_UNAVAILABLE"


class ModelActor:
    """The Ray actor (wrapped by ray.remote below): one model's runner on one node."""

    def __init__(self, unit: Unit) -> None:
        self.runner = ModelRunner(unit).start()

    def info(self) -> dict[str, Any]:
        return {**self.runner.info(), "node": ray.get_runtime_context().get_node_id()}

    def run(self, path: str, collect: bool) -> dict[str, Any]:
        return {**self.runner.run(Path(path), collect=collect), "node": ray.get_runtime_context().get_node_id(),
                "pid": os.getpid()}

    def stop(self) -> None:
        self.runner.close()


class RecipeActor:
    """The Ray actor for a recipe group on one node: the host's recipe runner over the inputs routed to it."""

    def __init__(self, unit: RecipeUnit) -> None:
        self.unit = unit

    def info(self) -> dict[str, Any]:
        return {**recipe_info(), "node": ray.get_runtime_context().get_node_id()}

    def run(self, paths: list[str], collect: bool) -> dict[str, dict[str, Any]]:
        node = ray.get_runtime_context().get_node_id()
        results = run_recipe_inputs(self.unit, [Path(p) for p in paths], collect=collect)
        return {path: {**result, "node": node, "pid": os.getpid()} for path, result in results.items()}

    def stop(self) -> None:
        pass


def connect(address: str | None) -> None:
    """Join the cluster at `address` (a `ray start --head` one: host:port or `auto`), else start a local one."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address or '(a new local one)'}", why=str(exc),
                             hint="start one with `ray start --head` and pass its address with --address") from exc


class _OwnThreadOnly:
    """stdout for the driver's own thread; Ray's background threads print cluster errors (a restarted actor's
    retries) to sys.stdout, which would break the `--json` stream: their lines go to stderr."""

    def __init__(self, stdout: TextIO) -> None:
        self.stdout, self.owner = stdout, threading.get_ident()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stdout if threading.get_ident() == self.owner else sys.stderr, name)


def run_ray(units: list[tuple[Unit | RecipeUnit, list[Path]]], report: Report, emit: Emit, *, address: str | None,
            actors_per_node: int = 1, num_gpus: float | None = None, collect: bool = False,
            py_executable: Path | None = None) -> None:
    stdout = sys.stdout
    stdout.flush()
    saved = os.dup(1)  # fd 1 itself goes to stderr meanwhile: Ray's C++ core writes there too
    os.dup2(2, 1)
    ours = os.fdopen(os.dup(saved), "w", encoding="utf-8", buffering=1)
    sys.stdout = _OwnThreadOnly(ours)
    try:
        _run(units, report, emit, address, actors_per_node, num_gpus, collect, py_executable)
    finally:
        sys.stdout = sys.stderr  # shutdown prints Ray's buffered messages from this thread
        ray.shutdown()  # stops Ray's printing threads before stdout is the driver's alone again
        ours.close()
        os.dup2(saved, 1)
        os.close(saved)
        sys.stdout = stdout


def _run(units: list[tuple[Unit | RecipeUnit, list[Path]]], report: Report, emit: Emit, address: str | None,
         actors_per_node: int, num_gpus: float | None, collect: bool, py_executable: Path | None) -> None:
    connect(address)
    # the actors' Python: Ray's per-actor runtime env starts them with it (default: the driver's own)
    runtime_env = {"py_executable": str(py_executable)} if py_executable is not None else None
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remotes: dict[type, Any] = {Unit: ray.remote(ModelActor), RecipeUnit: ray.remote(RecipeActor)}
    for index, (unit, paths) in enumerate(units):
        if not paths:
            continue
        remote = remotes[type(unit)]
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
        gpus = _gpus_for(unit) if num_gpus is None else num_gpus
        actors = [remote.options(num_cpus=1, num_gpus=gpus, max_restarts=MAX_RESTARTS,
                                 max_task_retries=MAX_TASK_RETRIES, runtime_env=runtime_env,
                                 scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)).remote(unit)
                  for node in nodes for _ in range(actors_per_node)][:len(paths)]
        try:
            for info in ray.get([a.info.remote() for a in actors]):
                emit({"type": "actor", "engine": "ray", "model": unit.name, **info})
            if isinstance(unit, RecipeUnit):
                _run_shares(index, actors, list(paths), report, collect)
            else:
                _drain(index, actors, list(paths), report, collect)
        finally:
            for actor in actors:
                try:
                    ray.get(actor.stop.remote(), timeout=30)
                except RayError:
                    pass
                ray.kill(actor, no_restart=True)


def _drain(index: int, actors: list[Any], todo: list[Path], report: Report, collect: bool) -> None:
    """Keep IN_FLIGHT_PER_ACTOR inputs queued on each actor until every input has a result."""
    todo.reverse()
    pending: dict[Any, tuple[Any, Path]] = {}

    def submit(actor: Any) -> None:
        if todo:
            path = todo.pop()
            pending[actor.run.remote(str(path), collect)] = (actor, path)

    for actor in actors:
        for _ in range(IN_FLIGHT_PER_ACTOR):
            submit(actor)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        actor, path = pending.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except RayError as exc:  # the actor died more often than Ray restarts it, or the call failed
            result = _task_failed(path, exc)
        report(index, path, result)
        submit(actor)


def _run_shares(index: int, actors: list[Any], todo: list[Path], report: Report, collect: bool) -> None:
    """A recipe group: the inputs dealt round-robin to the actors, one call each (its models loaded once for its
    share); each input reported as its actor's call returns."""
    shares = [todo[i::len(actors)] for i in range(len(actors))]
    pending = {actor.run.remote([str(p) for p in share], collect): share
               for actor, share in zip(actors, shares) if share}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        share = pending.pop(ready[0])
        try:
            results = ray.get(ready[0])
        except RayError as exc:
            results = {str(p): _task_failed(p, exc) for p in share}
        for path in share:
            report(index, path, results[str(path)])


def _task_failed(path: Path, exc: RayError) -> dict[str, Any]:
    """An input's result when Ray gave up on its call (the actor died more often than Ray restarts it)."""
    return {"error": {"code": "E_RAY_TASK", "message": f"Ray could not run {path.name}",
                      "why": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                      "hint": "see the Ray logs of the node (ray logs); re-submit to retry",
                      "exit_code": int(ExitCode.WORKER)}, "node": None}


def _gpus_for(unit: Unit | RecipeUnit) -> float:
    """A GPU per actor for a model (or a recipe with a model) that needs torch on a cluster that has GPUs; none
    otherwise."""
    models = [p.model for p in unit.plan.models.values()] if isinstance(unit, RecipeUnit) else [unit.plan.model]
    needs_torch = any(getattr(getattr(m.requirements, "torch", None), "required", False) for m in models)
    return 1.0 if needs_torch and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
