"""Orchestration of `stemsep separate`: plan a run, get its env, drive one worker through the inputs.

`plan_separation` decides whether the job may start: it runs preflight (envmgr/preflight/run.py) and
raises `PreflightBlocked` when preflight says no, before anything is downloaded, built or started.
Inputs preflight blocks while others may run are skipped (reported as failed inputs of the batch).

`run_separation` then downloads the artifacts preflight found downloadable (unless --no-download),
materialises the env, starts one worker for the whole batch (the model stays loaded between inputs)
and reports every event through one callback, as dicts shaped like the protocol's messages
(docs/protocol.md, "The --json stream"): the CLI renders them as progress bars or prints them as JSON
lines. A failed input does not stop the batch; Ctrl-C does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from envmgr.jobs.output_checks import OutputError, check_name_lengths, check_output_dir
from envmgr.preflight.options import JobOptions
from envmgr.worker.client import Cancelled, Timeouts, WorkerClient
from registry.errors import ExitCode, StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.envs.adopted import AdoptedEnv
    from envmgr.envs.lock import Lock
    from envmgr.envs.manager import Env, EnvManager
    from envmgr.envs.request import EnvRequest
    from envmgr.jobs.job_record import JobRecord
    from envmgr.preflight.run import Preflight
    from envmgr.worker.prewarm import EarlyWorker
    from registry.loader import Registry
    from registry.view import ModelView

Emit = Callable[[dict[str, Any]], None]
DEFAULT_OUTPUT_DIR = Path("separated")  # relative to the current dir, like demucs' `separated/`
FORMATS = ("wav", "flac")


class InputError(StemSepError):
    exit_code = ExitCode.INPUT
    code = "E_INPUT"


class BatchFailed(StemSepError):
    """Some inputs of a batch failed; the others were separated. Exit code: the first failure's."""

    code = "E_BATCH"


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, decided before anything starts (what preflight will produce)."""

    model: ModelView  # the typed entry or its registry.frozen form: read only
    runtime: str
    runtime_reason: str
    settings: dict[str, Any]
    artifacts: dict[str, str]
    inputs: tuple[Path, ...]
    output_dir: Path
    output_format: str
    warnings: tuple[str, ...] = ()
    preflight: Preflight | None = None  # the report the job was allowed by
    skipped: tuple[tuple[Path, StemSepError], ...] = ()  # inputs preflight blocked; the others run
    download: bool = True  # fetch downloadable artifacts before the env is built
    trusted_code: dict[str, str] = field(default_factory=dict)  # code filename -> sha256 the user trusted
    env_lock: Lock | None = None  # build the env from this lock instead of resolving (a debug replay's)
    adopted_env: AdoptedEnv | None = None  # run in this env the user has (envmgr/envs/adopted.py): nothing built

    def output_names(self, input_path: Path) -> tuple[dict[str, str], str]:
        """Deterministic stem file names: `<input stem>_(<stem>)_<model id>.<ext>`."""
        template = f"{input_path.stem}_({{stem}})_{self.model.id}.{self.output_format}"
        names = {stem: template.replace("{stem}", stem) for stem in self.model.capabilities.stems}
        return names, template

    def job_message(self, input_path: Path) -> dict[str, Any]:
        from envmgr.preflight.code_trust import pin_trusted_code

        names, template = self.output_names(input_path)
        model = pin_trusted_code(self.model.to_json(), self.trusted_code)  # the worker checks one pin
        return {"job": uuid.uuid4().hex[:12], "model": model,
                "artifacts": self.artifacts, "settings": self.settings, "input": str(input_path),
                "output_dir": str(self.output_dir), "output_format": self.output_format,
                "output_names": names, "output_template": template}


@dataclass
class Outcome:
    input: Path
    stems: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: StemSepError | None = None
    model: str = ""


def plan_separation(inputs: list[Path], model_id: str | None = None, runtime: str | None = None,
                    output_dir: Path | None = None, output_format: str = "wav", options: JobOptions | None = None,
                    *, registry: Registry | None = None, config: MachineConfig | None = None,
                    emit: Emit | None = None) -> Plan:
    """Run preflight; raise PreflightBlocked (nothing started) unless it says the job can proceed.
    `options`: what the user asked of the job (enforcement, consents, hashes, downloads, setting overrides).
    `emit` receives the report as a `preflight` event either way. The job's settings carry
    `allow_unsafe_pickle: true` only when preflight found your consent for the model's flagged checkpoints."""
    from envmgr.config import load_config
    from envmgr.preflight.run import PreflightRequest, run_preflight
    from envmgr.catalog.registry_files import load

    if output_format not in FORMATS:
        raise OutputError(f"unknown output format {output_format!r}", hint=f"use one of: {', '.join(FORMATS)}")
    config = config or load_config()
    if registry is None:  # the same files `stemsep models list` reads
        registry = load()
    options = options or JobOptions()
    checked = run_preflight(PreflightRequest(inputs=list(inputs), model_id=model_id, runtime=runtime, options=options),
                            config=config, registry=registry)
    if emit is not None:
        emit({"type": "preflight", "report": checked.report})
    checked.raise_if_blocked()
    plan = plan_from_preflight(checked, (output_dir or DEFAULT_OUTPUT_DIR).expanduser().absolute(), output_format,
                               options, config)
    _check_outputs(plan)
    return plan


def plan_from_preflight(checked: Preflight, output_dir: Path, output_format: str, options: JobOptions,
                        config: MachineConfig) -> Plan:
    """The plan of a job preflight let through (a recipe's `separate` steps are planned from theirs too)."""
    from envmgr.preflight.run import trusted_code

    assert checked.entry is not None and checked.runtime is not None and checked.runtime.runtime
    assert checked.settings is not None  # a job preflight lets through has its model, runtime and settings
    native = checked.settings.native()
    if checked.unsafe_pickle_allowed:  # every runtime reads the consent here (runtimes/*/adapter.py)
        native["allow_unsafe_pickle"] = True
    return Plan(model=checked.entry, runtime=checked.runtime.runtime, runtime_reason=checked.runtime.reason or "user",
                settings=native, artifacts={}, inputs=tuple(checked.runnable_inputs),
                output_dir=output_dir, output_format=output_format,
                warnings=tuple(f"{w['code']}: {w['message']}" for w in checked.report["warnings"]),
                preflight=checked, skipped=tuple(checked.skipped_inputs()), download=options.download,
                trusted_code=trusted_code(config, checked.entry, checked.runtime.runtime),
                adopted_env=checked.adopted_env)


def _check_outputs(plan: Plan) -> None:
    """Before anything is fetched or built: the output dir can be written, every stem file name fits the
    filesystem, and no two inputs would write the same files."""
    anchor = check_output_dir(plan.output_dir)
    owner: dict[str, Path] = {}
    for path in plan.inputs:
        names, template = plan.output_names(path)
        check_name_lengths(plan.output_dir, anchor, names.values())
        other = owner.setdefault(template, path)
        if other != path:
            raise OutputError(f"{other} and {path} would write the same stem files ({template})",
                              code="E_OUTPUT_COLLISION", hint="separate them in two runs with different -o dirs")




def fetch_artifacts(plan: Plan, emit: Emit, config: MachineConfig) -> Plan:
    """The model's files from the store, downloading what preflight found downloadable (`plan.download`).
    Preflight already enforced --require-hashes (or let it through in a lenient mode). Only the files the plan's
    runtime uses (an artifact's `runtimes`)."""
    from registry.view import artifacts_for

    if not artifacts_for(plan.model, plan.runtime):
        return plan
    from dataclasses import replace

    from envmgr.artifacts import ArtifactStore
    with ArtifactStore(config.model_store) as store:
        paths = store.ensure(plan.model, download=plan.download, progress=lambda event: emit(event.to_dict()),
                             runtime=plan.runtime)
    return replace(plan, artifacts={name: str(path) for name, path in paths.items()})


def run_separation(plan: Plan | Sequence[Plan], emit: Emit, *, config: MachineConfig | None = None,
                   timeouts: Timeouts = Timeouts(), on_stderr: Callable[[str], None] | None = None,
                   early: EarlyWorker | None = None, record: JobRecord | None = None,
                   workers: WorkerSource | None = None) -> list[Outcome]:
    """Run every input of `plan` through one worker; given several plans (one per model: `-m A -m B`), run
    them one after another, each in its own env, with one summary at the end. Consecutive models in the
    same env and runtime share the worker (a model's own code loads beside the library's classes).
    Raises Cancelled on Ctrl-C and BatchFailed (or the single input's own error) when inputs failed; the
    events say which. In a multi-model batch, a model that cannot start (download, env build) fails its
    inputs and the next model runs. `early` (envmgr.worker.prewarm): a worker started before planning, adopted
    when the first worker needed is that very one. `record` (envmgr/jobs/job_record.py): notes the run's facts
    for a debug bundle. `workers`: workers kept beyond this run (`stemsep serve` keeps them warm across
    jobs); the run takes its workers from there and leaves them running."""
    from envmgr.config import load_config

    config = config or load_config()
    plans = [plan] if isinstance(plan, Plan) else list(plan)
    if record is not None:
        record.note_plans(plans)
        emit = record.noting(emit)
    outcomes: list[Outcome] = []
    worker: WorkerSource = _Worker(emit, timeouts, on_stderr, early, record) if workers is None else workers
    worker.emit = emit  # a kept source reports its workers into this run's events
    try:
        for one in plans:
            try:
                outcomes += _run_plan(one, emit, config, worker, record)
            except Cancelled:
                raise
            except StemSepError as err:
                if len(plans) == 1:
                    raise
                for path, why in [*((p, err) for p in one.inputs), *one.skipped]:
                    outcomes.append(Outcome(path, error=why, model=one.model.id))
                    emit({"type": "error", "job": None, "input": str(path), "model": one.model.id, **why.to_dict()})
    finally:
        if workers is None:
            worker.close()
    failed = [o for o in outcomes if o.error is not None]
    emit({"type": "summary", "ok": len(outcomes) - len(failed), "failed": len(failed),
          "stems": [s["path"] for o in outcomes for s in o.stems]})
    if len(outcomes) == 1 and failed:
        raise failed[0].error  # type: ignore[misc]
    if failed:
        first = failed[0].error
        assert first is not None
        label = (lambda o: f"{o.model}: {o.input.name}") if len(plans) > 1 else (lambda o: o.input.name)
        raise BatchFailed(f"{len(failed)} of {len(outcomes)} {'jobs' if len(plans) > 1 else 'inputs'} failed",
                          why="; ".join(f"{label(o)}: {o.error.message}" for o in failed if o.error),
                          hint=first.hint, exit_code=first.exit_code)
    return outcomes


class WorkerSource(Protocol):
    """Where a run gets the worker for an env and runtime: `_Worker` (the batch's own) or the warm workers of
    `stemsep serve` (envmgr/serve/workers.py). `emit` receives the `worker` event of each worker it starts."""

    emit: Emit

    def get(self, env: Any, runtime: str, code: Any) -> WorkerClient: ...

    def close(self) -> None: ...


def worker_event(client: WorkerClient, prewarm: str = "none") -> dict[str, Any]:
    """The `worker` event of a worker that completed its handshake."""
    hello, ready = client.hello, client.ready
    assert hello is not None and ready is not None  # start() returns after the handshake
    return {"type": "worker", "pid": client.pid, "protocol": hello["protocol"], "python": hello["python"],
            "versions": ready["versions"], "device": ready["device"], "prestarted": prewarm == "adopted",
            "prewarm": prewarm}


class _Worker:
    """The batch's current worker: kept while models run in its env and runtime, replaced otherwise."""

    def __init__(self, emit: Emit, timeouts: Timeouts, on_stderr: Callable[[str], None] | None,
                 early: EarlyWorker | None = None, record: JobRecord | None = None) -> None:
        self.emit, self.timeouts, self.on_stderr, self.early, self.record = emit, timeouts, on_stderr, early, record
        self.client: WorkerClient | None = None
        self.key: tuple[str, str] | None = None

    def get(self, env: Any, runtime: str, code: Any) -> WorkerClient:
        if self.client is not None and (self.key != (env.id, runtime) or not self.client.alive):
            self.close()  # another env, or the last one had to be stopped
        if self.client is None:
            self.client = WorkerClient(env.python, runtime, code, env_id=env.id, timeouts=self.timeouts,
                                       on_stderr=self.on_stderr, pycache_prefix=getattr(env, "pycache_prefix", None))
            self.key = (env.id, runtime)
            if self.record is not None:  # before the start: a failed handshake has a transcript too
                self.record.note_worker(self.client, env.id, runtime)
            self.client.start(self.early)
            prewarm = "none"
            if self.early is not None:  # only a run's first worker can have been started early
                self.early.remember(self.client.command(), code.root)
                prewarm, self.early = self.early.outcome, None
            self.emit(worker_event(self.client, prewarm))
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = self.key = None


def _run_plan(plan: Plan, emit: Emit, config: MachineConfig, worker: WorkerSource,
              record: JobRecord | None = None) -> list[Outcome]:
    """One model: its artifacts, its env, the batch's worker for that env for all its inputs."""
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from envmgr.worker.code_copy import ensure_worker_code

    emit({"type": "plan", "model": plan.model.id, "runtime": plan.runtime, "runtime_reason": plan.runtime_reason,
          "inputs": [str(p) for p in plan.inputs], "output_dir": str(plan.output_dir),
          "output_format": plan.output_format, "settings": plan.settings})
    plan = fetch_artifacts(plan, emit, config)
    manager = EnvManager(config)
    env: Any
    if plan.adopted_env is not None:  # the user's own env: used as it is (preflight judged it)
        env = plan.adopted_env.worker_target(config.cache_dir)
    else:
        env = ensure_env(manager, request_for_model(plan.model, plan.runtime, config), plan.env_lock, emit, record,
                         plan.model.id)
    emit({"type": "env_ready", "env_id": env.id, "python": str(env.python), "model": plan.model.id})
    code = ensure_worker_code(config.cache_dir)
    try:
        plan.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output dir {plan.output_dir}", why=exc.strerror or str(exc),
                          hint="pick another dir with -o") from exc
    outcomes: list[Outcome] = []
    for path, err in plan.skipped:  # blocked by preflight; the worker never sees them
        outcomes.append(Outcome(path, error=err, model=plan.model.id))
        emit({"type": "error", "job": None, "input": str(path), **err.to_dict()})
    try:
        for path in plan.inputs:
            client = worker.get(env, plan.runtime, code)
            if record is not None:  # a worker kept warm by the caller (a server's slot) was not noted when started
                record.note_worker(client, env.id, plan.runtime)
            outcomes.append(_run_one(client, plan, path, emit))
    finally:
        if plan.adopted_env is None:
            manager.record_use(env.id, plan.model.id)
    return outcomes


def ensure_env(manager: EnvManager, request: EnvRequest, lock: Lock | None, emit: Emit, record: JobRecord | None,
               model_id: str) -> Env:
    """`manager.ensure` with its progress as `env` events. `record` (a debug bundle's facts) notes `model_id`'s
    request and env, or, when the env cannot be had, the lock it was being built from."""
    if record is not None:
        record.note_request(model_id, request)
    try:
        env = manager.ensure(request, lock=lock, progress=lambda stage, message: emit(
            {"type": "env", "stage": stage, "message": message}))
    except BaseException:
        if record is not None:
            record.note_env_failed(model_id, manager, request, lock)
        raise
    if record is not None:
        record.note_env(model_id, env)
    return env


def _run_one(client: WorkerClient, plan: Plan, path: Path, emit: Emit) -> Outcome:
    job = plan.job_message(path)
    emit({"type": "job", "job": job["job"], "input": str(path), "model": plan.model.id})
    outcome = Outcome(path, model=plan.model.id)

    def forward(msg: dict[str, Any]) -> None:
        emit({**msg, "input": str(path)})

    try:
        result = client.run(job, forward)
    except Cancelled:
        raise
    except StemSepError as err:
        outcome.error = err
        emit({"type": "error", "job": job["job"], "input": str(path), "model": plan.model.id, **err.to_dict()})
        return outcome
    outcome.stems, outcome.warnings = result["stems"], result.get("warnings") or []
    return outcome
