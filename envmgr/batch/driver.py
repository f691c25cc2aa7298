"""`stemsep batch`: plan a manifest's model groups, skip what the ledger says is done, run the rest on an engine,
record each input's outcome as it arrives.

A group is a model (with its runtime) or a recipe. A recipe group is planned as `stemsep run` plans it (preflight
of the whole graph; a blocked recipe fails its inputs, the other groups go on) and run by the host's recipe
runner (envmgr/batch/recipe_runner.py).

Events (the `--json` stream): `preflight` per group, `batch` (total, todo, already done), `actor` (engine, model,
node, pid, env id: one per runner started), `item` (input, model, node, status done|failed, stems or the error,
seconds, done/total so far), `throughput` (per node and model: inputs, seconds, inputs per second), `summary`.
A recipe group's `model` is `recipe:ID`, and its items carry `recipe` (the id) too. A failed input's error names
its debug bundle (`debug_bundle`; envmgr/batch/bundles.py): its own, or its group's when the group failed before
it ran.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from envmgr.batch.bundles import bundle_dir, collected, write_batch_bundle
from envmgr.batch.ledger import Ledger, item_key
from envmgr.batch.manifest import Item
from envmgr.batch.recipe_runner import RecipeUnit
from envmgr.batch.runner import Unit
from envmgr.jobs.job_record import JobRecord
from envmgr.jobs.output_checks import remove_staging_dirs
from envmgr.jobs.separate import BatchFailed, Emit
from registry.errors import ExitCode, StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.preflight.options import JobOptions
    from registry.loader import Registry

ENGINES = ("local", "ray")


@dataclass
class BatchOptions:
    engine: str = "local"
    address: str | None = None
    actors_per_node: int = 1
    num_gpus: float | None = None
    collect: bool = False
    py_executable: Path | None = None  # ray: the actors' Python (runtime_env py_executable)


@dataclass
class Tally:
    total: int = 0
    already: int = 0
    ok: int = 0
    failed: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (input, model, error)


def run_batch(items: list[Item], output_dir: Path, emit: Emit, *, output_format: str = "wav",
              options: JobOptions | None = None, batch: BatchOptions | None = None,
              config: MachineConfig | None = None, registry: Registry | None = None) -> Tally:
    """Run every item not yet done; raise BatchFailed when some failed (the others are done and recorded)."""
    from envmgr.catalog.registry_files import load
    from envmgr.config import load_config

    batch = batch or BatchOptions()
    _check_py_executable(batch)
    config = config or load_config()
    registry = registry if registry is not None else load()
    output_dir = output_dir.expanduser().absolute()
    tally = Tally(total=len(items))
    with Ledger(output_dir) as ledger:
        _remove_leftovers(output_dir)  # what a killed driver's or actor's worker left half-written
        done = ledger.done()
        units: list[tuple[Unit | RecipeUnit, list[Path]]] = []
        keys: list[dict[Path, str]] = []

        def fail(path: Path, model: str, error: dict[str, Any], key: str | None) -> None:
            tally.failed.append((str(path), model, error))
            if key is not None:
                ledger.append({"key": key, "input": str(path), "model": model, **_recipe_of(model),
                               "status": "failed", "code": error.get("code"), "error": error})
            emit({"type": "item", "input": str(path), "model": model, **_recipe_of(model), "status": "failed",
                  "error": error, "node": None, "done": tally.ok + len(tally.failed) + tally.already,
                  "total": tally.total})

        for (model, runtime, recipe), paths in _groups(items).items():
            record = JobRecord(kind="batch")  # the group's planning: one bundle for the inputs it blocks
            planning = record.noting(emit)
            unit: Unit | RecipeUnit
            try:
                if recipe is not None:
                    unit, blocked = _plan_recipe_group(paths, recipe, output_dir, output_format, options, config,
                                                       registry, planning)
                else:
                    unit, blocked = _plan_group(paths, model, runtime, output_dir, output_format, options, config,
                                                registry, planning)
            except StemSepError as err:  # the whole group cannot run (preflight, lock): its inputs fail
                error = _bundled(err, write_batch_bundle(record, err, config, bundle_dir(output_dir)))
                for path in paths:
                    fail(path, f"recipe:{recipe}" if recipe else model or "(default)", error, None)
                continue
            plan = unit.plan
            group_keys = _keys(unit, [*plan.inputs, *(p for p, _ in blocked)], output_format)
            bundle = write_batch_bundle(record, blocked[0][1], config, bundle_dir(output_dir)) if blocked else None
            for path, why in blocked:
                fail(path, unit.name, _bundled(why, bundle), group_keys[path])
            todo = [p for p in plan.inputs if group_keys[p] not in done]
            tally.already += len(plan.inputs) - len(todo)
            units.append((replace(unit, command=tuple(record.command)), todo))  # its runners' bundles name it
            keys.append(group_keys)
        emit({"type": "batch", "engine": batch.engine, "total": tally.total, "already_done": tally.already,
              "todo": sum(len(t) for _, t in units), "output_dir": str(output_dir)})
        rates: dict[tuple[str, str], list[float]] = defaultdict(list)
        ready: dict[str, float] = {}  # model -> when its first runner was ready: throughput leaves out start-up

        def noting(event: dict[str, Any]) -> None:
            if event["type"] == "actor":
                ready.setdefault(event["model"], time.monotonic())
            emit(event)

        def report(index: int, path: Path, result: dict[str, Any]) -> None:
            unit = units[index][0]
            model, key, node = unit.name, keys[index][path], result.get("node")
            if "error" in result:
                if batch.collect:  # the runner's bundle came back as bytes: it goes beside the ledger
                    collected(result["error"], result.pop("bundle_bytes", None), output_dir, config.debug_bundle_keep)
                fail(path, model, result["error"], key)
                return
            stems, collect = result["stems"], "files" in result
            if collect:  # --collect: the actor returned the bytes; written here, each renamed whole
                stems = [_write_collected(output_dir, name, data, stem)
                         for (name, data), stem in zip(result["files"].items(), stems)]
            ledger.append({"key": key, "input": str(path), "model": model, **_recipe_of(model), "status": "done",
                           "stems": [s["path"] for s in stems], "node": node})
            tally.ok += 1
            rates[(str(node), model)].append(time.monotonic())
            emit({"type": "item", "input": str(path), "model": model, **_recipe_of(model), "status": "done",
                  "node": node,
                  "pid": result.get("pid"),
                  "stems": [s["path"] for s in stems], "seconds": result.get("seconds"),
                  **({"collected": True} if collect else {}),  # the stems came back as bytes, written here
                  "done": tally.ok + len(tally.failed) + tally.already, "total": tally.total})

        _engine(batch)(units, report, noting)
        for (node, model), times in sorted(rates.items()):
            span = max(times[-1] - ready.get(model, times[0]), 1e-9)
            emit({"type": "throughput", "node": node, "model": model, "inputs": len(times), "seconds": span,
                  "inputs_per_s": len(times) / span})
        _remove_leftovers(output_dir)
    emit({"type": "summary", "ok": tally.ok, "failed": len(tally.failed), "already_done": tally.already,
          "total": tally.total})
    if tally.failed:
        first = tally.failed[0][2]
        bundles = (f"; their debug bundles are in {bundle_dir(output_dir)}"
                   if any(err.get("debug_bundle") for _p, _m, err in tally.failed) else "")
        raise BatchFailed(f"{len(tally.failed)} of {tally.total} inputs failed",
                          why="; ".join(f"{model}: {Path(path).name}: {err.get('code')}: {err.get('message')}"
                                        for path, model, err in tally.failed[:10]),
                          hint=f"{first.get('hint') or 'fix those inputs'}; re-submitting the manifest runs only "
                               f"the inputs not done{bundles}",
                          exit_code=ExitCode(int(first.get("exit_code") or ExitCode.JOB)))
    return tally


def _groups(items: list[Item]) -> dict[tuple[str | None, str | None, str | None], list[Path]]:
    """Inputs per (model, runtime) or recipe, in manifest order: a model is loaded once per runner."""
    groups: dict[tuple[str | None, str | None, str | None], list[Path]] = {}
    for item in items:
        groups.setdefault((item.model, item.runtime, item.recipe), []).append(item.input)
    return groups


def _recipe_of(name: str) -> dict[str, str]:
    """The `recipe` field of a recipe group's events and ledger records (its `model` is `recipe:ID`)."""
    return {"recipe": name.removeprefix("recipe:")} if name.startswith("recipe:") else {}


def _keys(unit: Unit | RecipeUnit, paths: list[Path], output_format: str) -> dict[Path, str]:
    """The ledger key of each input in this group: a recipe's holds its whole definition (an edited recipe runs
    again), hashed once for the group, not once per input."""
    if isinstance(unit, RecipeUnit):
        definition = hashlib.sha256(unit.plan.recipe.model_dump_json().encode()).hexdigest()
        return {p: item_key(p, unit.name, "", {"recipe": definition}, output_format) for p in paths}
    plan = unit.plan
    return {p: item_key(p, plan.model.id, plan.runtime, plan.settings, output_format) for p in paths}


def _remove_leftovers(output_dir: Path) -> None:
    """Staging dirs and recipe job folders a killed driver's or actor's worker left (the ledger's lock says no
    other batch writes here)."""
    from envmgr.jobs.recipe_run import JOB_DIR_PREFIX

    remove_staging_dirs(output_dir)
    for entry in output_dir.glob(f"{JOB_DIR_PREFIX}*"):
        shutil.rmtree(entry, ignore_errors=True)


def _plan_group(paths: list[Path], model: str | None, runtime: str | None, output_dir: Path, output_format: str,
                options: JobOptions | None, config: MachineConfig, registry: Registry,
                emit: Emit) -> tuple[Unit, tuple[tuple[Path, StemSepError], ...]]:
    """Preflight the group as `stemsep separate` would; its plan made picklable (the typed entry, no report) with
    the lock every node builds its env from."""
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from envmgr.jobs.separate import plan_separation

    plan = plan_separation(paths, model, runtime, output_dir, output_format, options, registry=registry,
                           config=config, emit=emit)
    lock = EnvManager(config).lock(request_for_model(plan.model, plan.runtime, config))
    shipped = replace(plan, model=registry.get(plan.model.id), preflight=None, skipped=())
    report = plan.preflight.report if plan.preflight is not None else None  # for the runners' bundles
    return Unit(plan=shipped, lock=lock, preflight=report), plan.skipped


def _bundled(err: StemSepError, bundle: Path | None) -> dict[str, Any]:
    """The error as an input's result holds it, naming its debug bundle when one was written."""
    return {**err.to_dict(), **({"debug_bundle": str(bundle)} if bundle is not None else {})}


def _plan_recipe_group(paths: list[Path], ref: str, output_dir: Path, output_format: str,
                       options: JobOptions | None, config: MachineConfig, registry: Registry,
                       emit: Emit) -> tuple[RecipeUnit, tuple[tuple[Path, StemSepError], ...]]:
    """Preflight the recipe's whole graph as `stemsep run` does; each step's plan made picklable with the lock its
    env is built from, and the ops env's lock, so every node builds the same envs."""
    from envmgr.catalog.recipe_files import load_recipe
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model, request_for_ops
    from envmgr.jobs.recipe_run import plan_recipe

    plan = plan_recipe(load_recipe(ref), paths, output_dir, output_format, options, config=config,
                       registry=registry, emit=emit)
    manager = EnvManager(config)
    # Ray pickles the plan and registry views (frozen) do not unpickle: each step gets the typed entry, and the
    # preflight keeps its reports and graph (what the runner reads) without the views it resolved.
    models = {sid: replace(step, model=registry.get(step.model.id),
                           preflight=replace(step.preflight, entry=None) if step.preflight else None,
                           env_lock=None if step.adopted_env is not None  # an adopted env is used as it is
                           else manager.lock(request_for_model(step.model, step.runtime, config)))
              for sid, step in plan.models.items()}
    checked = replace(plan.preflight, check=replace(plan.preflight.check, steps={}), step_preflights={})
    shipped = replace(plan, models=models, preflight=checked, ops_lock=manager.lock(request_for_ops(config)))
    return RecipeUnit(shipped), plan.skipped


def _check_py_executable(batch: BatchOptions) -> None:
    """--py-executable names a program this machine can run, before anything starts (the nodes need it at the
    same path; a node without it fails its actors, which Ray reports)."""
    path = batch.py_executable
    if path is None:
        return
    if batch.engine != "ray":
        raise StemSepError("--py-executable is for --engine ray", code="E_USAGE", exit_code=ExitCode.USAGE,
                           why="it picks the Python of the Ray actors; the local engine runs in this process",
                           hint="add --engine ray, or leave out --py-executable")
    if not path.is_file() or not os.access(path, os.X_OK):
        why = ("no such file" if not path.exists() else "not a file" if not path.is_file()
               else "not executable (no x permission)")
        raise StemSepError(f"--py-executable {path} cannot run the Ray actors", code="E_USAGE",
                           exit_code=ExitCode.USAGE, why=why,
                           hint="give the path of a Python that has stemsep and ray installed, the same path on "
                                "every node (e.g. /opt/stemsep/venv/bin/python)")


def _engine(batch: BatchOptions) -> Callable[..., None]:
    if batch.engine == "ray":
        try:
            from envmgr.batch.ray_engine import run_ray
        except ImportError as exc:
            raise StemSepError("the ray engine needs Ray", code="E_RAY_UNAVAILABLE", why=str(exc),
                               hint="pip install 'stemsep-runtime[ray]' (into the host's environment)",
                               exit_code=ExitCode.USAGE) from exc
        return lambda units, report, emit: run_ray(units, report, emit, address=batch.address,
                                                   actors_per_node=batch.actors_per_node, num_gpus=batch.num_gpus,
                                                   collect=batch.collect, py_executable=batch.py_executable)
    from envmgr.batch.local_engine import run_local

    return lambda units, report, emit: run_local(units, report, emit, collect=batch.collect)


def _write_collected(output_dir: Path, name: str, data: bytes, stem: dict[str, Any]) -> dict[str, Any]:
    target = output_dir / name
    tmp = output_dir / f".{name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return {**stem, "path": str(target)}

