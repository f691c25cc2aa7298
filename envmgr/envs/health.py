"""Health check of a built env: run its interpreter, import the runtime module, check that the other
key modules are findable, compare what is installed with the lock, and check the torch build without
importing torch (its version file is read; the worker's `ready` handshake imports everything for real).
The import can run while torch is still being installed (ImportCheck).

Only the runtime module is imported because a first import compiles bytecode: importing numpy-based
stacks would double the build time of a warm env (scripts/bench/env_bench.py measures it)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from packaging.version import InvalidVersion, Version

from envmgr.envs import uvtool

# Runs inside the env (stdlib only). argv: the mode, the module to import, then modules that must be
# findable. "full" runs straight through; "staged" imports, then waits for a line on stdin (the host's
# "the install is complete", see ImportCheck) before it looks at what is installed.
_PROBE = r'''
import importlib, importlib.metadata as md, importlib.util, json, os, platform, sys
mode, modules = sys.argv[1], sys.argv[2:]
out = {"python": platform.python_version(), "prefix": sys.prefix, "dists": {}, "errors": {}, "torch": None}
def check(module, load):
    try:
        if load:
            importlib.import_module(module)
        elif importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"no module named {module!r}")
    except BaseException as exc:
        out["errors"][module] = f"{type(exc).__name__}: {exc}"
if modules:
    check(modules[0], True)
if mode == "staged":
    sys.stdin.readline()
    importlib.invalidate_caches()  # files installed since the import above
for module in modules[1:]:
    check(module, False)
for dist in md.distributions():
    name = dist.metadata["Name"]
    if name:
        out["dists"][name] = dist.version
spec = importlib.util.find_spec("torch")
if spec and spec.submodule_search_locations:
    ns = {}
    path = os.path.join(list(spec.submodule_search_locations)[0], "version.py")
    try:
        exec(compile(open(path).read(), path, "exec"), ns)
        out["torch"] = {"version": ns.get("__version__"), "cuda": ns.get("cuda"), "hip": ns.get("hip")}
    except BaseException as exc:
        out["errors"]["torch.version"] = f"{type(exc).__name__}: {exc}"
# What the import loaded from inside the env (modules, and shared libraries mapped into the process on Linux),
# relative to it: the files the host's cheap integrity check stamps (envmgr/envs/file_stamp.py).
root = os.path.realpath(sys.prefix)
loaded = set()
for m in list(sys.modules.values()):
    f = getattr(m, "__file__", None)
    if f:
        loaded.add(os.path.realpath(f))
try:
    with open("/proc/self/maps") as maps:
        loaded.update(line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6)
except OSError:
    pass
out["loaded"] = sorted(os.path.relpath(f, root) for f in loaded
                       if f.startswith(root + os.sep) and os.path.isfile(f) and "__pycache__" not in f)
print(json.dumps(out))
'''


def env_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _probe_cmd(env_dir: Path, mode: str, modules: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return [str(env_python(env_dir)), "-I", "-c", _PROBE, mode, *modules], env


def _parse(returncode: int, stdout: str, stderr: str) -> dict:
    if returncode != 0:
        raise RuntimeError(f"the env's interpreter failed (exit {returncode}): {stderr.strip()[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def probe(env_dir: Path, modules: tuple[str, ...], timeout: float = 300) -> dict:
    """Run the probe in the env: import modules[0], find the rest, list the installed versions and the
    torch build. RuntimeError when it cannot run."""
    cmd, env = _probe_cmd(env_dir, "full", modules)
    try:
        proc = uvtool.run(cmd, env=env, cwd=env_dir, timeout=timeout)
    except OSError as exc:
        raise RuntimeError(f"the env's interpreter does not run: {exc}") from exc
    return _parse(proc.returncode, proc.stdout, proc.stderr)


class ImportCheck:
    """The probe, started while the last (largest) packages are still being installed.

    A first import compiles bytecode (slow for numpy: scripts/bench/README.md); started once everything
    but torch is in place, it overlaps torch's install, then waits for `finish()` to look at the complete
    install (versions, torch build) in the same process. `finish()` gives None when the early import failed for any
    reason (say, the runtime module needs torch at import) or the probe did not run: the caller then
    probes the finished env from scratch, as without it."""

    def __init__(self, env_dir: Path, modules: tuple[str, ...]) -> None:
        self.env_dir, self.modules = env_dir, modules
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        cmd, env = _probe_cmd(self.env_dir, "staged", self.modules)
        try:
            self.proc = subprocess.Popen(cmd, env=env, cwd=self.env_dir, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError:
            self.proc = None

    def finish(self, timeout: float = 300) -> dict | None:
        """Tell the probe the install is complete; its findings, or None (see the class)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        try:
            out, err = proc.communicate("done\n", timeout=timeout)
            found = _parse(proc.returncode, out, err)
        except (subprocess.TimeoutExpired, OSError, RuntimeError, ValueError, IndexError):
            return None
        finally:
            self.stop(proc)
        return None if self.modules and self.modules[0] in found["errors"] else found

    def stop(self, proc: subprocess.Popen[str] | None = None) -> None:
        proc = proc or self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()


def lock_mismatches(found: dict[str, str], locked: dict[str, str]) -> list[str]:
    """Locked packages missing from the env or at another version."""
    from packaging.utils import canonicalize_name  # here: only a health check compares names (with packaging.tags)

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
