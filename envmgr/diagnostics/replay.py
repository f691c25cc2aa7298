"""`stemsep debug replay BUNDLE`: the same job again, in the env the bundle's lock describes.

`prepare_replay` turns a bundle (envmgr/diagnostics/bundle_read.py) into plans `run_separation` runs as
`separate` would, and reports every way this machine differs from the one that wrote it before anything runs:
- the registry entry, settings, runtime and options are the bundle's (a local entry that differs is reported);
- the env is built from the bundle's lock, never resolved afresh (`EnvManager.ensure(lock=)`): the env id derives
  from the lock and the interpreter, so the same lock on a like interpreter gives the same env id. A lock that
  no longer installs (a pinned version gone from the package sources) is E_REPLAY_LOCK_UNAVAILABLE;
- model files are checked against the recorded sha256: a mismatch is E_REPLAY_ARTIFACT_MISMATCH, or a warning
  with `allow_mismatch`;
- inputs: `audio` given, else the bundled copies, else the recorded paths; a sha256 other than the recorded one
  is reported. A recipe step that read another step's stem (job.json's `step` and `step_inputs`) runs on that
  stem: its bundled copy, else the recorded file when its sha256 still matches (the step cache of the machine
  that failed), else E_REPLAY_NO_AUDIO naming the step. A bundle without them (older, or not a recipe's) runs
  every model on the recipe's inputs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from envmgr.diagnostics.bundle import tool_version
from envmgr.diagnostics.bundle_read import Bundle, ModelFacts
from envmgr.diagnostics.scrub import Scrubber
from registry.errors import ExitCode, StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.envs.lock import Lock
    from envmgr.jobs.separate import Plan
    from registry.loader import Registry


class ReplayLockUnavailable(StemSepError):
    exit_code = ExitCode.UNRESOLVABLE
    code = "E_REPLAY_LOCK_UNAVAILABLE"


class ReplayArtifactMismatch(StemSepError):
    exit_code = ExitCode.ARTIFACT
    code = "E_REPLAY_ARTIFACT_MISMATCH"


class ReplayNoJob(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_REPLAY_NO_JOB"


class ReplayNoAudio(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_REPLAY_NO_AUDIO"


@dataclass(frozen=True)
class Difference:
    subject: str  # what differs: "stemsep", "env id", "artifact model.ckpt", ...
    recorded: str
    here: str
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "recorded": self.recorded, "here": self.here, "note": self.note}


Report = Callable[[Difference], None]
Progress = Callable[[dict[str, Any]], None]


def prepare_replay(bundle: Bundle, *, config: MachineConfig, audio: list[Path], output_dir: Path, scratch: Path,
                   report: Report, progress: Progress, allow_mismatch: bool = False) -> list[Plan]:
    """The bundle's job as plans, its envs built from its locks and its model files checked. `scratch`: a dir
    for the bundle's registry entries and audio while the replay runs."""
    _compare_tool(bundle, report)
    models = bundle.models()
    if not models:
        error = bundle.error or {}
        raise ReplayNoJob(f"the recorded run stopped before its job started ({error.get('code')}: "
                          f"{error.get('message')})", why="preflight refused it, so there is no env or job to replay; "
                          "the bundle's models/*/preflight.json says why",
                          hint=f"run its command again to see whether it still does: {bundle.facts['command_line']}")
    registry = _bundle_registry(models, scratch, report)
    inputs = _inputs(bundle, audio, scratch, report) if not all(map(_reads_a_stem, models)) else []
    scrub = Scrubber()
    scrub.learn(config.as_dict())
    plans = []
    for model in models:
        model_inputs = _step_inputs(bundle, model, scratch, report) if _reads_a_stem(model) else inputs
        if model_inputs:
            plans.append(_prepare_model(model, registry, model_inputs, output_dir, config, scrub, report, progress,
                                        allow_mismatch))
    return plans


def _prepare_model(model: ModelFacts, registry: Registry, inputs: list[Path], output_dir: Path,
                   config: MachineConfig, scrub: Scrubber, report: Report, progress: Progress,
                   allow_mismatch: bool) -> Plan:
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model
    from envmgr.jobs.separate import plan_separation

    job = model.job
    plan = plan_separation(inputs, model.id, job["runtime"], output_dir, job["output_format"], _options(job),
                           registry=registry, config=config)
    if plan.runtime != job["runtime"]:
        report(Difference(f"{model.id}: runtime", job["runtime"], plan.runtime))
    if plan.settings != job["settings"]:
        report(Difference(f"{model.id}: settings", _compact(job["settings"]), _compact(plan.settings),
                          "the bundle's settings are used"))
    manager = EnvManager(config)
    request = request_for_model(plan.model, plan.runtime, config)
    _compare_request(model, scrub.data(request.as_dict()), report)
    lock = _bundle_lock(model, manager.interpreter(request), report)
    env = _build(manager, request, lock, model, progress)
    _compare_versions(model, env.versions, report)
    _check_artifacts(model, plan, config, report, allow_mismatch)
    return replace(plan, settings=job["settings"], env_lock=lock)


def _compare_tool(bundle: Bundle, report: Report) -> None:
    recorded, here = bundle.facts["stemsep"], tool_version()
    for key in ("version", "git_revision"):
        if recorded.get(key) != here.get(key):
            report(Difference(f"stemsep {key.replace('_', ' ')}", str(recorded.get(key)), str(here.get(key))))


def _bundle_registry(models: list[ModelFacts], scratch: Path, report: Report) -> Registry:
    """A registry of the bundle's entries alone: the job runs with what the bundle recorded, whatever this
    machine's registry says now (differences are reported)."""
    from envmgr.catalog.registry_files import load
    from registry.loader import load_registry

    try:
        local: Registry | None = load()
    except StemSepError:
        local = None
    for model in models:
        if local is None or model.id not in local.models:
            report(Difference(f"{model.id}: registry entry", "recorded", "not in this machine's registry",
                              "the bundle's entry is used"))
        elif local.view(model.id).to_json() != model.entry:
            report(Difference(f"{model.id}: registry entry", "recorded", "differs in this machine's registry",
                              "the bundle's entry is used"))
    path = scratch / "bundle-registry.json"
    path.write_text(json.dumps({"schema_version": "1", "models": [m.entry for m in models]}), encoding="utf-8")
    return load_registry([path], mode="compat")


def _inputs(bundle: Bundle, audio: list[Path], scratch: Path, report: Report) -> list[Path]:
    from envmgr.artifacts.manifest import sha256_file

    rows = bundle.inputs()
    if audio:
        if len(audio) != len(rows):
            raise ReplayNoAudio(f"the bundle's job had {len(rows)} input(s); --audio gave {len(audio)}",
                                hint="give --audio once per input, in the order REPORT.md lists them")
        paths = [p.expanduser().absolute() for p in audio]
    elif rows and all(r.get("bundled") for r in rows):
        paths = [bundle.extract(r["bundled"], scratch / str(n) / Path(r["path"]).name) for n, r in enumerate(rows)]
    else:
        missing = [r["path"] for r in rows if not Path(r["path"]).is_file()]
        if missing:
            raise ReplayNoAudio(f"the bundle holds no audio and {', '.join(missing)} is not on this machine",
                                hint="give the input with --audio PATH (the sha256 in inputs.json tells if it is the "
                                "same file), or ask for a bundle made with --include-audio")
        paths = [Path(r["path"]) for r in rows]
    for row, path in zip(rows, paths):
        try:
            digest = sha256_file(path)
        except OSError:
            continue  # preflight reports an unreadable input in its own words
        if row.get("sha256") and digest != row["sha256"]:
            report(Difference(f"input {Path(row['path']).name}", row["sha256"], digest, f"{path} is another file"))
    return paths


def _reads_a_stem(model: ModelFacts) -> bool:
    """A recipe step whose jobs read another step's stem, not the recipe's input."""
    step = model.job.get("step")
    return step is not None and step.get("reads") != "mix"


def _step_inputs(bundle: Bundle, model: ModelFacts, scratch: Path, report: Report) -> list[Path]:
    """The stems a recipe step's jobs read: bundled copies, else the recorded files if their sha256 matches."""
    from envmgr.artifacts.manifest import sha256_file

    step, rows = model.job["step"], model.job.get("step_inputs") or []
    if not rows:
        report(Difference(f"{model.id}: job", f"none (step {step['id']} never got {step['reads']}: an earlier "
                          "step failed)", "not replayed"))
    paths = []
    for row in rows:
        recorded = Path(row["path"])
        if row.get("bundled"):
            target = scratch / "steps" / row["step"] / Path(row["bundled"]).name
            paths.append(bundle.extract(row["bundled"], target))
            continue
        try:
            here: str | None = sha256_file(recorded)
        except OSError:
            here = None
        if here == row["sha256"]:
            paths.append(recorded)
            continue
        why = (f"{recorded} is not on this machine" if here is None
               else f"{recorded} here is another file (sha256 {here}, recorded {row['sha256']})")
        raise ReplayNoAudio(f"step {row['step']} ({model.id}) read {row['reads']} of "
                            f"{Path(row['recipe_input']).name}, and the bundle holds no copy of it", why=why,
                            hint="replay a bundle made with --include-audio (it carries each step's input), or "
                            "replay where the recipe ran while its step cache still holds that stem; --audio gives "
                            "the recipe's inputs, not a step's")
    return paths


def _options(job: dict[str, Any]) -> Any:
    from envmgr.preflight.options import JobOptions

    options, enforcement = job.get("options") or {}, job.get("enforcement") or {}
    return JobOptions(enforcement=enforcement.get("mode"), dev_override=bool(enforcement.get("dev_override")),
                      confirm_manual_steps=bool(options.get("confirm_manual_steps")),
                      allow_unsafe_pickle=bool(options.get("allow_unsafe_pickle")),
                      require_hashes=bool(options.get("require_hashes")), download=options.get("download", True),
                      settings=options.get("settings") or {})


def _compare_request(model: ModelFacts, here: dict[str, Any], report: Report) -> None:
    recorded = model.env.get("request") or {}
    for key in ("python", "requirements", "torch_backend", "overrides", "constraints", "index_url",
                "extra_index_urls", "find_links"):
        if key in recorded and recorded[key] != here.get(key):
            report(Difference(f"{model.id}: env request {key}", _compact(recorded[key]), _compact(here.get(key)),
                              "the env is built from the bundle's lock all the same"))


def _bundle_lock(model: ModelFacts, interpreter: Any, report: Report) -> Lock | None:
    from envmgr.envs.lock import Lock
    from envmgr.envs.manager import env_id_for

    if model.lock_text is None:
        report(Difference(f"{model.id}: lock", "none (the run failed before its env was resolved)",
                          "resolved afresh here", "not an exact reproduction of the env"))
        return None
    recorded = model.env.get("interpreter") or {}
    for key in ("implementation", "version", "platform", "libc", "executable"):
        if key in recorded and recorded[key] != getattr(interpreter, key):
            report(Difference(f"{model.id}: interpreter {key}", str(recorded[key]), str(getattr(interpreter, key))))
    lock = Lock(text=model.lock_text, interpreter=interpreter, request_key="debug-replay",
                resolved_at=(model.env.get("lock") or {}).get("resolved_at") or 0.0)
    runtime = model.job["runtime"]
    if model.env.get("env_id") and env_id_for(runtime, lock) != model.env["env_id"]:
        edited = (model.env.get("lock") or {}).get("digest") not in (None, lock.digest)
        report(Difference(f"{model.id}: env id", model.env["env_id"], env_id_for(runtime, lock),
                          "the bundle's lock.txt is not the lock recorded in env.json" if edited
                          else "same lock, another interpreter (the env id includes it)"))
    return lock


def _build(manager: Any, request: Any, lock: Lock | None, model: ModelFacts, progress: Progress) -> Any:
    from envmgr.errors import EnvBuildError, UnresolvableError

    try:
        return manager.ensure(request, lock=lock, progress=lambda stage, message: progress(
            {"type": "env", "stage": stage, "message": message}))
    except (EnvBuildError, UnresolvableError) as exc:
        gone = _unavailable_pins(exc.why or exc.message, lock) if lock is not None else []
        if not gone:
            raise
        raise ReplayLockUnavailable(
            f"the bundle's lock for {model.id} no longer installs here: {', '.join(gone)} cannot be had from this "
            "machine's package sources", why=exc.why,
            hint="the env cannot be rebuilt exactly; make the pinned files available (a find_links dir holding "
            "them: `stemsep env config set find_links DIR`), or reproduce with a fresh resolve: "
            f"`stemsep separate ... -m {model.id}`") from exc


def _unavailable_pins(text: str, lock: Lock) -> list[str]:
    """The locked pins uv's output says cannot be found (no such version, or no file with the locked hash)."""
    pins = lock.packages
    named = re.findall(r"no (?:version|versions) of ([A-Za-z0-9._-]+)==(\S+?)(?:[ ,]|$)", text)
    named += re.findall(r"[Hh]ash mismatch for `?([A-Za-z0-9._-]+)==([^\s`]+)", text)
    out = []
    for name, version in named:
        key = re.sub(r"[-_.]+", "-", name).lower()
        if pins.get(key) == version and f"{key}=={version}" not in out:
            out.append(f"{key}=={version}")
    return out


def _compare_versions(model: ModelFacts, here: dict[str, str], report: Report) -> None:
    recorded = model.env.get("versions") or {}
    for name in sorted(set(recorded) | set(here)):
        if name in recorded and recorded.get(name) != here.get(name):
            report(Difference(f"{model.id}: installed {name}", str(recorded.get(name)), str(here.get(name))))


def _check_artifacts(model: ModelFacts, plan: Plan, config: MachineConfig, report: Report,
                     allow_mismatch: bool) -> None:
    recorded = {a["filename"]: a.get("sha256") for a in model.artifacts if a.get("filename")}
    if not recorded:
        return
    from envmgr.artifacts import ArtifactStore

    with ArtifactStore(config.model_store) as store:
        store.ensure(plan.model, download=plan.download, runtime=plan.runtime)
        here = {s.filename: s.sha256 for s in store.status(plan.model, verify=True, runtime=plan.runtime)}
    wrong = [f"{name} (recorded {want}, here {here.get(name)})" for name, want in recorded.items()
             if want and here.get(name) != want]
    if wrong and not allow_mismatch:
        raise ReplayArtifactMismatch(f"{model.id}: model files differ from the bundle's: {'; '.join(wrong)}",
                                     why="the replay would not run the model that failed",
                                     hint="get the recorded files into the model store (`stemsep models import`), "
                                     "or replay anyway with --allow-mismatch")
    for name in (n for n, want in recorded.items() if want and here.get(n) != want):
        report(Difference(f"{model.id}: artifact {name}", str(recorded[name]), str(here.get(name)),
                          "replaying anyway (--allow-mismatch)"))


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
