"""The debug bundle: one zip with everything a maintainer needs to reproduce a job run (docs/debugging.md).

`write_bundle(record, error, config=)` is called by whatever runs a job, with the run's facts (a
`envmgr.jobs.job_record.JobRecord`) and the error it ended with (None for a run that went well but was asked
for a bundle). It writes `<log_dir>/debug-bundles/<time>-<model>-<code>-<pid>-<random>.zip` atomically (0600)
and returns its path (`folder=` puts it elsewhere: a batch keeps its own), after removing the oldest bundles of
that folder beyond the config's `debug_bundle_keep`. At the top is REPORT.md (what failed, the one-line cause,
versions, the replay command); beside it machine-readable files (FILES below). Every file passes through one
Scrubber (envmgr/diagnostics/scrub.py) first: no token, password or proxy credential leaves the machine.

Cheap enough for every failure: the only costly steps are hashing the inputs (and artifacts the model store has
not hashed yet); the audio itself goes in only with `include_audio`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envmgr.diagnostics.scrub import Scrubber, secret_name
from registry.errors import ExitCode

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.jobs.job_record import EnvFacts, JobRecord
    from envmgr.jobs.separate import Plan
    from registry.errors import StemSepError

FORMAT = 1
BUNDLE_DIR = "debug-bundles"  # under the machine config's log_dir
REPORT = "REPORT.md"
FILES = {
    "REPORT.md": "what failed, the cause, versions, the command to replay",
    "bundle.json": "format, command, outcome (the error and its traceback), stemsep version and git revision",
    "machine.json": "host interpreter and platform, the machine config and its sources, relevant environment "
                    "variables (secrets redacted)",
    "inputs.json": "each input: size, sha256, audio metadata (preflight's), the bundled copy if any",
    "events.jsonl": "the run's events as `--json` prints them (progress left out)",
    "models/<id>/entry.json": "the resolved registry entry",
    "models/<id>/job.json": "runtime and why, settings as the worker got them, output, options; a recipe step's "
                            "id and what each of its jobs read (step_inputs)",
    "models/<id>/preflight.json": "the full preflight report",
    "models/<id>/env.json": "env id, request, interpreter, installed versions, torch build",
    "models/<id>/lock.txt": "the env's lock (exact versions and hashes; the env id derives from it)",
    "models/<id>/lock-with-sources.txt": "the lock headed by its package sources: `uv pip sync` installs it",
    "models/<id>/artifacts.json": "the model files in the store: path, size, sha256, source",
    "workers/<n>/worker.json": "a worker's command, hello and ready (versions, device)",
    "workers/<n>/transcript.jsonl": "the protocol messages both ways (heartbeats counted, not kept)",
    "workers/<n>/stderr.log": "the worker's stderr (its last 256 KiB)",
    "audio/<n>-<name>": "the inputs themselves (only with --include-audio)",
    "audio/steps/<step>/<n>-<input>_(<reads>).<ext>": "what a recipe step read: an earlier step's stem (only with "
                                                      "--include-audio)",
}
# Environment variables worth a maintainer's eye (values scrubbed): proxies, CUDA/ROCm selection, uv/pip settings.
_ENV_PREFIXES = ("STEMSEP_", "UV_", "PIP_", "CUDA_", "HIP_", "ROCR_", "PYTORCH_", "OMP_", "MKL_")
_ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
              "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "LANG", "LC_ALL", "PATH", "VIRTUAL_ENV")
# The user stopped it, or typed something wrong (the message says so): nothing to debug.
NO_BUNDLE_EXITS = (ExitCode.CANCELLED, ExitCode.TERMINATED, ExitCode.HANGUP, ExitCode.USAGE)


def wants_bundle(error: StemSepError) -> bool:
    """Whether a run that ended with `error` gets a bundle (not when stopped, nor for a usage error)."""
    return error.exit_code not in NO_BUNDLE_EXITS


def write_bundle(record: JobRecord, error: StemSepError | None, *, config: MachineConfig,
                 include_audio: bool = False, traceback: str | None = None, folder: Path | None = None) -> Path:
    """Write the bundle of `record`'s run (ended by `error`, or well when None) into `folder` (default
    `<log_dir>/debug-bundles`), prune that folder, and return the bundle's path."""
    scrub = Scrubber()
    scrub.learn(config.as_dict())
    scrub.learn(_environment())
    files: dict[str, Any] = {}  # archive name -> JSON data, text, or a Path to copy (audio)
    bundle = _bundle_facts(record, error, traceback)
    files["bundle.json"] = bundle
    files["machine.json"] = _machine_facts(config)
    files["inputs.json"], audio = _inputs(record, include_audio)
    files.update(audio)
    files["events.jsonl"] = "".join(json.dumps(e) + "\n" for e in record.events)
    for plan in record.plans:
        files.update(_model_files(plan, record.envs.get(plan.model.id), config, record, include_audio))
    if not record.plans:  # stopped at planning (preflight blocked it): its reports are all there is
        for report in record.preflight_reports():
            files[f"models/{report.get('model') or 'unknown'}/preflight.json"] = report
    for number, worker in enumerate(record.workers, 1):
        files.update(_worker_files(number, worker))
    folder = folder if folder is not None else config.log_dir / BUNDLE_DIR
    path = folder / _bundle_name(record, error)
    from envmgr.diagnostics.bundle_report import render_report

    files = {REPORT: render_report(bundle, files, path), **files}
    _write_zip(path, {name: _scrubbed(scrub, data) for name, data in files.items()})
    prune_bundles(folder, config.debug_bundle_keep, spare=path)
    return path


def prune_bundles(folder: Path, keep: int, *, spare: Path | None = None) -> list[Path]:
    """Remove the oldest bundles (by modification time) of `folder` beyond the newest `keep` (0: none removed),
    never `spare` (the one just written); return what went. Only finished bundles (`*.zip`) are counted: a
    half-written one is a dot-file, and replays' output dirs are left alone. Another process pruning the same
    folder at the same time is harmless."""
    if keep <= 0:
        return []
    found = []
    for path in folder.glob("*.zip"):
        try:
            found.append((path.stat().st_mtime, path.name, path))
        except OSError:  # removed meanwhile
            continue
    found.sort(reverse=True)
    gone = [p for _t, _n, p in found[keep:] if p != spare]
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


def tool_version() -> dict[str, Any]:
    """stemsep's version, and the git revision when it runs from a checkout (with whether files differ)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("stemsep-runtime")
    except PackageNotFoundError:
        ours = None
    out: dict[str, Any] = {"version": ours, "git_revision": None, "git_dirty": None}
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        import subprocess

        try:
            rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                 timeout=10)
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return out
        if rev.returncode == 0:
            out["git_revision"] = rev.stdout.strip()
            out["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    return out


def _bundle_facts(record: JobRecord, error: StemSepError | None, traceback: str | None) -> dict[str, Any]:
    outcome: dict[str, Any] = {"ok": error is None}
    if error is not None:
        outcome["error"] = error.to_dict()
        outcome["traceback"] = traceback or getattr(error, "traceback", None)
    return {"format": FORMAT, "kind": record.kind, "created_at": _iso(time.time()),
            "started_at": _iso(record.started_at), "command": record.command, "command_line": record.command_line,
            "stemsep": tool_version(), "outcome": outcome, "models": [p.model.id for p in record.plans],
            "stopped_at": "run" if record.plans else "planning", "files": FILES}


def _machine_facts(config: MachineConfig) -> dict[str, Any]:
    return {"python": {"version": platform.python_version(), "implementation": sys.implementation.name,
                       "executable": sys.executable},
            "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
                         "platform": platform.platform(), "libc": "-".join(platform.libc_ver())},
            "config": config.as_dict(), "config_sources": dict(config.sources),
            "config_file": str(config.config_file), "environment": _environment()}


def _environment() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items())
            if k in _ENV_NAMES or k.startswith(_ENV_PREFIXES) or secret_name(k)}


def _inputs(record: JobRecord, include_audio: bool) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    from envmgr.artifacts.manifest import sha256_file

    probed = {str(i.get("path")): i for report in record.preflight_reports() for i in report.get("inputs", [])}
    rows, audio = [], {}
    paths = dict.fromkeys(str(p) for plan in record.plans for p in (*plan.inputs, *(s for s, _e in plan.skipped)))
    paths = paths or dict.fromkeys(probed)  # a run stopped at planning: the inputs preflight saw
    for number, text in enumerate(paths, 1):
        path = Path(text)
        row: dict[str, Any] = {"path": text, "metadata": probed.get(text), "bundled": None}
        try:
            row["size"], row["sha256"] = path.stat().st_size, sha256_file(path)
        except OSError as exc:
            row["size"], row["sha256"], row["unreadable"] = None, None, f"{type(exc).__name__}: {exc}"
        if include_audio and row["sha256"]:
            row["bundled"] = f"audio/{number}-{path.name}"
            audio[row["bundled"]] = path
        rows.append(row)
    return rows, audio


def _step_inputs(record: JobRecord, model_id: str, include_audio: bool) -> tuple[list[dict[str, Any]],
                                                                                 dict[str, Path]]:
    """What each job of a recipe step's model read (the recipe's input, or an earlier step's stem from the run's
    job folder or the step cache): recorded sha256, size and audio metadata now, the file with `include_audio`.
    A stem gone since (the job folder of a --no-cache run is removed at its end) keeps its recorded sha256."""
    from envmgr.artifacts.manifest import sha256_file
    from envmgr.preflight.run import probe_audio

    rows, audio = [], {}
    for number, got in enumerate((r for r in record.step_inputs if r["model"] == model_id), 1):
        path = Path(got["path"])
        row: dict[str, Any] = {"step": got["step"], "reads": got["reads"], "recipe_input": got["recipe_input"],
                               "path": got["path"], "sha256": got["sha256"], "size": None, "metadata": None,
                               "bundled": None}
        try:
            row["size"], here = path.stat().st_size, sha256_file(path)
        except OSError as exc:
            row["unreadable"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            continue
        row["metadata"] = probe_audio(path).to_dict()
        if here != got["sha256"]:
            row["unreadable"] = f"the file changed since the step read it (sha256 now {here})"
        elif include_audio:
            named = f"{Path(got['recipe_input']).stem}_({got['reads']}){path.suffix}"  # a cached stem is "1.wav"
            row["bundled"] = f"audio/steps/{got['step']}/{number}-{named}"
            audio[row["bundled"]] = path
        rows.append(row)
    return rows, audio


def _model_files(plan: Plan, env: EnvFacts | None, config: MachineConfig, record: JobRecord,
                 include_audio: bool) -> dict[str, Any]:
    folder = f"models/{plan.model.id}/"
    report: dict[str, Any] | None = None
    if plan.preflight is not None:
        report = plan.preflight.report
    else:  # a plan shipped without its report (a batch's runner): the report as the run's preflight event had it
        report = next((r for r in record.preflight_reports() if r.get("model") == plan.model.id), None)
    files: dict[str, Any] = {
        folder + "entry.json": plan.model.to_json(),
        folder + "job.json": {"model": plan.model.id, "runtime": plan.runtime, "runtime_reason": plan.runtime_reason,
                              "settings": plan.settings, "inputs": [str(p) for p in plan.inputs],
                              "skipped_inputs": [{"input": str(p), **e.to_dict()} for p, e in plan.skipped],
                              "output_dir": str(plan.output_dir), "output_format": plan.output_format,
                              "download": plan.download, "trusted_code": plan.trusted_code,
                              "options": (report or {}).get("options"),
                              "enforcement": (report or {}).get("enforcement")},
        folder + "artifacts.json": _artifacts(plan, config),
    }
    if plan.model.id in record.steps:  # a recipe step: the input each of its jobs read, for the replay
        job = files[folder + "job.json"]
        job["step"] = record.steps[plan.model.id]
        job["step_inputs"], audio = _step_inputs(record, plan.model.id, include_audio)
        files.update(audio)
    if report is not None:
        files[folder + "preflight.json"] = report
    env_json: dict[str, Any] = {"env_id": None, "request": None, "lock": None}
    if env is not None and env.request is not None:
        env_json["request"] = env.request.as_dict()
    if env is not None and env.lock is not None:
        from envmgr.envs.lock_export import exported_lock
        from envmgr.envs.manager import env_id_for

        lock = env.lock
        env_json.update(lock={"digest": lock.digest, "resolved_at": lock.resolved_at, "packages": lock.packages},
                        interpreter=dict(lock.interpreter.__dict__), env_id=env_id_for(plan.runtime, lock))
        files[folder + "lock.txt"] = lock.text
        if env.request is not None:
            files[folder + "lock-with-sources.txt"] = exported_lock(lock.text, env.request.sources)
    if env is not None and env.env is not None:
        env_json.update(env_id=env.env.id, path=str(env.env.path), python=str(env.env.python),
                        versions=env.env.versions, torch=env.env.torch)
    files[folder + "env.json"] = env_json
    return files


def _artifacts(plan: Plan, config: MachineConfig) -> list[dict[str, Any]]:
    """The store's view of the model's files (recorded hashes; a file not hashed yet is hashed now)."""
    if not plan.model.artifacts.all():
        return []
    from envmgr.artifacts import ArtifactStore

    try:
        with ArtifactStore(config.model_store) as store:
            return [s.to_dict() for s in store.status(plan.model, runtime=plan.runtime)]
    except Exception as exc:  # a broken store must not cost the rest of the bundle
        return [{"error": f"{type(exc).__name__}: {exc}"}]


def _worker_files(number: int, worker: Any) -> dict[str, Any]:
    client = worker.client
    folder = f"workers/{number}/"
    return {
        folder + "worker.json": {"env_id": worker.env_id, "runtime": worker.runtime, "command": client.command(),
                                 "pid": client.pid, "hello": client.hello, "ready": client.ready,
                                 "heartbeats": client.transcript.heartbeats,
                                 "messages_dropped": client.transcript.dropped,
                                 "stderr_lines_dropped": client.stderr_log.dropped_lines},
        folder + "transcript.jsonl": "".join(json.dumps(e) + "\n" for e in client.transcript.entries()),
        folder + "stderr.log": client.stderr_log.text(),
    }


def _scrubbed(scrub: Scrubber, data: Any) -> Any:
    if isinstance(data, Path):
        return data
    if isinstance(data, str):
        return scrub.text(data)
    return json.dumps(scrub.data(data), indent=2, sort_keys=True) + "\n"


def _write_zip(path: Path, files: dict[str, Any]) -> None:
    """The archive, written beside `path` and renamed into place (readers never see half a bundle)."""
    from envmgr.fsutil import ensure_dir, store_error

    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise store_error(path.parent, exc) from exc
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                if isinstance(data, Path):
                    archive.write(data, name)
                else:
                    archive.writestr(name, data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _bundle_name(record: JobRecord, error: StemSepError | None) -> str:
    reports = record.preflight_reports()
    model = record.plans[0].model.id if record.plans else (reports[0].get("model") if reports else None) or record.kind
    code = error.code if error is not None else "OK"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    unique = uuid.uuid4().hex[:6]  # a batch or a server fails several jobs of one model within a second
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{stamp}-{model}-{code}-{os.getpid()}-{unique}") + ".zip"


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))
