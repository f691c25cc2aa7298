"""One recipe's inputs on one machine: the host's recipe runner (envmgr/jobs/recipe_run.py) over the inputs routed
here, as `stemsep run` runs them: model-major (each step's model loaded once for all these inputs), the node's
step cache, outputs renamed into place whole.

Both engines call `run_recipe_inputs`: the local engine once per recipe group, a Ray recipe actor once per share
of the group's inputs (envmgr/batch/ray_engine.py). `RecipeUnit` carries the driver's plan (preflight of the
whole graph done; picklable: typed model entries) with each step's env lock and the ops env's lock, so every node
builds the same envs.
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

from envmgr.batch.runner import error_result, output_error
from registry.errors import StemSepError

if TYPE_CHECKING:
    from envmgr.jobs.recipe_run import RecipePlan


@dataclass(frozen=True)
class RecipeUnit:
    """One recipe group of a batch as the engines get it: the plan (inputs given per call)."""

    plan: RecipePlan

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
    try:
        try:
            states = execute_recipe(plan, lambda event: None, config=load_config())
        except StemSepError as err:  # the run could not start (config, output dir): every input fails with it
            return {str(p): error_result(err) for p in paths}
        except OSError as err:
            return {str(p): output_error(f"cannot write the outputs of {p}", err) for p in paths}
        seconds = (time.monotonic() - started) / max(len(paths), 1)  # model-major: the inputs share the run
        results: dict[str, dict[str, Any]] = {}
        for state in states:
            if state.error is not None:
                results[str(state.path)] = {**error_result(state.error), "seconds": seconds}
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
