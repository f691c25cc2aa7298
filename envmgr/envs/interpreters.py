"""Choosing the Python interpreter for a new env: the model's range, the configured preference,
explicit paths from the config, and uv's discovery (a PATH scan where uv is not used)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from envmgr.envs import uvtool
from envmgr.config import MachineConfig
from envmgr.errors import NoInterpreterError
from envmgr.fsutil import atomic_write_json, read_json

# Runs inside the candidate interpreter: what it is, where its real binary lives, which platform.
_QUERY = (
    "import json, platform, sys, sysconfig, os\n"
    "base = getattr(sys, '_base_executable', None) or sys.executable\n"
    "print(json.dumps({'version': platform.python_version(), 'implementation': sys.implementation.name,"
    " 'executable': os.path.realpath(base), 'platform': sysconfig.get_platform(),"
    " 'libc': '-'.join(platform.libc_ver())}))\n"
)


@dataclass(frozen=True)
class Interpreter:
    executable: str  # real path of the base interpreter (never a venv's python, never a shim)
    version: str
    implementation: str
    platform: str
    libc: str

    @property
    def key(self) -> str:
        """What an env built on this interpreter depends on (part of the env id)."""
        return f"{self.implementation}-{self.version}-{self.platform}-{self.libc}-{self.executable}"

    def describe(self) -> str:
        return f"{self.implementation} {self.version} ({self.executable})"


def python_range(*ranges: str) -> SpecifierSet:
    spec = SpecifierSet()
    for r in ranges:
        if r:
            spec &= SpecifierSet(r)
    return spec


def model_python_spec(min_version: str | None, max_version: str | None) -> str:
    """Registry `requirements.python` {min, max} as a specifier. `max: "3.11"` allows every 3.11.x."""
    parts = []
    if min_version:
        parts.append(f">={min_version}")
    if max_version:
        release = Version(max_version).release
        if len(release) <= 2:
            upper = (release + (0,))[:2]
            parts.append(f"<{upper[0]}.{upper[1] + 1}")
        else:
            parts.append(f"<={max_version}")
    return ",".join(parts)


def query(path: str | Path) -> Interpreter | None:
    """Ask an interpreter what it is; None when it does not run."""
    exe = shutil.which(str(path)) if not os.path.sep in str(path) else str(path)
    if not exe or not os.path.exists(exe):
        return None
    try:
        proc = uvtool.run([exe, "-I", "-c", _QUERY], timeout=30)
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    try:
        return Interpreter(**json.loads(proc.stdout))
    except (ValueError, TypeError):
        return None


def find_interpreter(spec: str, config: MachineConfig, *, refresh: bool = False) -> Interpreter:
    """The interpreter for an env whose Python must satisfy `spec`. Remembered, so a warm call spawns nothing."""
    wanted = SpecifierSet(spec)
    memo_path = config.cache_dir / "interpreters.json"
    memo_key = hashlib.sha256(json.dumps(
        [spec, config.python, [str(p) for p in config.python_paths], config.use_uv]).encode()).hexdigest()[:24]
    memo = read_json(memo_path, {}) or {}
    hit = memo.get(memo_key)
    if hit and not refresh:
        found = Interpreter(**hit)
        if os.path.exists(found.executable) and wanted.contains(found.version, prereleases=True):
            return found
    found = _discover(wanted, config)
    memo[memo_key] = asdict(found)
    atomic_write_json(memo_path, memo)
    return found


def _discover(wanted: SpecifierSet, config: MachineConfig) -> Interpreter:
    uv_bin = uvtool.find_uv(config)
    # (what to ask uv for, what the answer must satisfy): the preferred version first, then the range.
    requests: list[tuple[str, SpecifierSet]] = []
    if config.python and _compatible(config.python, wanted):
        requests.append((config.python, wanted & SpecifierSet(_as_spec(config.python))))
    requests.append((str(wanted) or ">=3", wanted))
    scanned: list[Interpreter] | None = None
    for request, req_spec in requests:
        for path in config.python_paths:
            found = query(path)
            if found and req_spec.contains(found.version, prereleases=True):
                return found
        if uv_bin:
            proc = uvtool.run([uv_bin, "python", "find", "--system", "--no-project", "--no-config", request],
                              env=uvtool.uv_env(config))
            if proc.returncode == 0 and proc.stdout.strip():
                found = query(proc.stdout.strip().splitlines()[-1])
                if found and req_spec.contains(found.version, prereleases=True):
                    return found
        # uv absent, or it gave up (e.g. on a broken pyenv shim): look at PATH ourselves.
        scanned = _scan_path() if scanned is None else scanned
        for found in scanned:
            if req_spec.contains(found.version, prereleases=True):
                return found
    seen = _describe_all(config, uv_bin)
    raise NoInterpreterError(
        f"no Python interpreter satisfies {wanted or 'any version'}",
        why=("found: " + "; ".join(seen)) if seen else "no Python interpreter was found at all",
        hint="install a Python in that range (e.g. `uv python install 3.11`), or list its path in "
        "python_paths (STEMSEP_PYTHON_PATHS)",
    )


def _compatible(version: str, wanted: SpecifierSet) -> bool:
    return wanted.contains(version, prereleases=True) or wanted.contains(version + ".0", prereleases=True)


def _as_spec(version: str) -> str:
    return f"=={version}.*" if version.count(".") < 2 else f"=={version}"


def _scan_path() -> list[Interpreter]:
    """Interpreters named python3.X / python3 on PATH, in PATH order."""
    out, seen = [], set()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if re.fullmatch(r"python3(\.\d+)?", name):
                found = query(os.path.join(directory, name))
                if found and found.executable not in seen:
                    seen.add(found.executable)
                    out.append(found)
    return out


def discovered(config: MachineConfig) -> list[str]:
    """Every interpreter the env manager can see (python_paths, uv's installed list, else PATH), described."""
    return _describe_all(config, uvtool.find_uv(config))


def _describe_all(config: MachineConfig, uv_bin: str | None) -> list[str]:
    found: dict[str, str] = {}
    for path in config.python_paths:
        info = query(path)
        found[str(path)] = info.describe() if info else f"{path} (does not run)"
    if uv_bin:
        proc = uvtool.run([uv_bin, "python", "list", "--only-installed", "--no-config", "--output-format", "json"],
                          env=uvtool.uv_env(config))
        try:
            for item in json.loads(proc.stdout or "[]"):
                real = os.path.realpath(item.get("path") or "")
                found.setdefault(real, f"{item.get('implementation', 'python')} {item.get('version')} ({real})")
        except ValueError:
            pass
    else:
        for info in _scan_path():
            found.setdefault(info.executable, info.describe())
    return sorted(set(found.values()))
