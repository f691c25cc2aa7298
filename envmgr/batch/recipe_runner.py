"""One recipe's inputs on one machine: the host's recipe runner (envmgr/jobs/recipe_run.py) over the inputs routed
here, as `stemsep run` runs them: model-major (each step's model loaded once for all these inputs), the node's
step cache, outputs renamed into place whole.

Both engines call `run_recipe_inputs`: the local engine once per recipe group, a Ray recipe actor once per share
of the group's inputs (envmgr/batch/ray_engine.py). `RecipeUnit` carries the driver's plan (preflight of the
whole graph done; picklable: typed model entries) with each step's env lock and the ops env's lock, so every node
builds the same envs.

An input that fails while the recipe runs gets a debug bundle as a model item's does (envmgr/batch/bundles.py): the
run's record (`stemsep run`'s: the step plans, the recipe's preflight report, every worker's transcript and stderr)
narrowed to that input's plans and events; a run that could not start writes one bundle its inputs share.
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

from envmgr.batch.bundles import bundle_dir, named, write_batch_bundle
from envmgr.batch.runner import error_result, output_error
from envmgr.jobs.job_record import JobRecord
from registry.errors import StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.jobs.recipe_run import RecipePlan


@dataclass(frozen=True)
class RecipeUnit:
    """One recipe group of a batch as the engines get it: the plan (inputs given per call); for debug bundles,
    the batch's command."""

    plan: RecipePlan
    command: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """How events and the ledger name the group (a model group is named by its model id)."""
        return f"recipe:{self.plan.recipe.id}"


def recipe_info() -> dict[str, Any]:
    """The `actor` event's facts of a recipe runner (its envs and workers start per step, inside the run)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "env_id": None, "worker_pid": None, "error": None}


def run_recipe_inputs(unit: RecipeUnit, paths: list[Path], *, collect: bool = False) -> dict[str, dict[str, Any]]:
    """Run the recipe over `paths`: input path -> {"stems": [{name, path}], "seconds"} or {"error": {...}}. With
    `collect`, the outputs are made in a private temp dir and returned as bytes (`files`: name -> bytes)."""
    from envmgr.config import load_config
    from envmgr.jobs.recipe_run import execute_recipe

    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="stemsep-batch-")) if collect else None
    plan = replace(unit.plan, inputs=tuple(paths), skipped=(), output_dir=scratch or unit.plan.output_dir)
    # with `collect`, bundles go into the scratch dir too: their bytes are read before it goes
    record, folder = _record(unit, plan), bundle_dir(plan.output_dir)
    config: MachineConfig | None = None
    try:
        try:
            config = load_config()
            states = execute_recipe(plan, record.noting(None), config=config, record=record)
        except StemSepError as err:  # the run could not start (config, output dir): every input fails with it
            bundle = write_batch_bundle(record, err, config, folder)
            return {str(p): named(error_result(err), bundle, collect and i == 0) for i, p in enumerate(paths)}
        except OSError as err:
            return {str(p): output_error(f"cannot write the outputs of {p}", err) for p in paths}
        seconds = (time.monotonic() - started) / max(len(paths), 1)  # model-major: the inputs share the run
        results: dict[str, dict[str, Any]] = {}
        for state in states:
            if state.error is not None:
                bundle = write_batch_bundle(_for_input(record, state.path), state.error, config, folder)
                results[str(state.path)] = {**named(error_result(state.error), bundle, collect), "seconds": seconds}
                continue
            stems = [{"name": o["name"], "path": o["path"]} for o in state.outputs]
            result: dict[str, Any] = {"stems": stems, "warnings": [], "seconds": seconds}
            if scratch is not None:
                result["files"] = {Path(s["path"]).name: Path(s["path"]).read_bytes() for s in stems}
            results[str(state.path)] = result
        return results
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _record(unit: RecipeUnit, plan: RecipePlan) -> JobRecord:
    """The run's record as `stemsep run` keeps it: the recipe's preflight report and its step plans (the run
    notes its workers and events)."""
    record = JobRecord(command=list(unit.command) or ["stemsep", "batch"], kind="batch")
    record.note_event({"type": "preflight", "report": plan.preflight.report})
    record.note_plans([replace(step, inputs=plan.inputs) for step in plan.models.values()])
    return record


def _for_input(record: JobRecord, path: Path) -> JobRecord:
    """The record of one input's run: its plans, events and step inputs only (the workers, which served every
    input, kept)."""
    events = [e for e in record.events if e.get("input") in (None, str(path))]
    return replace(record, plans=[replace(p, inputs=(path,)) for p in record.plans],
                   events=type(record.events)(events, maxlen=record.events.maxlen),
                   step_inputs=[r for r in record.step_inputs if r["recipe_input"] == str(path)])
