"""Resolving an env request to a lock with `uv pip compile --generate-hashes`, cached per request.

The lock pins exact versions and artifact hashes; the env id is derived from it (see envmgr.envs.manager), so a
new upstream release changes nothing until the lock is refreshed, and two requests that resolve to the
same packages share one env. A cached lock means a warm `separate` spawns no resolver.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from envmgr.envs import uvtool
from envmgr.config import MachineConfig
from envmgr.errors import EnvBuildError, UnresolvableError
from envmgr.fsutil import atomic_write_json, ensure_dir, read_json, store_error
from envmgr.envs.interpreters import Interpreter
from envmgr.envs.request import EnvRequest

if TYPE_CHECKING:
    from packaging.requirements import Requirement


# packaging and filelock are imported where used: a warm `separate` reads a cached lock and needs neither
# (their imports cost start-up time: scripts/bench/README.md).

_NET_ERRORS = ("Failed to fetch", "error sending request", "Connection refused", "tcp connect error",
               "dns error", "failed to lookup address", "Could not connect", "timed out", "network")
_STORE_ERRORS = ("No space left on device", "File too large", "Read-only file system", "Disk quota exceeded")


@dataclass(frozen=True)
class Lock:
    text: str  # requirements.txt with exact pins and --hash lines (uv's output, header stripped)
    interpreter: Interpreter
    request_key: str
    resolved_at: float

    @property
    def packages(self) -> dict[str, str]:
        """Locked distribution name -> version."""
        from packaging.utils import canonicalize_name

        out: dict[str, str] = {}
        for line in self.text.splitlines():
            req = _entry(line)
            pins = [s.version for s in req.specifier if s.operator in ("==", "===")] if req else []
            if pins:
                out[canonicalize_name(req.name)] = pins[0]  # type: ignore[union-attr]
        return out

    def without(self, names: Iterable[str]) -> str:
        """The lock text minus the entries (pin, hashes, `# via` lines) of the named distributions."""
        from packaging.utils import canonicalize_name

        drop = {canonicalize_name(n) for n in names}
        kept, keep = [], True
        for line in self.text.splitlines(keepends=True):
            if line[:1] not in ("", " ", "\t", "#"):  # a new entry (or a top-level option) starts
                req = _entry(line)
                keep = req is None or canonicalize_name(req.name) not in drop
            if keep:
                kept.append(line)
        return "".join(kept)

    def required_by(self) -> dict[str, set[str]]:
        """Locked distribution -> the locked distributions that require it, from uv's `# via` notes; a
        requirement of the request itself (`-r requirements.in`, an override...) is recorded as ""."""
        from packaging.utils import canonicalize_name

        out: dict[str, set[str]] = {}
        current: set[str] | None = None
        for line in self.text.splitlines():
            req = _entry(line)
            if req is not None:
                current = out.setdefault(canonicalize_name(req.name), set())
                continue
            note = line.strip()
            if current is None or not note.startswith("#"):
                continue
            parent = note.removeprefix("# via").lstrip("#").strip()  # "# via x" or, one per line, "#   x"
            if parent:
                current.add("" if parent[0] in "-/." or " " in parent else canonicalize_name(parent))
        return out

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def _entry(line: str) -> Requirement | None:
    """The requirement a lock line starts; None for hash, comment and option lines."""
    if not line or line[0] in " \t#-\n":
        return None
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(line.rstrip(" \\\n"))
    except InvalidRequirement:
        return None


def request_key(req: "EnvRequest", interpreter: Interpreter) -> str:
    data = json.dumps([req.lock_inputs(), interpreter.key], sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:32]


def cached_lock(req: "EnvRequest", interpreter: Interpreter, config: MachineConfig) -> Lock | None:
    key = request_key(req, interpreter)
    data = read_json(_lock_path(config, key))
    if not data:
        return None
    return Lock(text=data["text"], interpreter=Interpreter(**data["interpreter"]), request_key=key,
                resolved_at=data["resolved_at"])


def resolve(req: "EnvRequest", interpreter: Interpreter, config: MachineConfig, *, refresh: bool = False) -> Lock:
    """The cached lock for `req`, resolving it first (once, under a lock) when there is none."""
    if not refresh and (hit := cached_lock(req, interpreter, config)):
        return hit
    from filelock import FileLock

    key = request_key(req, interpreter)
    path = _lock_path(config, key)
    ensure_dir(path.parent)
    with FileLock(str(path.with_suffix(".lock"))):
        if not refresh and (hit := cached_lock(req, interpreter, config)):
            return hit
        text = _compile(req, interpreter, config)
        lock = Lock(text=text, interpreter=interpreter, request_key=key, resolved_at=time.time())
        atomic_write_json(path, {"text": text, "interpreter": asdict(interpreter), "resolved_at": lock.resolved_at,
                                 "request": req.lock_inputs()})
        return lock


def _lock_path(config: MachineConfig, key: str) -> Path:
    return config.cache_dir / "locks" / f"{key}.json"


def _compile(req: "EnvRequest", interpreter: Interpreter, config: MachineConfig) -> str:
    uv_bin = uvtool.find_uv(config)
    if uv_bin is None:
        raise EnvBuildError(
            f"cannot resolve the {req.runtime} env: uv is not available and no lock is cached for this request",
            why="uv is StemSep's resolver; the virtualenv + pip fallback only installs existing locks "
            "(pip cannot apply overrides such as msst's lifted torch cap)",
            hint="install uv (`pip install uv`) or set use_uv = true; or copy a lock from a machine that has it",
        )
    ensure_dir(config.cache_dir / "locks")
    try:
        tmp_ctx = tempfile.TemporaryDirectory(dir=config.cache_dir / "locks", prefix=".resolve-")
    except OSError as exc:
        raise store_error(config.cache_dir / "locks", exc) from exc
    with tmp_ctx as tmp_name:
        tmp = Path(tmp_name)
        # Fixed relative names: uv's "# via -r requirements.in" annotations stay the same on every run.
        (tmp / "requirements.in").write_text("\n".join(req.requirements) + "\n")
        cmd = [uv_bin, "pip", "compile", "requirements.in", "-o", "lock.txt", "--generate-hashes", "--no-header",
               "--no-config", "--quiet", "--python", interpreter.executable]
        if req.overrides:
            (tmp / "overrides.txt").write_text("\n".join(req.overrides) + "\n")
            cmd += ["--override", "overrides.txt"]
        if req.constraints:
            (tmp / "constraints.txt").write_text("\n".join(req.constraints) + "\n")
            cmd += ["--constraint", "constraints.txt"]
        cmd += uvtool.build_constraints([*req.overrides, *req.constraints], tmp)
        cmd += req.sources.uv_args(offline=config.offline)
        proc = uvtool.run(cmd, env=uvtool.uv_env(config), cwd=tmp)
        if proc.returncode != 0:
            raise classify_failure(proc.stderr or proc.stdout, req, config, action="resolve",
                                   returncode=proc.returncode)
        return (tmp / "lock.txt").read_text()


def classify_failure(output: str, req: "EnvRequest", config: MachineConfig, *, action: str,
                     returncode: int = 1) -> Exception:
    """Turn uv's (or pip's) failure output into the error that says what to do."""
    text = _strip_ansi(output).strip()
    tail = "\n".join(text.splitlines()[-25:])
    if returncode == -signal.SIGXFSZ:  # killed for writing past the file size limit (RLIMIT_FSIZE)
        text += "\nFile too large"
    if any(s in text for s in _STORE_ERRORS):
        return store_error(config.env_store if action != "resolve" else config.cache_dir,
                           OSError(28 if "space" in text else 30, next(s for s in _STORE_ERRORS if s in text)),
                           "write to")
    from envmgr.envs.source_failure import failed_source, hint_for  # only on a failure: keeps warm runs light

    failed = failed_source(text, req.sources)
    if failed is not None and failed.missing_dir:  # before the offline case: offline runs depend on that dir
        return EnvBuildError(f"cannot {action} the {req.runtime} env: {failed.problem(text)}", why=tail,
                             hint=hint_for(failed, config))
    if config.offline and ("network was disabled" in text or "not found in the cache" in text):
        return EnvBuildError(f"cannot {action} the {req.runtime} env offline: packages are not in the cache",
                             why=tail, hint="build it once while online (offline = false), or add a wheelhouse "
                             "with these packages to find_links")
    if "No solution found" in text or "unsatisfiable" in text:
        names = conflicting_names(text, req)
        return UnresolvableError(
            f"the {req.runtime} env's requirements cannot be resolved together"
            + (f": {', '.join(names)}" if names else ""),
            packages=names, why=tail,
            hint="relax or change the conflicting pins (model `requirements.pip.packages`, `runtime_pins`, "
            "or the machine config's overrides/constraints)",
        )
    if failed is not None or any(s.lower() in text.lower() for s in _NET_ERRORS):
        if config.offline:
            return EnvBuildError(f"cannot {action} the {req.runtime} env offline", why=tail,
                                 hint="build it once while online, add a wheelhouse to find_links, or set offline = false")
        if failed is not None:  # uv named the index or find-links location that failed
            return EnvBuildError(f"cannot {action} the {req.runtime} env: {failed.problem(text)}", why=tail,
                                 hint=hint_for(failed, config))
        return EnvBuildError(f"cannot {action} the {req.runtime} env: a package source is unreachable", why=tail,
                             hint="check the network, index_url / extra_index_urls, or use a local "
                             "wheelhouse via find_links and offline = true (`stemsep env config` shows them)")
    return EnvBuildError(f"cannot {action} the {req.runtime} env", why=tail,
                         hint="`stemsep env config` shows the package sources in use"
                         + ("; if a locked file is gone from them, `stemsep setup --refresh` resolves again"
                            if action == "build" else ""))


def conflicting_names(message: str, req: "EnvRequest") -> list[str]:
    """The requested packages that uv's explanation mentions (the ones the user can change)."""
    from packaging.requirements import InvalidRequirement, Requirement

    names = []
    for text in (*req.requirements, *req.overrides, *req.constraints):
        try:
            name = Requirement(text).name
        except InvalidRequirement:
            continue
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message, re.IGNORECASE) and name not in names:
            names.append(name)
    return names


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
