"""Preflight orchestration: gather the facts a job depends on, apply the rules, build the report.

Facts: the input files (header + a first decoded block, via libsndfile: audio_probe), the registry
entry and its routing, the model store (artifact states, no network), the env (state from the env
store and the cached lock; the model's pip packages probed with the env's own interpreter when it
exists), the user's records (confirmed manual steps, trusted code) and the machine's GPUs. Gathering
imports no torch and builds, downloads or writes nothing; what the user stated on this run
(--confirm-manual-steps, --allow-unsafe-pickle) is recorded after the decision, in one place
(consent.py). The report's shape is in docs/preflight.md and preflight.schema.json beside this file.

`separate` calls `run_preflight` first and starts nothing unless `can_proceed` (envmgr/jobs/).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from envmgr.errors import UsageError
from envmgr.preflight import rules
from envmgr.preflight.adopted_env import adopted_env_facts, chosen_env, default_env
from envmgr.preflight.consent import PickleConsent, Statements, record_statements
from envmgr.preflight.options import JobOptions
from registry.errors import ExitCode, StemSepError
from registry.view import artifacts_for, pip_packages_for

if TYPE_CHECKING:  # imported where used: a preflight start is latency-tuned
    from envmgr.config import MachineConfig
    from envmgr.envs.adopted import AdoptedEnv
    from registry.loader import Registry
    from registry.settings import ResolvedSettings
    from registry.view import ModelView

REPORT_SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("preflight.schema.json")
DECODE_PROBE_FRAMES = 4096  # decoded to prove the codec works; the worker reads the whole file


class PreflightBlocked(StemSepError):
    """Preflight said no; nothing was downloaded, built or started. Carries the report."""

    exit_code = ExitCode.PREFLIGHT_BLOCKED
    code = "E_PREFLIGHT_BLOCKED"

    def __init__(self, preflight: "Preflight", exit_code: Optional[ExitCode] = None) -> None:
        blocking = preflight.decision.blocking
        job = [f for f in blocking if f.input is None] or blocking
        first = job[0] if job else None
        what = first.message if first and len(job) == 1 else f"{len(job)} problems block this job"
        lines = [f"{f.code}: {f.message}" + (f" ({f.why})" if f.why else "") for f in job]
        hint = first.hint if first and len(job) == 1 else "fix them in order; `stemsep preflight` shows the report"
        super().__init__(f"preflight blocked the job: {what}", why="\n".join(lines) if len(job) > 1 else
                         (first.why if first else ""), hint=hint, code=first.code if first and len(job) == 1 else None,
                         exit_code=exit_code if exit_code is not None else preflight.decision.exit_code())
        self.preflight = preflight


@dataclass(frozen=True)
class PreflightRequest:
    inputs: Sequence[Path]
    model_id: Optional[str] = None
    runtime: Optional[str] = None
    options: JobOptions = field(default_factory=JobOptions)  # what the user asked besides inputs and model
    phase_fix_reference: Optional[str] = None
    phase_fix_params: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Preflight:
    """The outcome: the JSON report plus the resolved objects `separate` needs to start the job."""

    report: dict[str, Any]
    decision: rules.Decision
    entry: Optional[ModelView] = None  # the typed entry or its frozen form (Registry.view)
    runtime: Optional[rules.RuntimeResolution] = None
    settings: Optional[ResolvedSettings] = None
    inputs: list[Path] = field(default_factory=list)  # every input, absolute, in order, duplicates dropped
    findings: list[rules.Finding] = field(default_factory=list)
    adopted_env: Optional[AdoptedEnv] = None  # the job runs in this adopted env instead of a managed one

    @property
    def can_proceed(self) -> bool:
        return self.decision.can_proceed

    @property
    def unsafe_pickle_allowed(self) -> bool:
        """The job may unpickle its checkpoints in full: the registry marks one and you allowed it (a
        flagged checkpoint without consent blocks the job, so this never holds half)."""
        rows = self.report["resolved"]["requirements_status"]["artifacts"]
        flagged = [r for r in rows if r["unsafe_pickle"]]
        return bool(flagged) and all(r["unsafe_pickle_consent"] in ("flag", "recorded") for r in flagged)

    @property
    def runnable_inputs(self) -> list[Path]:
        ok = set(self.decision.runnable_inputs)
        return [p for p in self.inputs if str(p) in ok]

    def input_errors(self, path: Path) -> list[rules.Finding]:
        return [f for f in self.decision.blocking if f.input == str(path)]

    def skipped_inputs(self) -> list[tuple[Path, StemSepError]]:
        """Inputs blocked while others run, each with its first blocking error (and that code's exit code)."""
        runnable = set(self.runnable_inputs)
        out = []
        for path in self.inputs:
            if path not in runnable:
                first = self.input_errors(path)[0]
                out.append((path, StemSepError(first.message, why=first.why, hint=first.hint, code=first.code,
                                               exit_code=rules.CODES[first.code].exit_code)))
        return out

    def raise_if_blocked(self, exit_code: Optional[ExitCode] = None) -> None:
        if not self.can_proceed:
            raise PreflightBlocked(self, exit_code)


def run_preflight(request: PreflightRequest, *, config: Optional[MachineConfig] = None,
                  registry: Optional[Registry] = None) -> Preflight:
    """Check everything a job depends on, without starting anything. Raises only when the registry or the
    config cannot be read at all; every problem of the job itself is a finding in the report."""
    from envmgr.config import load_config

    started = time.perf_counter()
    options = request.options
    config = config or load_config()
    mode = (options.enforcement or config.enforcement).lower()
    if mode not in rules.MODES:
        raise UsageError(f"unknown enforcement mode {options.enforcement!r}", hint="use strict, soft or report")
    findings: list[rules.Finding] = []
    statements = Statements()  # what the user stated on this run: recorded once the decision is made
    inputs = _absolute_unique(request.inputs)
    audio = [probe_audio(p) for p in inputs]
    if not inputs:
        findings.append(rules.Finding("E_NO_INPUT", "no input files given",
                                      hint="pass one or more audio files: stemsep separate song.flac"))
    for a in audio:
        findings += rules.check_input(a)
    decodable = [a for a in audio if not rules.check_input(a)]

    registry = registry if registry is not None else _load_registry()
    entry = _find_model(registry, request.model_id, findings)
    resolution = settings = None
    adopted = chosen_env(options.env, request.runtime, config)  # --env: its runtime unless --runtime says one
    requested_runtime = request.runtime or (adopted.runtime if adopted else None)
    status: dict[str, Any] = {"env": None, "python": None, "torch": None, "pip": [], "artifacts": [],
                              "manual_steps": []}
    phase_fix = None
    if entry is not None:
        resolution, found = rules.route(entry, requested_runtime)
        findings += found
        for a in decodable:
            findings += rules.check_channels(a, entry, resolution.runtime) + rules.check_sample_rate(a, entry)
        if resolution.runtime:
            settings, found = rules.resolve_job_settings(entry, resolution.runtime, dict(options.settings),
                                                           dict(options.setting_meanings))
            findings += found
        arts = artifact_facts(entry, config, options.allow_unsafe_pickle, statements, runtime=resolution.runtime)
        found, status["artifacts"] = rules.check_artifacts(
            entry.id, arts, require_hashes=options.require_hashes, download=options.download,
            allow_unsafe_pickle=options.allow_unsafe_pickle)
        findings += found
        findings += rules.check_direct_requirements(entry.id, direct_requirement_facts(entry, config,
                                                                                      resolution.runtime))
        if resolution.runtime:
            findings += rules.check_config(entry, resolution.runtime, config_facts(entry, arts))
            findings += _memory_peak(decodable, entry, resolution.runtime, arts)
            findings += rules.check_system_libraries(entry, resolution.runtime,
                                                     system_library_facts(entry, resolution.runtime))
        found, status["manual_steps"] = _manual_steps(entry, config, options.confirm_manual_steps,
                                                      status["artifacts"], statements, resolution.runtime)
        findings += found
        if resolution.runtime:
            # Resolving a lock that is not cached takes seconds (and the network): skip it when the job is
            # already impossible; a cached lock still answers.
            doomed = any(f.fatal and f.input is None for f in findings) or (bool(inputs) and not decodable)
            adopted = adopted or default_env(resolution.runtime, config)
            runtime = resolution.runtime
            facts = (adopted_env_facts(entry, runtime, adopted, config, _companions(entry, runtime)) if adopted
                     else env_facts(entry, runtime, config, resolve=not doomed))
            found, env_status = rules.check_env(entry, resolution.runtime, facts)
            findings += found
            status.update(env_status)
    if request.phase_fix_reference:
        found, phase_fix = _phase_fix(registry, request)
        findings += found

    decision, extra = rules.decide(findings, [str(p) for p in inputs], mode, options.dev_override)
    findings += extra
    report = _report(request, mode, config, decision, findings, audio, entry, resolution, settings, phase_fix,
                     status, time.perf_counter() - started)
    record_statements(config.state_dir, statements)
    return Preflight(report, decision, entry, resolution, settings, inputs, findings, adopted)


# ---- facts -------------------------------------------------------------------------------------

def _absolute_unique(paths: Sequence[Path]) -> list[Path]:
    seen: dict[Path, None] = {}
    for raw in paths:
        seen.setdefault(Path(os.path.expanduser(str(raw))).absolute(), None)
    return list(seen)


def probe_audio(path: Path) -> rules.AudioFacts:
    """The file's state and header, plus a first decoded block (proves the codec works; cheap)."""
    name = str(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return rules.AudioFacts(name, exists=False)
    except OSError as exc:
        return rules.AudioFacts(name, read_error=exc.strerror or str(exc))
    import stat

    if stat.S_ISDIR(st.st_mode):
        return rules.AudioFacts(name, is_dir=True, is_file=False)
    if not stat.S_ISREG(st.st_mode):
        return rules.AudioFacts(name, is_file=False)
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return rules.AudioFacts(name, read_error=exc.strerror or str(exc), size=st.st_size)
    if st.st_size == 0:
        return rules.AudioFacts(name, size=0)
    from envmgr.preflight import audio_probe

    try:
        info = audio_probe.read_info(name, DECODE_PROBE_FRAMES)
    except audio_probe.Undecodable as exc:
        return rules.AudioFacts(name, size=st.st_size, decode_error=str(exc))
    except audio_probe.LibraryMissing:
        return _audio_facts_with_soundfile(name, st.st_size)
    return rules.AudioFacts(name, size=st.st_size, format=info.format, subtype=info.subtype,
                            sample_rate=info.sample_rate, channels=info.channels, frames=info.frames)


def _audio_facts_with_soundfile(name: str, size: int) -> rules.AudioFacts:
    """The same facts through soundfile (imports numpy): where libsndfile cannot be loaded directly."""
    import soundfile as sf

    try:
        with sf.SoundFile(name) as fh:
            facts = rules.AudioFacts(name, size=size, format=fh.format, subtype=fh.subtype,
                                     sample_rate=int(fh.samplerate), channels=int(fh.channels), frames=int(fh.frames))
            fh.buffer_read(min(facts.frames or 0, DECODE_PROBE_FRAMES), dtype="float32")
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as exc:
        return rules.AudioFacts(name, size=size, decode_error=str(exc))
    return facts


def _load_registry() -> Registry:
    from envmgr.catalog.registry_files import load

    return load()  # the same files `stemsep models list` and `separate` read


def _find_model(registry: Registry, model_id: Optional[str], findings: list[rules.Finding]) -> Optional[ModelView]:
    model_id = model_id or registry.default_model
    if not model_id:
        findings.append(rules.Finding("E_NO_DEFAULT_MODEL", "no model given and the registry names no default model",
                                      hint="pass -m MODEL (see `stemsep models list`)"))
        return None
    try:
        return registry.view(model_id)  # no pydantic on a remembered registry: most of a cold start otherwise
    except StemSepError as err:
        findings.append(rules.from_error(err, "E_UNKNOWN_MODEL", subject=model_id))
        return None


def artifact_facts(entry: ModelView, config: MachineConfig, allow_unsafe_pickle: bool = False,
                   statements: Statements | None = None, *, runtime: Optional[str] = None) -> list[rules.ArtifactFacts]:
    """Each artifact's state in the model store (hashes only files it has not recorded yet; no network), with
    the user's trust in code and consent to unpickling (`allow_unsafe_pickle`: given on this run, and recorded).
    Given the `runtime`, only the artifacts it uses (a code file only msst imports is not judged for another)."""
    used = artifacts_for(entry, runtime)
    if not used:
        return []
    from dataclasses import replace

    from envmgr.artifacts import ArtifactStore

    by_name = {a.filename: a for a in used}
    trusted = trusted_code(config, entry, runtime)
    with ArtifactStore(config.model_store) as store:
        states = store.status(entry, runtime=runtime)
    facts = [rules.ArtifactFacts(
        filename=s.filename, kind=s.kind, state=s.state.value, expected_sha256=s.expected_sha256, sha256=s.sha256,
        size=s.size, expected_size=s.expected_size, sources=tuple(s.sources), path=str(s.path), detail=s.detail,
        unsafe_pickle=bool(getattr(by_name.get(s.filename), "unsafe_pickle", False)),
        trusted_sha256=trusted.get(s.filename)) for s in states]
    statements = statements if statements is not None else Statements()
    return [replace(f, **_pickle_consent(config, entry.id, f, allow_unsafe_pickle, statements)) if f.unsafe_pickle
            else f for f in facts]


def direct_requirement_facts(entry: ModelView, config: MachineConfig,
                             runtime: Optional[str] = None) -> list[rules.DirectRequirementFacts]:
    """The model's pip requirements (those `runtime`'s env gets, when given) that install from a direct URL or
    path, with their pin and your trust."""
    from registry import pep508

    direct = [(text, pep508.direct_reference(text)) for text in pip_packages_for(entry, runtime)]
    if not any(url for _t, url in direct):
        return []
    from envmgr.preflight import code_trust

    return [rules.DirectRequirementFacts(text, url, pep508.pinned_sha256(text),
                                         code_trust.requirement_trusted(config.state_dir, entry.id, text))
            for text, url in direct if url]


def _pickle_consent(config: MachineConfig, model_id: str, facts: rules.ArtifactFacts, allow: bool,
                    statements: Statements) -> dict[str, Any]:
    """Whether the user allowed full unpickling of this checkpoint: on this run (`allow`, then remembered for the
    file's content: the registry's sha256 pin, else the stored file's), or earlier for this very content.
    Writes nothing: a consent given on this run goes into `statements`, recorded after the decision."""
    from envmgr.preflight import code_trust

    content = (facts.expected_sha256 or facts.sha256 or "").lower() or None
    recorded = code_trust.trusted_sha256(config.state_dir, model_id, facts.filename)
    if allow:
        if content is None:
            return {"pickle_consent": "flag", "pickle_consent_note": "not remembered: the registry pins no sha256 "
                    "and the file is not in the model store yet, so there is no content to remember it for"}
        if recorded != content:  # the user's statement, remembered for this content only
            statements.pickle_consents.append(
                PickleConsent(model_id, facts.filename, content, Path(facts.path or facts.filename)))
        return {"pickle_consent": "flag", "pickle_consent_note": f"remembered for sha256 {content[:12]}..."}
    if content is not None and recorded == content:
        return {"pickle_consent": "recorded", "pickle_consent_note": f"sha256 {content[:12]}..."}
    return {}


def system_library_facts(entry: ModelView, runtime: str) -> dict[str, bool]:
    """Whether this machine has each system library the runtime loads for this model (found the way ctypes
    finds it, as the libraries' bindings do)."""
    from registry.capabilities import system_libraries

    libs = system_libraries(entry, runtime)
    if not libs:
        return {}
    from ctypes.util import find_library

    return {lib.name: find_library(lib.name) is not None for lib in libs}


def _memory_peak(audio: Sequence[rules.AudioFacts], entry: ModelView, runtime: str,
                 arts: Sequence[rules.ArtifactFacts]) -> list[rules.Finding]:
    """W_MEMORY_PEAK: the memory available now against a whole-file runtime's estimate, the model's weights
    counted by its checkpoint files' sizes (stored, else as the registry states them)."""
    from envmgr.preflight.machine_memory import available_mib

    weights = sum(a.size or a.expected_size or 0 for a in arts if a.kind in ("checkpoint", "onnx")) / 2**20
    available = available_mib() if audio else None
    return [f for a in audio for f in rules.check_memory(a, entry, runtime, available, weights)]


def config_facts(entry: ModelView, arts: Sequence[rules.ArtifactFacts]) -> Optional[rules.ConfigFacts]:
    """What the model's config file says, once it is in the model store (None: no YAML config there yet, or
    one the small reader cannot follow: the registry entry is judged alone then)."""
    config = entry.artifacts.config
    name = str(getattr(config, "filename", "") or "")
    if not name.lower().endswith((".yaml", ".yml")):
        return None
    state = next((a for a in arts if a.filename == name and a.state == "present" and a.path), None)
    if state is None:
        return None
    from envmgr.preflight import config_file

    sections = config_file.read_sections(Path(str(state.path)))
    if sections is None:
        return None
    return rules.ConfigFacts(name, config_file.dotted_keys(sections), config_file.is_mono(sections))


def trusted_code(config: MachineConfig, entry: ModelView, runtime: Optional[str] = None) -> dict[str, str]:
    """filename -> the sha256 the user trusted (`stemsep models trust`), for the model's unpinned code artifacts
    (those `runtime` uses, when given)."""
    from envmgr.preflight import code_trust

    out = {}
    for artifact in artifacts_for(entry, runtime):
        if artifact.kind == "code" and not artifact.sha256:
            sha = code_trust.trusted_sha256(config.state_dir, entry.id, artifact.filename)
            if sha:
                out[artifact.filename] = sha
    return out


def _manual_steps(entry: ModelView, config: MachineConfig, confirm: bool, artifact_rows: list[dict[str, Any]],
                  statements: Statements, runtime: Optional[str]) -> tuple[list[rules.Finding], list[dict[str, Any]]]:
    from envmgr.preflight.confirmations import confirmed_steps

    if not entry.requirements.manual_steps:
        return [], []
    confirmed = confirmed_steps(config.state_dir, entry.id)
    if confirm:
        _, rows = rules.check_manual_steps(entry, confirmed, artifact_rows, runtime)
        waiting = [r["text"] for r in rows if r["state"] == "unconfirmed"]
        if waiting:  # the user's statement: recorded for this model after the decision
            statements.confirmed_steps[entry.id] = waiting
            confirmed |= set(waiting)
    return rules.check_manual_steps(entry, confirmed, artifact_rows, runtime)


def _phase_fix(registry: Registry, request: PreflightRequest) -> tuple[list[rules.Finding], Optional[dict[str, Any]]]:
    ref_id = request.phase_fix_reference
    reference = registry.view(ref_id) if ref_id is not None and ref_id in registry else None
    valid = [m for m in registry.models if registry.view(m).phase_fix.is_valid_reference is True]
    return rules.check_phase_fix(str(ref_id), reference, valid, dict(request.phase_fix_params))


# ---- the env -----------------------------------------------------------------------------------

# Runs inside the env with its own interpreter (-I: no host paths): installed version of each distribution.
_DIST_PROBE = (
    "import json, sys\n"
    "from importlib import metadata\n"
    "out = {}\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        out[name] = metadata.version(name)\n"
    "    except metadata.PackageNotFoundError:\n"
    "        out[name] = None\n"
    "print(json.dumps(out))\n"
)


# The same, for a torch companion (torchvision, torchaudio): its version and the torch range its metadata declares.
_COMPANION_PROBE = (
    "import json, re, sys\n"
    "from importlib import metadata\n"
    "try:\n"
    "    version, reqs = metadata.version(sys.argv[1]), metadata.requires(sys.argv[1]) or []\n"
    "except metadata.PackageNotFoundError:\n"
    "    version, reqs = None, []\n"
    "torch = [r for r in reqs if re.match(r'torch\\b(?![-_.\\w])', r) and 'extra ==' not in r]\n"
    "print(json.dumps([version, torch[0] if torch else None]))\n"
)


def _probe(python: Path, code: str, args: Sequence[str] = (), timeout: float = 60) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([str(python), "-I", "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"the env's interpreter failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def companion_in_env(python: Path, name: str) -> tuple[Optional[str], Optional[str]]:
    """(version of torch companion `name`, e.g. torchvision, the torch range it declares as a specifier like
    '>=2.14.0') in a built env."""
    version, requirement = _probe(python, _COMPANION_PROBE, [name])
    spec = None
    if requirement:
        from packaging.requirements import Requirement

        spec = str(Requirement(requirement.split(";")[0]).specifier) or None
    return version, spec


def installed_versions(python: Path, names: Sequence[str], timeout: float = 60) -> dict[str, Optional[str]]:
    """What the env's own interpreter reports for each distribution (None: not installed)."""
    return _probe(python, _DIST_PROBE, names, timeout)


def _distribution_names(requirements: list[str]) -> dict[str, str]:
    """Requirement -> its distribution's canonical name. Most models pin nothing: then packaging's
    requirement parser (slow to import: scripts/bench/README.md) stays unimported."""
    if not requirements:
        return {}
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return {p: canonicalize_name(Requirement(p).name) for p in requirements}


def env_facts(entry: ModelView, runtime: str, config: MachineConfig, *, resolve: bool = True) -> rules.EnvFacts:
    """The model's env: its state, Python and torch (had or would get), the model's pip packages."""
    from envmgr.envs.manager import EnvManager, env_id_for
    from envmgr.envs.request import request_for_model
    from envmgr.errors import NoInterpreterError, StoreError, UnresolvableError
    from envmgr.fsutil import check_creatable, read_json
    from envmgr.envs.health import env_python
    from envmgr.envs.runtime_defs import RUNTIMES
    from envmgr.envs.store import META
    from envmgr.envs.torch_variant import detect_nvidia, variant_problems

    machine: dict[str, Any] = {"nvidia": detect_nvidia(), "rocm": os.path.exists("/dev/kfd")}
    try:
        req = request_for_model(entry, runtime, config)
    except UnresolvableError as err:
        return rules.EnvFacts("unresolvable", error=err, problem=err.message, **machine)
    except StemSepError as err:
        return rules.EnvFacts("invalid", error=err, problem=err.message, **machine)
    packages = pip_packages_for(entry, runtime)
    base: dict[str, Any] = dict(python_spec=req.python, torch_spec=req.torch, torch_backend=req.torch_backend,
                overrides=tuple(req.overrides), notes=tuple(req.notes),
                torch_cap_lifted=RUNTIMES[runtime].torch_cap_lifted if req.torch else None, **machine)
    untouched = tuple(rules.PipFacts(p) for p in packages)
    manager = EnvManager(config)
    try:
        lock = manager.cached_lock(req)
        if lock is None and resolve:
            lock = manager.lock(req)
    except UnresolvableError as err:
        return rules.EnvFacts("unresolvable", error=err, problem=err.message, pip=untouched, **base)
    except NoInterpreterError as err:
        return rules.EnvFacts("no_interpreter", error=err, problem=err.message, pip=untouched, **base)
    except StoreError as err:  # the state dir, not the index: exit 7 as documented
        return rules.EnvFacts("store", error=err, problem=err.message, pip=untouched, **base)
    except StemSepError as err:
        return rules.EnvFacts("unknown", error=err, problem=err.message, pip=untouched, **base)
    if lock is None:
        return rules.EnvFacts("not_checked", problem="not resolved: the job is blocked anyway", pip=untouched, **base)

    env_id = env_id_for(runtime, lock)
    path = manager.store.env_dir(env_id)
    problem = manager.store.problem(env_id)
    names = _distribution_names(packages)
    if problem is None:
        meta = read_json(path / META, {}) or {}
        torch = meta.get("torch") if req.torch else None
        pip = untouched
        companions: dict[str, Any] = {}
        try:
            if packages:
                found = installed_versions(env_python(path), list(names.values()))
                pip = tuple(rules.PipFacts(p, found.get(names[p]), "env") for p in packages)
            for name in _companions(entry, runtime) if req.torch else ():
                companions[name], companions[f"{name}_torch"] = companion_in_env(env_python(path), name)
        except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            problem = f"its interpreter does not answer: {exc}"
        if problem is None:
            return rules.EnvFacts(
                "ready", env_id=env_id, path=str(path), python=meta.get("python") or lock.interpreter.version,
                python_seen_in="env", torch=(torch or {}).get("version"), torch_seen_in="env" if torch else None,
                torch_build={"cuda": torch.get("cuda"), "hip": torch.get("hip")} if torch else None,
                torch_variant_problems=tuple(variant_problems(torch, backend=req.torch_backend,
                                                              overrides=list(req.overrides))) if req.torch else (),
                pip=pip, **companions, **base)
    try:  # a build is coming: the dirs it writes must be writable now, not after the downloads
        for folder in (config.env_store, config.uv_cache_dir):
            check_creatable(folder)
    except StoreError as err:
        return rules.EnvFacts("store", env_id=env_id, error=err, problem=err.message, pip=untouched, **base)
    locked = lock.packages
    locked_companions: dict[str, Any] = {name: locked.get(name) for name in
                                         (_companions(entry, runtime) if req.torch else ())}
    return rules.EnvFacts(
        "needs_build" if problem == "not built" else "broken", env_id=env_id, path=str(path),
        problem=None if problem == "not built" else problem, python=lock.interpreter.version,
        python_seen_in="interpreter", torch=locked.get("torch") if req.torch else None,
        torch_seen_in="lock" if req.torch else None,
        pip=tuple(rules.PipFacts(p, locked.get(names[p]), "lock") for p in packages),
        **locked_companions, **base)


def _companions(entry: ModelView, runtime: str) -> list[str]:
    """The torch companions (torchvision, torchaudio) the model's architecture imports on this runtime
    (registry/capabilities.py): their build must fit the env's torch."""
    from registry.capabilities import NEEDS_TORCHAUDIO_FOR_TORCH, NEEDS_TORCHVISION_FOR_TORCH, needs

    return [name for name, need in (("torchvision", NEEDS_TORCHVISION_FOR_TORCH),
                                    ("torchaudio", NEEDS_TORCHAUDIO_FOR_TORCH)) if needs(entry, runtime, need)]


# ---- the report --------------------------------------------------------------------------------

def _report(request: PreflightRequest, mode: str, config: MachineConfig, decision: rules.Decision,
            findings: list[rules.Finding], audio: list[rules.AudioFacts], entry: Optional[ModelView],
            resolution: Optional[rules.RuntimeResolution], settings: Optional[ResolvedSettings],
            phase_fix: Optional[dict[str, Any]], status: dict[str, Any], seconds: float) -> dict[str, Any]:
    options = request.options
    blocking = {id(f) for f in decision.blocking}
    blocked_inputs = set(decision.blocked_inputs)
    source = "cli" if options.enforcement else config.sources.get("enforcement", "default")
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "can_proceed": decision.can_proceed,
        "model": entry.id if entry is not None else (request.model_id or None),
        "enforcement": {"mode": mode, "source": source, "dev_override": options.dev_override,
                        "overridden": [f.code for f in decision.overridden]},
        "inputs": [{**a.to_dict(), "state": "blocked" if a.path in blocked_inputs else "ok"} for a in audio],
        "errors": [{**f.to_dict(), "blocking": id(f) in blocking} for f in findings if f.severity == "error"],
        "warnings": [f.to_dict() for f in findings if f.severity == "warning"],
        "resolved": {
            "runtime": resolution.to_dict() if resolution is not None and resolution.runtime else None,
            "settings": settings.to_dict() if settings is not None else None,
            "phase_fix": phase_fix,
            "requirements_status": status,
        },
        "options": {"require_hashes": options.require_hashes, "download": options.download,
                    "confirm_manual_steps": options.confirm_manual_steps,
                    "allow_unsafe_pickle": options.allow_unsafe_pickle, "settings": dict(options.settings)},
        "seconds": round(seconds, 4),
    }


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
