"""`--engine local`: the batch's groups one after another in this process, one worker per group (the model stays
loaded across the group's inputs), exactly as a Ray actor runs them on its node; a recipe group runs the host's
recipe runner over all its inputs at once (model-major), as a Ray recipe actor runs its share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from envmgr.batch.recipe_runner import RecipeUnit, recipe_info, run_recipe_inputs
from envmgr.batch.runner import ModelRunner, Unit

Report = Callable[[int, Path, dict[str, Any]], None]  # (unit index, input, result)
Emit = Callable[[dict[str, Any]], None]


def run_local(units: list[tuple[Unit | RecipeUnit, list[Path]]], report: Report, emit: Emit, *,
              collect: bool = False) -> None:
    for index, (unit, paths) in enumerate(units):
        if not paths:
            continue
        if isinstance(unit, RecipeUnit):
            emit({"type": "actor", "engine": "local", "model": unit.name, "node": "local", **recipe_info()})
            results = run_recipe_inputs(unit, paths, collect=collect)
            for path in paths:
                report(index, path, {**results[str(path)], "node": "local"})
            continue
        runner = ModelRunner(unit).start()
        try:
            emit({"type": "actor", "engine": "local", "model": unit.plan.model.id, "node": "local", **runner.info()})
            for path in paths:
                report(index, path, {**runner.run(path, collect=collect), "node": "local"})
        finally:
            runner.close()
