"""Orchestration of `stemsep separate`: plan a run, get its env, drive one worker through the inputs.

`plan_separation` is the seam that decides whether the job may start and resolves what it needs
(model, runtime, native settings, artifact paths). It does the minimal checks itself today (inputs
readable, model known, runtime allowed, output names distinct); `stemsep preflight` replaces it with
the full rule set, returning the same `Plan`.

`run_separation` then materialises the env, starts one worker for the whole batch (the model stays
loaded between inputs) and reports every event through one callback, as dicts shaped like the
protocol's messages (docs/protocol.md, "The --json stream"): the CLI renders them as progress bars or
prints them as JSON lines. A failed input does not stop the batch; Ctrl-C does.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from envmgr.worker_client import Cancelled, Timeouts, WorkerClient
from registry.errors import ExitCode, StemSepError

Emit = Callable[[dict[str, Any]], None]
DEFAULT_OUTPUT_DIR = Path("separated")  # relative to the current dir, like demucs' `separated/`
FORMATS = ("wav", "flac")


class InputError(StemSepError):
    exit_code = ExitCode.INPUT
    code = "E_INPUT"


class OutputError(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_OUTPUT"


class BatchFailed(StemSepError):
    """Some inputs of a batch failed; the others were separated. Exit code: the first failure's."""

    code = "E_BATCH"


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, decided before anything starts (what preflight will produce)."""

    model: Any  # registry.model.ModelEntry
    runtime: str
    runtime_reason: str
    settings: dict[str, Any]
    artifacts: dict[str, str]
    inputs: tuple[Path, ...]
    output_dir: Path
    output_format: str
    warnings: tuple[str, ...] = ()

    def output_names(self, input_path: Path) -> tuple[dict[str, str], str]:
        """Deterministic stem file names: `<input stem>_(<stem>)_<model id>.<ext>`."""
        template = f"{input_path.stem}_({{stem}})_{self.model.id}.{self.output_format}"
        names = {stem: template.replace("{stem}", stem) for stem in self.model.capabilities.stems}
        return names, template

    def job_message(self, input_path: Path) -> dict[str, Any]:
        names, template = self.output_names(input_path)
        return {"job": uuid.uuid4().hex[:12], "model": self.model.model_dump(mode="json"),
                "artifacts": self.artifacts, "settings": self.settings, "input": str(input_path),
                "output_dir": str(self.output_dir), "output_format": self.output_format,
                "output_names": names, "output_template": template}


@dataclass
class Outcome:
    input: Path
    stems: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: StemSepError | None = None


def plan_separation(inputs: list[Path], model_id: str | None = None, runtime: str | None = None,
                    output_dir: Path | None = None, output_format: str = "wav", registry: Any = None,
                    config: Any = None) -> Plan:
    """Decide whether the run may start; raise a StemSepError that says why not. (Preflight's seam.)"""
    from envmgr.config import load_config
    from envmgr.registry_files import registry_files
    from registry.loader import load_registry
    from registry.routing import choose_runtime
    from registry.settings import resolve_settings

    if output_format not in FORMATS:
        raise OutputError(f"unknown output format {output_format!r}", hint=f"use one of: {', '.join(FORMATS)}")
    checked = _check_inputs(inputs)
    config = config or load_config()
    if registry is None:  # the same files `stemsep models list` reads
        base, overlays = registry_files()
        registry = load_registry(paths=base, overlays=overlays)
    model_id = model_id or registry.default_model
    if not model_id:
        raise StemSepError("no model given and the registry names no default model", code="E_NO_DEFAULT_MODEL",
                           exit_code=ExitCode.USAGE, hint="pass -m MODEL (see `stemsep models list`)")
    entry = registry.get(model_id)
    choice = choose_runtime(entry, runtime)
    out = (output_dir or DEFAULT_OUTPUT_DIR).expanduser().absolute()
    plan = Plan(model=entry, runtime=choice.runtime, runtime_reason=choice.reason,
                settings=resolve_settings(entry, choice.runtime).native(), artifacts={}, inputs=checked,
                output_dir=out, output_format=output_format)
    _check_output_names(plan)
    if entry.artifacts.all():
        plan = _with_artifacts(plan, config)
    return plan


def _check_inputs(inputs: list[Path]) -> tuple[Path, ...]:
    if not inputs:
        raise InputError("no input files given", hint="pass one or more audio files: stemsep separate song.flac")
    seen: dict[Path, None] = {}
    for raw in inputs:
        path = Path(os.path.expanduser(str(raw))).absolute()
        if not path.exists():
            raise InputError(f"input {raw} does not exist", code="E_INPUT_NOT_FOUND",
                             hint="check the path (quote names with spaces)")
        if path.is_dir():
            raise InputError(f"input {raw} is a directory", code="E_INPUT_IS_DIR",
                             hint=f"pass the audio files in it, e.g. {raw}/*.flac")
        if not path.is_file():
            raise InputError(f"input {raw} is not a regular file", code="E_INPUT_NOT_FILE",
                             hint="pass an audio file (pipes and devices cannot be read twice)")
        try:
            with open(path, "rb") as fh:
                empty = not fh.read(1)
        except OSError as exc:
            raise InputError(f"cannot read input {raw}", code="E_INPUT_UNREADABLE", why=exc.strerror or str(exc),
                             hint="check the file's permissions") from exc
        if empty:
            raise InputError(f"input {raw} is empty (0 bytes)", code="E_INPUT_EMPTY",
                             hint="the file holds no data; export or copy it again")
        seen.setdefault(path, None)  # the same file twice runs once
    return tuple(seen)


def _check_output_names(plan: Plan) -> None:
    owner: dict[str, Path] = {}
    for path in plan.inputs:
        _, template = plan.output_names(path)
        other = owner.setdefault(template, path)
        if other != path:
            raise OutputError(f"{other} and {path} would write the same stem files ({template})",
                              code="E_OUTPUT_COLLISION", hint="separate them in two runs with different -o dirs")




def _with_artifacts(plan: Plan, config: Any) -> Plan:
    from dataclasses import replace

    from envmgr.artifacts import ArtifactStore

    with ArtifactStore(config.model_store) as store:
        paths = store.ensure(plan.model)
    return replace(plan, artifacts={name: str(path) for name, path in paths.items()})


def run_separation(plan: Plan, emit: Emit, *, config: Any = None, timeouts: Timeouts = Timeouts(),
                   on_stderr: Callable[[str], None] | None = None) -> list[Outcome]:
    """Run every input of `plan` through one worker. Raises Cancelled on Ctrl-C and BatchFailed (or the
    single input's own error) when inputs failed; the events say which."""
    from envmgr.config import load_config
    from envmgr.envs import EnvManager, request_for_model
    from envmgr.worker_code import ensure_worker_code

    config = config or load_config()
    emit({"type": "plan", "model": plan.model.id, "runtime": plan.runtime, "runtime_reason": plan.runtime_reason,
          "inputs": [str(p) for p in plan.inputs], "output_dir": str(plan.output_dir),
          "output_format": plan.output_format, "settings": plan.settings})
    manager = EnvManager(config)
    env = manager.ensure(request_for_model(plan.model, plan.runtime, config),
                         progress=lambda stage, message: emit({"type": "env", "stage": stage, "message": message}))
    emit({"type": "env_ready", "env_id": env.id, "python": str(env.python)})
    code = ensure_worker_code(config.cache_dir)
    try:
        plan.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output dir {plan.output_dir}", why=exc.strerror or str(exc),
                          hint="pick another dir with -o") from exc
    outcomes: list[Outcome] = []
    client: WorkerClient | None = None
    try:
        for path in plan.inputs:
            if client is None or not client.alive:  # first input, or the last worker had to be stopped
                client = WorkerClient(env.python, plan.runtime, code, env_id=env.id, timeouts=timeouts,
                                      on_stderr=on_stderr)
                ready = client.start()
                emit({"type": "worker", "pid": client.pid, "protocol": client.hello["protocol"],
                      "python": client.hello["python"], "versions": ready["versions"], "device": ready["device"]})
            outcomes.append(_run_one(client, plan, path, emit))
    finally:
        if client is not None:
            client.close()
        manager.record_use(env.id, plan.model.id)
    failed = [o for o in outcomes if o.error is not None]
    emit({"type": "summary", "ok": len(outcomes) - len(failed), "failed": len(failed),
          "stems": [s["path"] for o in outcomes for s in o.stems]})
    if len(outcomes) == 1 and failed:
        raise failed[0].error  # type: ignore[misc]
    if failed:
        first = failed[0].error
        assert first is not None
        raise BatchFailed(f"{len(failed)} of {len(outcomes)} inputs failed",
                          why="; ".join(f"{o.input.name}: {o.error.message}" for o in failed if o.error),
                          hint=first.hint, exit_code=first.exit_code)
    return outcomes


def _run_one(client: WorkerClient, plan: Plan, path: Path, emit: Emit) -> Outcome:
    job = plan.job_message(path)
    emit({"type": "job", "job": job["job"], "input": str(path), "model": plan.model.id})
    outcome = Outcome(path)

    def forward(msg: dict[str, Any]) -> None:
        emit({**msg, "input": str(path)})

    try:
        result = client.run(job, forward)
    except Cancelled:
        raise
    except StemSepError as err:
        outcome.error = err
        emit({"type": "error", "job": job["job"], "input": str(path), **err.to_dict()})
        return outcome
    outcome.stems, outcome.warnings = result["stems"], result.get("warnings") or []
    return outcome
