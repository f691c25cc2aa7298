"""Running a recipe (`stemsep run`, and `separate`'s ensemble/Phase Fix/--then shorthands) on a batch of inputs.

`plan_recipe` runs the recipe's preflight (envmgr/preflight/recipe.py) and plans each `separate` step from its
one-model preflight; nothing starts unless it says yes. `run_recipe` then runs the steps in graph order, each
over every input before the next step (model-major: a model is loaded once per batch, as the batch's worker
keeps it), each `separate` step in its model's env, each audio operation in the light stemsep-legacy env
(an `op` job, docs/protocol.md). Before a step runs on an input its content key is looked up in the step cache
(envmgr/jobs/step_cache.py): a hit reuses the stored stems and starts nothing. Step outputs live in a job
folder inside the output dir, removed at the end unless `keep_intermediates`; the recipe's outputs are written
atomically as `<input>_(<output>)_<recipe>.<ext>`.

Events (the `--json` stream): `preflight` (the recipe report), `step` (step, op, model, index, total),
`step_input` (step, input, cached: bool, key), the worker's own events with `step` added, `output`
(input, name, path), `summary`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envmgr.jobs.output_checks import OutputError, check_name_lengths, check_output_dir
from envmgr.jobs.separate import (
    BatchFailed,
    Emit,
    Plan,
    _Worker,
    ensure_env,
    fetch_artifacts,
    plan_from_preflight,
)
from envmgr.jobs.step_cache import StepCache, content_key, file_sha256
from envmgr.preflight.options import JobOptions
from envmgr.worker.client import Cancelled, Timeouts
from registry.errors import ExitCode, StemSepError
from registry.recipes.graph import split_ref
from registry.recipes.model import Recipe, SeparateStep

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.envs.lock import Lock
    from envmgr.jobs.job_record import JobRecord
    from envmgr.preflight.recipe import RecipePreflight
    from registry.loader import Registry

CACHE_FOLDER = "recipe-cache"
JOB_DIR_PREFIX = ".stemsep-recipe-"  # a run's step outputs, inside the output dir (hidden; removed at its end)


@dataclass(frozen=True)
class RecipePlan:
    recipe: Recipe
    preflight: RecipePreflight
    models: dict[str, Plan]  # separate step id -> its plan (model, runtime, native settings)
    op_params: dict[str, dict[str, Any]]  # op step id -> the params its `op` job sends
    order: tuple[str, ...]
    inputs: tuple[Path, ...]
    skipped: tuple[tuple[Path, StemSepError], ...]
    output_dir: Path
    output_format: str
    use_cache: bool = True
    keep_intermediates: bool = False
    ops_lock: Lock | None = None  # build the ops env from this lock (a batch's, so every node builds the same)

    def output_name(self, path: Path, output: str) -> str:
        return f"{path.stem}_({output})_{self.recipe.id}.{self.output_format}"


@dataclass
class InputState:
    path: Path
    stems: dict[str, tuple[Path, str]] = field(default_factory=dict)  # reference -> (file, sha256)
    error: StemSepError | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)


def cache_for(config: MachineConfig) -> StepCache:
    from envmgr.errors import ConfigError
    from envmgr.sizes import parse_size

    try:
        limit = parse_size(config.recipe_cache_limit)
    except ValueError as exc:
        raise ConfigError(f"recipe_cache_limit {config.recipe_cache_limit!r} is not a size", why=str(exc),
                          hint="set it to e.g. 500M or 20G (`stemsep env config set recipe_cache_limit 20G`)") from None
    return StepCache(config.state_dir / CACHE_FOLDER, limit)


def plan_recipe(recipe: Recipe, inputs: Sequence[Path], output_dir: Path, output_format: str = "wav",
                options: JobOptions | None = None, *, config: MachineConfig, registry: Registry | None = None,
                emit: Emit | None = None, use_cache: bool = True, keep_intermediates: bool = False) -> RecipePlan:
    """Preflight the whole recipe; raise PreflightBlocked (nothing started) unless it can proceed."""
    from envmgr.jobs.separate import FORMATS
    from envmgr.preflight.recipe import run_recipe_preflight
    from envmgr.preflight.run import PreflightBlocked

    if output_format not in FORMATS:
        raise OutputError(f"unknown output format {output_format!r}", hint=f"use one of: {', '.join(FORMATS)}")
    options = options or JobOptions()
    checked = run_recipe_preflight(recipe, list(inputs), options, config=config, registry=registry)
    if emit is not None:
        emit({"type": "preflight", "report": checked.report})
    if not checked.can_proceed:
        raise PreflightBlocked(checked)  # type: ignore[arg-type]  # reads .decision only
    out = output_dir.expanduser().absolute()
    models = {sid: plan_from_preflight(pf, out, output_format, options, config)
              for sid, pf in checked.step_preflights.items()}
    sections = {s["id"]: s for s in checked.report["steps"]}
    op_params = {}
    for step in recipe.steps:
        if not isinstance(step, SeparateStep):
            params = step.params.model_dump(exclude_none=True)
            phase_fix = sections[step.id].get("phase_fix") or {}
            op_params[step.id] = {**params, **phase_fix.get("op_params", {})}  # the reference's band and weight
    blocked = {a["path"] for a in checked.report["inputs"] if a.get("state") == "blocked"}
    runnable = tuple(p for p in checked.inputs if str(p) not in blocked)
    skipped = tuple((p, StemSepError(f"preflight blocked {p.name}", code="E_INPUT_BLOCKED",
                                     exit_code=ExitCode.PREFLIGHT_BLOCKED,
                                     hint="`stemsep preflight` on the file says why")) for p in checked.inputs
                    if str(p) in blocked)
    plan = RecipePlan(recipe, checked, models, op_params, tuple(checked.report["order"]), runnable, skipped, out,
                      output_format, use_cache, keep_intermediates)
    _check_outputs(plan)
    return plan


def _check_outputs(plan: RecipePlan) -> None:
    anchor = check_output_dir(plan.output_dir)
    owner: dict[str, Path] = {}
    for path in plan.inputs:
        names = [plan.output_name(path, o) for o in plan.recipe.outputs]
        check_name_lengths(plan.output_dir, anchor, names)
        other = owner.setdefault(names[0], path)
        if other != path:
            raise OutputError(f"{other} and {path} would write the same output files ({names[0]})",
                              code="E_OUTPUT_COLLISION", hint="run them in two runs with different -o dirs")


def run_recipe(plan: RecipePlan, emit: Emit, *, config: MachineConfig, timeouts: Timeouts = Timeouts(),
               on_stderr: Callable[[str], None] | None = None, record: JobRecord | None = None) -> list[InputState]:
    """Run every step over every input (model-major), then write the outputs. Raises Cancelled on Ctrl-C and
    BatchFailed (or the one input's error) when inputs failed; the others' outputs are written."""
    states = execute_recipe(plan, emit, config=config, timeouts=timeouts, on_stderr=on_stderr, record=record)
    failed = [s for s in states if s.error is not None] + [InputState(p, error=e) for p, e in plan.skipped]
    emit({"type": "summary", "ok": len(states) + len(plan.skipped) - len(failed), "failed": len(failed),
          "stems": [o["path"] for s in states for o in s.outputs]})
    if failed and len(states) + len(plan.skipped) == 1:
        raise failed[0].error  # type: ignore[misc]
    if failed:
        first = failed[0].error
        assert first is not None
        raise BatchFailed(f"{len(failed)} of {len(states) + len(plan.skipped)} inputs failed",
                          why="; ".join(f"{s.path.name}: {s.error.message}" for s in failed if s.error),
                          hint=first.hint, exit_code=first.exit_code)
    return states


def execute_recipe(plan: RecipePlan, emit: Emit, *, config: MachineConfig, timeouts: Timeouts = Timeouts(),
                   on_stderr: Callable[[str], None] | None = None,
                   record: JobRecord | None = None) -> list[InputState]:
    """Run the steps over the plan's inputs and write each good input's outputs; each input's state says what it
    made or why it failed (`stemsep batch` records them one by one). Raises only Cancelled."""
    runner = _Runner(plan, emit, config, _Worker(emit, timeouts, on_stderr, None, record))
    states = [InputState(p) for p in plan.inputs]
    try:
        runner.run(states)
    finally:
        runner.worker.close()
        if plan.keep_intermediates:
            emit({"type": "intermediates", "path": str(runner.job_dir)})
        else:
            shutil.rmtree(runner.job_dir, ignore_errors=True)
        if runner.cache is not None:
            runner.cache.prune()
    return states


class _Runner:
    def __init__(self, plan: RecipePlan, emit: Emit, config: MachineConfig, worker: _Worker) -> None:
        self.plan, self.emit, self.config, self.worker = plan, emit, config, worker
        self.cache = cache_for(config) if plan.use_cache else None
        self.job_dir = plan.output_dir / f"{JOB_DIR_PREFIX}{uuid.uuid4().hex[:12]}"
        self.envs: dict[str, Any] = {}  # step id (or "ops") -> its ready env
        self.fetched: dict[str, Plan] = {}  # step id -> its plan with the artifacts' paths
        self.code: Any = None

    def run(self, states: list[InputState]) -> None:
        self.plan.output_dir.mkdir(parents=True, exist_ok=True)
        self.job_dir.mkdir()
        for state in states:
            state.stems["mix"] = (state.path, file_sha256(state.path))
        record = self.worker.record
        if record is not None:  # a bundle replays each step model's job on the input that step reads
            for step_id, plan in self.plan.models.items():
                step = self.plan.recipe.step(step_id)
                assert step is not None
                record.note_step(plan.model.id, step_id, step.input_refs[0])
        total = len(self.plan.order)
        for index, step_id in enumerate(self.plan.order, 1):
            step = self.plan.recipe.step(step_id)
            assert step is not None
            model = self.plan.models[step_id].model.id if step_id in self.plan.models else None
            self.emit({"type": "step", "step": step_id, "op": step.op, "model": model, "index": index,
                       "total": total, "inputs": len(states)})
            for state in states:
                if state.error is None:
                    self._step_on(step, state)
        for state in states:
            if state.error is None:
                self._write_outputs(state)

    # ---- one step on one input ----------------------------------------------------------------------
    def _step_on(self, step: Any, state: InputState) -> None:
        inputs = [state.stems[ref] for ref in step.input_refs]
        if isinstance(step, SeparateStep) and self.worker.record is not None:
            self.worker.record.note_step_input(self.plan.models[step.id].model.id, step.id, step.input_refs[0],
                                               str(state.path), str(inputs[0][0]), inputs[0][1])
        try:
            facts = self._facts(step, [sha for _p, sha in inputs])
            key = content_key(facts)
            hit = self.cache.get(key) if self.cache is not None else None
            self.emit({"type": "step_input", "step": step.id, "input": str(state.path), "cached": hit is not None,
                       "key": key})
            if hit is None:
                made = self._compute(step, state, inputs)
                stems = {name: (path, file_sha256(path)) for name, path in made.items()}
                if self.cache is not None:
                    hit = self.cache.put(key, stems, facts)
            if hit is not None:
                stems = {name: (s.path, s.sha256) for name, s in hit.items()}
        except Cancelled:
            raise
        except StemSepError as err:
            state.error = err
            self.emit({"type": "error", "job": None, "step": step.id, "input": str(state.path), **err.to_dict()})
            return
        for name, value in stems.items():
            state.stems[f"{step.id}.{name}"] = value

    def _facts(self, step: Any, input_sha: list[str]) -> dict[str, Any]:
        """What decides the step's output on these inputs: the cache key's content."""
        base = {"step_kind": step.op, "inputs": input_sha, "format": self.plan.output_format}
        if not isinstance(step, SeparateStep):
            return {**base, "params": self.plan.op_params[step.id]}
        plan = self.plan.models[step.id]
        return {**base, "model": plan.model.id, "runtime": plan.runtime, "settings": plan.settings,
                "artifacts": self._artifact_hashes(step.id), "env": self._env_id(step.id)}

    def _artifact_hashes(self, step_id: str) -> dict[str, str]:
        plan = self.plan.models[step_id]
        rows = plan.preflight.report["resolved"]["requirements_status"]["artifacts"] if plan.preflight else []
        hashes = {r["filename"]: r.get("sha256") or r.get("expected_sha256") for r in rows}
        if all(hashes.values()):
            return {name: str(sha) for name, sha in hashes.items()}
        from envmgr.artifacts import ArtifactStore  # not in the store yet and unpinned: download, then hash

        self._fetched(step_id)
        with ArtifactStore(self.config.model_store) as store:
            return {s.filename: s.sha256 or "" for s in store.status(plan.model, runtime=plan.runtime)}

    def _env_id(self, step_id: str) -> str:
        plan = self.plan.models[step_id]
        env = (plan.preflight.report["resolved"]["requirements_status"].get("env") or {}) if plan.preflight else {}
        return env.get("id") or self._env(step_id).id

    def _fetched(self, step_id: str) -> Plan:
        if step_id not in self.fetched:
            self.fetched[step_id] = fetch_artifacts(self.plan.models[step_id], self.emit, self.config)
        return self.fetched[step_id]

    def _env(self, step_id: str) -> Any:
        """The ready env of a separate step (or of the ops, `step_id` "ops"), built once per run."""
        if step_id not in self.envs:
            from envmgr.envs.manager import EnvManager
            from envmgr.envs.request import request_for_model, request_for_ops

            lock = self.plan.ops_lock
            if step_id == "ops":
                request = request_for_ops(self.config)
            else:
                plan = self.plan.models[step_id]
                request, lock = request_for_model(plan.model, plan.runtime, self.config), plan.env_lock
                if plan.adopted_env is not None:  # preflight routed the step to an env the user has: used as is
                    target = self.envs[step_id] = plan.adopted_env.worker_target(self.config.cache_dir)
                    self.emit({"type": "env_ready", "env_id": target.id, "python": str(target.python), "step": step_id})
                    return target
            record = self.worker.record if step_id != "ops" else None  # a bundle has a step model's env and lock
            model_id = self.plan.models[step_id].model.id if record is not None else ""
            env = ensure_env(EnvManager(self.config), request, lock, self.emit, record, model_id)
            self.emit({"type": "env_ready", "env_id": env.id, "python": str(env.python), "step": step_id})
            self.envs[step_id] = env
        return self.envs[step_id]

    def _client(self, step_id: str, runtime: str) -> Any:
        from envmgr.worker.code_copy import ensure_worker_code

        env = self._env(step_id)
        if self.code is None:
            self.code = ensure_worker_code(self.config.cache_dir)
        return self.worker.get(env, runtime, self.code)

    def _compute(self, step: Any, state: InputState, inputs: list[tuple[Path, str]]) -> dict[str, Path]:
        """Run the step on one input in its worker; returns stem -> file in the job folder."""
        folder = self.job_dir / step.id / uuid.uuid4().hex[:8]
        folder.mkdir(parents=True)
        ext = self.plan.output_format
        if isinstance(step, SeparateStep):
            plan = replace(self._fetched(step.id), output_dir=folder)
            client = self._client(step.id, plan.runtime)
            job = plan.job_message(inputs[0][0])
            job["output_names"] = {stem: f"{stem}.{ext}" for stem in plan.model.capabilities.stems}
            job["output_template"] = f"{{stem}}.{ext}"
            model = plan.model.id
        else:
            client = self._client("ops", "stemsep-legacy")
            stem = self.plan.preflight.check.graph.steps[step.id].makes[0]
            job = {"type": "op", "job": uuid.uuid4().hex[:12], "op": step.op, "params": self.plan.op_params[step.id],
                   "inputs": [str(p) for p, _sha in inputs], "output_dir": str(folder), "output_format": ext,
                   "output_name": f"{stem}.{ext}", "stem": stem}
            model = None
        self.emit({"type": "job", "job": job["job"], "input": str(state.path), "step": step.id, "model": model})

        def forward(msg: dict[str, Any]) -> None:
            self.emit({**msg, "input": str(state.path), "step": step.id})

        result = client.run(job, forward)
        return {s["name"]: Path(s["path"]) for s in result["stems"]}

    def _write_outputs(self, state: InputState) -> None:
        """Each output of the recipe for this input, renamed into place whole."""
        for output, ref in self.plan.recipe.outputs.items():
            source, _sha = state.stems[ref]
            target = self.plan.output_dir / self.plan.output_name(state.path, output)
            tmp = self.job_dir / f".out-{uuid.uuid4().hex[:8]}{target.suffix}"
            shutil.copyfile(source, tmp)  # a copy: editing an output must never change the cached stem
            os.replace(tmp, target)
            info = {"type": "output", "input": str(state.path), "name": output, "path": str(target),
                    "from": ref, "step": split_ref(ref)[0]}
            state.outputs.append(info)
            self.emit(info)
