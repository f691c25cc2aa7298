"""Adopted envs: Python environments the user already has (a venv, a conda env, UVR's bundled Python),
registered as targets for one runtime and never written by us: not built, locked, pruned or repaired.

An adopted env is recorded by its interpreter's path and a fingerprint (the interpreter's version and every
distribution the env's own pip lists, read through pip-api) in <state_dir>/adopted-envs.json. Every probe runs
the env's interpreter without writing bytecode (-B, PYTHONDONTWRITEBYTECODE) and without the user site; the
worker runs there with its bytecode under our cache (-X pycache_prefix, WorkerClient), so no file inside the
env changes because of us.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from envmgr.envs.health import env_python
from envmgr.errors import UnknownEnvError, UsageError
from envmgr.fsutil import atomic_write_json, read_json
from registry.errors import ExitCode, StemSepError

RECORDS = "adopted-envs.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TIMEOUT = 120  # pip list in a big conda env takes seconds

# Run by the host's own interpreter (pip-api is a host dependency): pip-api asks the env's pip, which it
# finds through PIPAPI_PYTHON_LOCATION, read when pip_api is imported.
_PIP_API_PROBE = """
import json, pip_api
dists = pip_api.installed_distributions()
print(json.dumps({"pip": str(pip_api.PIP_VERSION), "distributions": {
    d.name: {"version": str(d.version), "editable": bool(d.editable)} for d in dists.values()}}))
"""
_INTERPRETER_PROBE = ("import json, platform, sys; print(json.dumps({'python': platform.python_version(), "
                      "'prefix': sys.prefix, 'implementation': sys.implementation.name}))")


class AdoptError(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_ADOPT_INTERPRETER"


@dataclass(frozen=True)
class Fingerprint:
    python: str  # the interpreter's version
    distributions: dict[str, str]  # canonical name -> version, as the env's pip lists them
    editable: tuple[str, ...] = ()  # canonical names installed in editable mode
    pip: str = ""  # the env's pip version (what answered)

    @property
    def digest(self) -> str:
        body = json.dumps({"python": self.python, "distributions": self.distributions}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"python": self.python, "distributions": dict(sorted(self.distributions.items())),
                "editable": list(self.editable), "pip": self.pip, "digest": self.digest}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Fingerprint":
        return cls(data["python"], dict(data["distributions"]), tuple(data.get("editable", ())), data.get("pip", ""))

    def changes_since(self, old: "Fingerprint") -> list[str]:
        """What differs from `old`, one line each: the interpreter, added, removed and changed distributions."""
        out = [f"python {old.python} -> {self.python}"] if old.python != self.python else []
        for name in sorted(set(old.distributions) | set(self.distributions)):
            before, now = old.distributions.get(name), self.distributions.get(name)
            if before is None:
                out.append(f"{name} {now} installed")
            elif now is None:
                out.append(f"{name} {before} removed")
            elif before != now:
                out.append(f"{name} {before} -> {now}")
        return out


@dataclass(frozen=True)
class WorkerTarget:
    id: str
    python: Path
    pycache_prefix: Path


@dataclass(frozen=True)
class AdoptedEnv:
    name: str
    runtime: str
    python: Path  # the interpreter the worker runs with, as the user named it (a venv's bin/python symlink kept)
    prefix: Path  # its sys.prefix: the env's dir
    fingerprint: Fingerprint
    adopted_at: float = field(default_factory=time.time)

    @property
    def id(self) -> str:  # what a worker and its events call the env
        return f"adopted:{self.name}"

    def worker_target(self, cache_dir: Path) -> "WorkerTarget":
        """What a worker source needs to start this env's worker (an Env's id and python), with the dir its
        bytecode goes to instead of the env."""
        return WorkerTarget(self.id, self.python, cache_dir / "adopted-pycache" / self.name)

    def fix_command(self, requirement: str) -> str:
        """The command that would install `requirement` into this env (the user runs it, not us)."""
        return f"{self.python} -m pip install '{requirement}'"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "runtime": self.runtime, "python": str(self.python), "prefix": str(self.prefix),
                "fingerprint": self.fingerprint.to_json(), "adopted_at": self.adopted_at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "AdoptedEnv":
        return cls(data["name"], data["runtime"], Path(data["python"]), Path(data["prefix"]),
                   Fingerprint.from_json(data["fingerprint"]), data.get("adopted_at", 0.0))


def interpreter_of(path: Path) -> Path:
    """An env dir (venv, conda env) -> its interpreter; an interpreter -> itself. Absolute, links kept."""
    path = Path(os.path.expanduser(str(path))).absolute()
    if path.is_dir():
        for candidate in (env_python(path), path / "python.exe", path / "python"):
            if candidate.is_file():
                return candidate
        raise AdoptError(f"{path} holds no Python interpreter", why=f"looked for {env_python(path)} (venv, conda) "
                         "and python(.exe) in it", hint="pass the env's dir or its interpreter's path")
    if not path.exists():
        raise AdoptError(f"{path} does not exist", hint="pass an existing env's dir or its interpreter's path")
    return path


def _clean_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The host's environment without PYTHON* (PYTHONPATH/HOME would mix in host packages), plus what keeps the
    env's interpreter from writing: no bytecode, no user site (the worker runs with -s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "PIPAPI_"))}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1", **(extra or {}))
    return env


def inspect(python: Path) -> tuple[Fingerprint, Path]:
    """The env's fingerprint (through pip-api) and its prefix. Writes nothing into the env."""
    try:
        proc = subprocess.run([str(python), "-I", "-B", "-c", _INTERPRETER_PROBE], capture_output=True, text=True,
                              timeout=60, env=_clean_env(), stdin=subprocess.DEVNULL, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AdoptError(f"{python} does not run as a Python interpreter", why=str(exc),
                         hint="pass the env's dir or its interpreter's path") from exc
    try:
        facts = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AdoptError(f"{python} does not run as a Python interpreter",
                         why=(proc.stderr.strip() or proc.stdout.strip())[-400:] or f"exit {proc.returncode}",
                         hint="pass the env's dir or its interpreter's path") from None
    # The host's interpreter runs pip-api; pip-api runs `<env python> -m pip list -v --format=json`. The env's
    # pip is asked once by itself first: when it fails, its own last line says why (not pip-api's traceback).
    for cmd, extra in (([str(python), "-B", "-s", "-m", "pip", "--version"], {}),
                       ([sys.executable, "-B", "-s", "-c", _PIP_API_PROBE], {"PIPAPI_PYTHON_LOCATION": str(python)})):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL,
                              cwd="/", env=_clean_env(extra))
        if proc.returncode != 0:
            raise StemSepError(f"cannot list the distributions of {python}: its pip does not answer",
                               why=(proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][-500:],
                               hint=f"the env needs a working pip (pip-api asks it; `pip list --format=json` needs "
                               f"pip >= 9): run `{python} -m ensurepip --upgrade` yourself, then adopt again",
                               code="E_ADOPT_NO_PIP", exit_code=ExitCode.ENV_BUILD)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    from packaging.utils import canonicalize_name

    dists: dict[str, str] = {canonicalize_name(n): d["version"] for n, d in found["distributions"].items()}
    editable = tuple(sorted(canonicalize_name(n) for n, d in found["distributions"].items() if d["editable"]))
    return Fingerprint(facts["python"], dists, editable, found["pip"]), Path(facts["prefix"])


class AdoptedStore:
    """The records of adopted envs: one JSON file in the state dir, replaced atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / RECORDS

    def all(self) -> dict[str, AdoptedEnv]:
        data = read_json(self.path, {}) or {}
        return {name: AdoptedEnv.from_json(rec) for name, rec in sorted(data.get("envs", {}).items())}

    def get(self, name: str) -> AdoptedEnv:
        envs = self.all()
        if name not in envs:
            raise UnknownEnvError(f"no adopted env is named {name!r}",
                                  why=f"adopted envs: {', '.join(envs) or 'none'}",
                                  hint="adopt it with `stemsep env adopt PATH --runtime RUNTIME --name NAME`; "
                                  "`stemsep env list` shows them")
        return envs[name]

    def save(self, env: AdoptedEnv) -> None:
        data = read_json(self.path, {}) or {}
        data.setdefault("envs", {})[env.name] = env.to_json()
        atomic_write_json(self.path, data)

    def remove(self, name: str) -> None:
        self.get(name)
        data = read_json(self.path, {}) or {}
        data.get("envs", {}).pop(name, None)
        atomic_write_json(self.path, data)


def adopt(path: Path, runtime: str, name: Optional[str], state_dir: Path) -> AdoptedEnv:
    """Inspect the env at `path` and record it for `runtime` (again: its fingerprint is taken anew)."""
    from envmgr.envs.runtime_defs import RUNTIMES

    if runtime not in RUNTIMES:
        raise StemSepError(f"unknown runtime {runtime!r}", code="E_UNKNOWN_RUNTIME", exit_code=ExitCode.USAGE,
                           hint=f"canonical runtimes: {', '.join(RUNTIMES)}")
    python = interpreter_of(path)
    fingerprint, prefix = inspect(python)
    name = name or prefix.name
    if not _NAME.match(name):
        raise UsageError(f"{name!r} cannot name an adopted env", why="letters, digits, '.', '_' and '-' only, "
                         "up to 64, first a letter or digit", hint="pass --name NAME")
    env = AdoptedEnv(name, runtime, python, prefix, fingerprint)
    AdoptedStore(state_dir).save(env)
    return env


def default_for(runtime: str, entries: list[str]) -> Optional[str]:
    """The config's adopted env for `runtime` (adopted_envs entries `RUNTIME=NAME`), if any."""
    for item in entries:
        key, _, value = item.partition("=")
        if key.strip() == runtime and value.strip():
            return value.strip()
    return None
