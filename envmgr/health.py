"""Health check of a built env: run its interpreter, import the runtime module, check that the other
key modules are findable, compare what is installed with the lock, and check the torch build without
importing torch (its version file is read; the worker's `ready` handshake imports everything for real).

Only the runtime module is imported because a first import compiles bytecode: importing numpy-based
stacks would double the build time of a warm env (scripts/bench/env_bench.py measures it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envmgr import uvtool

# Runs inside the env (stdlib only). argv: the module to import, then modules that must be findable.
_PROBE = r'''
import importlib, importlib.metadata as md, importlib.util, json, os, platform, sys
out = {"python": platform.python_version(), "prefix": sys.prefix, "dists": {}, "errors": {}, "torch": None}
for dist in md.distributions():
    name = dist.metadata["Name"]
    if name:
        out["dists"][name] = dist.version
for i, module in enumerate(sys.argv[1:]):
    try:
        if i == 0:
            importlib.import_module(module)
        elif importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"no module named {module!r}")
    except BaseException as exc:
        out["errors"][module] = f"{type(exc).__name__}: {exc}"
spec = importlib.util.find_spec("torch")
if spec and spec.submodule_search_locations:
    ns = {}
    path = os.path.join(list(spec.submodule_search_locations)[0], "version.py")
    try:
        exec(compile(open(path).read(), path, "exec"), ns)
        out["torch"] = {"version": ns.get("__version__"), "cuda": ns.get("cuda"), "hip": ns.get("hip")}
    except BaseException as exc:
        out["errors"]["torch.version"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
'''


def env_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def probe(env_dir: Path, modules: tuple[str, ...], timeout: float = 300) -> dict:
    """Run the probe in the env: import modules[0], find the rest. RuntimeError when it cannot run."""
    python = env_python(env_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        proc = uvtool.run([str(python), "-I", "-c", _PROBE, *modules], env=env, cwd=env_dir, timeout=timeout)
    except OSError as exc:
        raise RuntimeError(f"the env's interpreter does not run: {exc}") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"the env's interpreter failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lock_mismatches(found: dict[str, str], locked: dict[str, str]) -> list[str]:
    """Locked packages missing from the env or at another version."""
    have = {canonicalize_name(k): v for k, v in found.items()}
    problems = []
    for name, version in sorted(locked.items()):
        got = have.get(canonicalize_name(name))
        if got is None:
            problems.append(f"{name} is missing")
        elif not _same_version(got, version):
            problems.append(f"{name} is {got}, the lock says {version}")
    return problems


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def quick_check(env_dir: Path) -> str | None:
    """Cheap check on use (no process spawned): None when fine, else what is broken."""
    python = env_python(env_dir)
    if not os.path.exists(python):  # follows the symlink: a deleted base interpreter shows here
        return f"its interpreter {python} is gone (was the Python it was built on removed?)"
    cfg = env_dir / "pyvenv.cfg"
    if not cfg.is_file():
        return "pyvenv.cfg is missing"
    return None
