"""`--engine local`: the batch's model groups one after another in this process, one worker per group (the model
stays loaded across the group's inputs), exactly as a Ray actor runs them on its node."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from envmgr.batch.runner import ModelRunner, Unit

Report = Callable[[int, Path, dict[str, Any]], None]  # (unit index, input, result)
Emit = Callable[[dict[str, Any]], None]


def run_local(units: list[tuple[Unit, list[Path]]], report: Report, emit: Emit, *, collect: bool = False) -> None:
    for index, (unit, paths) in enumerate(units):
        if not paths:
            continue
        runner = ModelRunner(unit).start()
        try:
            emit({"type": "actor", "engine": "local", "model": unit.plan.model.id, "node": "local", **runner.info()})
            for path in paths:
                report(index, path, {**runner.run(path, collect=collect), "node": "local"})
        finally:
            runner.close()
