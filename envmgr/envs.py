"""Managed envs: a model's needs -> an env request -> a lock -> an env id -> a built, healthy env.

The env id is a hash of the resolved lock plus the interpreter and platform (DESIGN §5), so identical
requirement sets share one env and conflicting ones get their own. Building is safe under concurrency
and crashes: per-env file lock (check, lock, check again), build in a temp dir, health check, marker
written last, atomic rename; anything without the marker is never used and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import Version

from envmgr.builder import Progress, build_with_uv, build_with_virtualenv
from envmgr.config import MachineConfig, load_config
from envmgr.errors import EnvBuildError, UnresolvableError
from envmgr.fsutil import atomic_write_json, atomic_write_text, ensure_dir, read_json
from envmgr.health import ImportCheck, env_python, lock_mismatches, probe
from envmgr.interpreters import Interpreter, find_interpreter, model_python_spec, python_range
from envmgr.lock import Lock, cached_lock, resolve
from envmgr.runtime_defs import RUNTIMES
from envmgr.store import LOCK_COPY, MARKER, META, Store
from envmgr.torch_variant import variant_problems
from envmgr.uvtool import Sources, find_uv
from registry.errors import ExitCode, StemSepError
from registry.settings import is_torch_requirement

# progress(stage, message); stages in order: interpreter, resolve, venv, sync, health, marker, rename, ready


@dataclass(frozen=True)
class EnvRequest:
    """Everything that decides what goes into an env. Preflight shows it; `lock_inputs()` keys the lock."""

    runtime: str
    python: str  # PEP 440 specifier set the interpreter must satisfy
    requirements: tuple[str, ...]  # runtime library pin, base libs, torch spec, the model's packages
    torch: str | None  # the torch requirement, None when the env has no torch
    torch_backend: str  # cpu | cuXXX | rocmX.Y | xpu | auto | none
    overrides: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    # Not part of the lock key: why each override is there, and what to import for the health check.
    notes: tuple[str, ...] = field(default=(), compare=False)
    health_modules: tuple[str, ...] = field(default=(), compare=False)

    @property
    def sources(self) -> Sources:
        return Sources(self.index_url, self.extra_index_urls, self.find_links, self.torch_backend)

    def lock_inputs(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "python": self.python, "requirements": list(self.requirements),
                "torch_backend": self.torch_backend, "overrides": list(self.overrides),
                "constraints": list(self.constraints), "index_url": self.index_url,
                "extra_index_urls": list(self.extra_index_urls), "find_links": list(self.find_links)}

    def as_dict(self) -> dict[str, Any]:
        return {**self.lock_inputs(), "torch": self.torch, "notes": list(self.notes),
                "health_modules": list(self.health_modules)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EnvRequest":
        tuples = ("requirements", "overrides", "constraints", "extra_index_urls", "find_links", "notes",
                  "health_modules")
        return cls(**{k: (tuple(v) if k in tuples else v) for k, v in data.items()
                      if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Env:
    id: str
    path: Path
    python: Path  # the env's interpreter: spawn `<python> -m runtimes.worker` with it
    lock: Lock
    versions: dict[str, str]  # "python" and every installed distribution -> version
    runtime: str = ""
    torch: dict | None = None  # {"version", "cuda", "hip"} from torch's version file


def version_spec(name: str, min_version: str | None, max_version: str | None) -> str:
    """`torch` + registry {min, max} -> a requirement; a two-part max ("2.5") allows every 2.5.x."""
    return name + model_python_spec(min_version, max_version)


def _higher(a: str | None, b: str | None) -> str | None:
    """The higher of two minimum versions (either may be absent)."""
    if a is None or b is None:
        return a or b
    return max(a, b, key=Version)


def request_for_model(entry: Any, runtime: str, config: MachineConfig | None = None) -> EnvRequest:
    """The env request for running registry `entry` (a ModelEntry) on `runtime`."""
    config = config or load_config()
    rdef = RUNTIMES.get(runtime)
    if rdef is None:
        raise StemSepError(f"unknown runtime {runtime!r}", code="E_UNKNOWN_RUNTIME", exit_code=ExitCode.USAGE,
                           hint=f"canonical runtimes: {', '.join(RUNTIMES)}")
    reqs = entry.requirements
    model_id = getattr(entry, "id", "?")
    with_torch = rdef.needs_torch(reqs.torch.required)
    requirements: list[str] = []
    library = rdef.library_requirement(config.torch_backend, reqs.runtime_pins.get(runtime))
    if library:
        requirements.append(library)
    requirements += rdef.requires
    torch_spec = None
    if with_torch:
        torch_spec = version_spec("torch", _higher(reqs.torch.min, rdef.torch_floor), reqs.torch.max)
        requirements.append(torch_spec)
        requirements += rdef.torch_requires
    for text in reqs.pip.packages:
        from packaging.requirements import InvalidRequirement, Requirement  # here: most models pin nothing

        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise StemSepError(f"model {model_id}: bad pip requirement {text!r}", why=str(exc),
                               hint="fix requirements.pip.packages in the registry (PEP 508)") from exc
        if text not in requirements:
            requirements.append(text)

    overrides = list(config.overrides)
    notes = [f"machine override: {o}" for o in config.overrides]
    machine_torch = [o for o in config.overrides if is_torch_requirement(o)]
    if with_torch and machine_torch and torch_spec != "torch":
        _check_torch_pin(model_id, machine_torch[0], torch_spec)
    if with_torch and rdef.torch_cap_lifted and not machine_torch:
        # Replaces the library's own torch cap; keeps the model's range.
        cap_free = torch_spec if torch_spec != "torch" else "torch>=2.0.1"
        overrides.append(cap_free)
        notes.append(f"runtime override: {cap_free} ({rdef.torch_cap_lifted})")
    elif with_torch and rdef.torch_cap_lifted:
        notes.append(f"runtime: {rdef.torch_cap_lifted}; the machine override {machine_torch[0]} applies")

    python = python_range(rdef.python, model_python_spec(reqs.python.min, reqs.python.max))
    return EnvRequest(
        runtime=runtime, python=str(python), requirements=tuple(requirements), torch=torch_spec,
        torch_backend=config.torch_backend, overrides=tuple(overrides), constraints=tuple(config.constraints),
        index_url=config.index_url, extra_index_urls=tuple(config.extra_index_urls),
        find_links=tuple(config.find_links), notes=tuple(notes),
        health_modules=rdef.health_imports(with_torch),
    )


def request_for_requirements(requirements: list[str] | tuple[str, ...], *, runtime: str = "custom",
                             python: str | None = None, config: MachineConfig | None = None) -> EnvRequest:
    """An env request for a plain requirement list (tests, tools), with the machine config applied.

    `python` is a version ("3.11") or a specifier set; default: any Python the host would accept.
    """
    config = config or load_config()
    torch = next((r for r in requirements if is_torch_requirement(r)), None)
    if python and python[0].isdigit():
        python = f"=={python}.*" if python.count(".") < 2 else f"=={python}"
    return EnvRequest(
        runtime=runtime, python=python or ">=3.10", requirements=tuple(requirements), torch=torch,
        torch_backend=config.torch_backend, overrides=tuple(config.overrides),
        constraints=tuple(config.constraints), index_url=config.index_url,
        extra_index_urls=tuple(config.extra_index_urls), find_links=tuple(config.find_links),
        notes=tuple(f"machine override: {o}" for o in config.overrides),
    )


def _check_torch_pin(model_id: str, pin: str, torch_spec: str) -> None:
    from packaging.requirements import Requirement

    wanted = Requirement(torch_spec).specifier
    pinned = [s.version for s in Requirement(pin).specifier if s.operator in ("==", "===")]
    if pinned and not wanted.contains(pinned[0], prereleases=True):
        raise UnresolvableError(
            f"model {model_id} needs {torch_spec}, but the machine config forces {pin}",
            packages=["torch"], why="overrides replace every requirement on torch, so the model's range cannot hold",
            hint="change the torch override (STEMSEP_OVERRIDES / overrides) or run another model",
        )


class EnvManager:
    def __init__(self, config: MachineConfig | None = None) -> None:
        self.config = config or load_config()
        self.store = Store(self.config.env_store, self.config.log_dir)

    # -- resolution -------------------------------------------------------------------------------
    def interpreter(self, req: EnvRequest, *, refresh: bool = False) -> Interpreter:
        return find_interpreter(req.python, self.config, refresh=refresh)

    def lock(self, req: EnvRequest, *, refresh: bool = False) -> Lock:
        """The lock for `req` (cached: a warm call spawns no process)."""
        return resolve(req, self.interpreter(req, refresh=refresh), self.config, refresh=refresh)

    def cached_lock(self, req: EnvRequest) -> Lock | None:
        return cached_lock(req, self.interpreter(req), self.config)

    def env_id(self, req: EnvRequest) -> str:
        return env_id_for(req.runtime, self.lock(req))

    # -- state --------------------------------------------------------------------------------------
    def status(self, req: EnvRequest) -> str:
        """ready | needs_build | broken | unresolvable. Resolves when no lock is cached; imports nothing heavy."""
        try:
            env_id = self.env_id(req)
        except UnresolvableError:
            return "unresolvable"
        problem = self.store.problem(env_id)
        if problem is None:
            return "ready"
        return "needs_build" if problem == "not built" else "broken"

    def ensure(self, req: EnvRequest, progress: Progress | None = None) -> Env:
        """A ready env for `req`, building (or rebuilding a broken one) if needed."""
        report = progress or (lambda stage, message: None)
        report("interpreter", f"Python {req.python}")
        interp = self.interpreter(req)
        report("resolve", f"{req.runtime}: lock")
        lock = resolve(req, interp, self.config)
        env_id = env_id_for(req.runtime, lock)
        if self.store.problem(env_id) is None:
            return self._open(env_id, lock, report)
        ensure_dir(self.config.env_store)
        with self.store.file_lock(env_id):
            if self.store.problem(env_id) is None:  # another process built it while we waited
                return self._open(env_id, lock, report)
            self.store.clear_leftovers(env_id)
            self._build(env_id, req, lock, report)
        return self._open(env_id, lock, report)

    def record_use(self, env_id: str, model_id: str | None = None) -> None:
        self.store.record_use(env_id, model_id)

    # -- building -----------------------------------------------------------------------------------
    def _build(self, env_id: str, req: EnvRequest, lock: Lock, report: Progress) -> None:
        started = time.time()
        ensure_dir(self.config.uv_cache_dir)
        tmp = self.store.new_temp_dir(env_id)
        import_check = ImportCheck(tmp, req.health_modules)
        lock_file = tmp.with_name(tmp.name + ".lock.txt")
        try:
            atomic_write_text(lock_file, lock.text)
            uv_bin = find_uv(self.config)
            if uv_bin:
                builder = build_with_uv(uv_bin, tmp, lock_file, lock, req, self.config, report,
                                        on_partial=import_check.start)
            else:
                builder = build_with_virtualenv(tmp, lock_file, lock, req, self.config, report)
            report("health", "import check")
            early = import_check.finish()
            found = self._health(tmp, req, lock, early)
            meta = {"id": env_id, "runtime": req.runtime, "request": req.as_dict(), "lock_digest": lock.digest,
                    "interpreter": lock.interpreter.__dict__, "python": found["python"], "torch": found["torch"],
                    "versions": found["dists"], "builder": builder, "built_at": time.time(),
                    "health_import": "overlapped the last packages' install" if early else "after the install",
                    "build_seconds": round(time.time() - started, 3)}
            atomic_write_text(tmp / LOCK_COPY, lock.text)
            atomic_write_json(tmp / META, meta)
            report("marker", "marking the env complete")
            atomic_write_text(tmp / MARKER, env_id + "\n")
            report("rename", "moving the env into place")
            self.store.install(tmp, env_id)
        except BaseException:
            import_check.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            lock_file.unlink(missing_ok=True)
        self.store.log_build({"event": "built", "env_id": env_id, "runtime": req.runtime, "builder": builder,
                              "seconds": meta["build_seconds"], "pid": os.getpid(), "at": meta["built_at"]})

    def _health(self, env_dir: Path, req: EnvRequest, lock: Lock, found: dict | None = None) -> dict:
        """Judge the probe's findings (`found`: an ImportCheck's, else a fresh probe's)."""
        try:
            found = found or probe(env_dir, req.health_modules)
        except (RuntimeError, ValueError) as exc:
            raise EnvBuildError(f"the new {req.runtime} env failed its health check", why=str(exc),
                                hint="rerun `stemsep setup`; if it persists, report the output above") from exc
        problems = [f"import {m}: {e}" for m, e in found["errors"].items()]
        problems += lock_mismatches(found["dists"], lock.packages)
        if req.torch:
            problems += variant_problems(found["torch"], backend=req.torch_backend, overrides=req.overrides)
        if problems:
            raise EnvBuildError(f"the new {req.runtime} env failed its health check", why="; ".join(problems),
                                hint="check the torch override/backend in `stemsep env config`; the broken "
                                "build was discarded and is rebuilt on the next request")
        return found

    def _open(self, env_id: str, lock: Lock, report: Progress) -> Env:
        path = self.store.env_dir(env_id)
        meta = read_json(path / META, {}) or {}
        report("ready", env_id)
        versions = {"python": meta.get("python", lock.interpreter.version), **meta.get("versions", {})}
        return Env(id=env_id, path=path, python=env_python(path), lock=lock, versions=versions,
                   runtime=meta.get("runtime", ""), torch=meta.get("torch"))


def env_id_for(runtime: str, lock: Lock) -> str:
    """`<runtime>-<16 hex>`: a hash of the lock text plus the interpreter and platform it was resolved for."""
    data = json.dumps([lock.text, lock.interpreter.key])
    return f"{runtime}-{hashlib.sha256(data.encode()).hexdigest()[:16]}"
