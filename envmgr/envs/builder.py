"""Materializing a lock into a venv directory: uv (linked from its cache: `link_mode`) or virtualenv + pip.

Both install exactly the lock (hash-checked, no dependency resolution). The caller builds into a temp
dir in the store and renames it into place afterwards; nothing here touches a finished env.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from envmgr.envs import uvtool
from envmgr.config import MachineConfig
from envmgr.envs.health import env_python
from envmgr.envs.lock import Lock, classify_failure
from envmgr.envs.request import EnvRequest

Progress = Callable[[str, str], None]

# pip settings that only tune transport; everything else comes from StemSep's machine config.
_PIP_PASS = ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT", "PIP_PROXY", "PIP_RETRIES")


def build_with_uv(uv_bin: str, target: Path, lock_file: Path, lock: Lock, req: "EnvRequest",
                  config: MachineConfig, progress: Progress, on_partial: Callable[[], None] | None = None) -> str:
    """`on_partial`: called once every package but the large late ones (LATE_PACKAGES) is installed, while
    those are still being installed: the health check's import starts there and overlaps them."""
    env = uvtool.uv_env(config)
    progress("venv", f"uv venv ({lock.interpreter.describe()})")
    # --relocatable: entry-point scripts find their interpreter relative to themselves, so the env
    # still works after the rename from its temp dir.
    _check(uvtool.run([uv_bin, "venv", str(target), "--python", lock.interpreter.executable, "--relocatable",
                       "--no-project", "--no-config", "--quiet"], env=env), req, config)
    progress("sync", f"uv pip sync ({len(lock.packages)} packages)")
    late = late_packages(lock) if on_partial else set()
    # Named after the build (<env id>.<pid>...): a crashed build's leftovers are cleared with its temp dir.
    with tempfile.TemporaryDirectory(dir=lock_file.parent, prefix=lock_file.name + ".build-") as scratch:
        if late and len(late) < len(lock.packages):
            first = Path(scratch) / "first.txt"  # the same pins and hashes, the late packages left out
            first.write_text(lock.without(late))
            sync_with_uv(uv_bin, target, first, req, config, Path(scratch))
            on_partial()  # type: ignore[misc]
        sync_with_uv(uv_bin, target, lock_file, req, config, Path(scratch))  # the whole lock: the env's content
    return "uv"


def sync_with_uv(uv_bin: str, target: Path, lock_path: Path, req: "EnvRequest", config: MachineConfig,
                 scratch: Path, reinstall: tuple[str, ...] = ()) -> None:
    """`uv pip sync` of a lock into the env at `target`; `reinstall`: packages installed afresh even where the
    env has them (a repair: their files come from the cache, or from their source when evicted from it)."""
    env = uvtool.uv_env(config)
    fresh = [arg for name in reinstall for arg in ("--reinstall-package", name)]
    base = [uv_bin, "pip", "sync", "--python", str(env_python(target)), "--require-hashes", "--link-mode",
            link_mode(config), "--no-config", "--quiet", *fresh,
            *uvtool.build_constraints([*req.overrides, *req.constraints], scratch)]
    # Every pin and hash is in the lock, so a warm cache needs no index: try offline first (an online sync
    # revalidates each index page, slow even with a warm cache: scripts/bench/README.md), then online for the rest.
    if not config.offline and uvtool.run([*base, str(lock_path), *req.sources.uv_args(offline=True)],
                                         env=env).returncode == 0:
        return
    _check(uvtool.run([*base, str(lock_path), *req.sources.uv_args(offline=config.offline)], env=env), req, config)


# Installed last, in a second sync with what only they need: by far the most files (torch alone is ~90%
# of a torch env), and nothing a health-check import needs except torch itself (then the check just runs
# after them).
LATE_PACKAGES = ("torch", "triton", "nvidia-*")


def late_packages(lock: Lock) -> set[str]:
    """LATE_PACKAGES in the lock, plus every package that only they (directly or not) require."""
    required_by = lock.required_by()
    late = {n for n in required_by if any(fnmatch.fnmatch(n, p) for p in LATE_PACKAGES)}
    grew = True
    while grew:
        extra = {n for n, parents in required_by.items() if n not in late and parents and parents <= late}
        late |= extra
        grew = bool(extra)
    return late


def build_with_virtualenv(target: Path, lock_file: Path, lock: Lock, req: "EnvRequest", config: MachineConfig,
                          progress: Progress) -> str:
    progress("venv", f"virtualenv ({lock.interpreter.describe()})")
    env = _pip_env()
    _check(uvtool.run([sys.executable, "-m", "virtualenv", "--quiet", "--no-download", "--no-periodic-update",
                       "--python", lock.interpreter.executable, str(target)], env=env), req, config)
    progress("sync", f"pip install ({len(lock.packages)} packages)")
    _check(uvtool.run([str(env_python(target)), "-m", "pip", "install", "--quiet", "--no-input", "--no-deps",
                       "--require-hashes", "--disable-pip-version-check", "-r", str(lock_file),
                       *req.sources.pip_args(offline=config.offline)], env=env), req, config)
    return "virtualenv"


def reinstall_with_pip(target: Path, lock: Lock, names: tuple[str, ...], req: "EnvRequest", config: MachineConfig,
                       scratch: Path) -> None:
    """Install the named packages of the lock afresh into a virtualenv + pip env (pip checks every wheel's hash
    against the lock, cached ones included)."""
    subset = scratch / "reinstall.txt"
    subset.write_text(lock.without(set(lock.packages) - set(names)))
    env = _pip_env()
    _check(uvtool.run([str(env_python(target)), "-m", "pip", "install", "--quiet", "--no-input", "--no-deps",
                       "--force-reinstall", "--require-hashes", "--disable-pip-version-check", "-r", str(subset),
                       *req.sources.pip_args(offline=config.offline)], env=env), req, config)


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("PIP_") or k.startswith("VIRTUALENV_")) or k in _PIP_PASS}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip.conf would add sources the lock does not know about
    env.pop("VIRTUAL_ENV", None)
    return env


def link_mode(config: MachineConfig) -> str:
    """The configured link mode (`link_mode`); a hardlink across filesystems is impossible, so a uv cache on
    another filesystem than the env store gets copies (uv would fall back to them with a warning)."""
    if config.link_mode != "hardlink":
        return config.link_mode
    try:
        same = os.stat(config.uv_cache_dir).st_dev == os.stat(config.env_store).st_dev
    except OSError:
        same = True
    return "hardlink" if same else "copy"


def _check(proc, req: "EnvRequest", config: MachineConfig) -> None:
    if proc.returncode != 0:
        raise classify_failure((proc.stderr or "") + (proc.stdout or ""), req, config, action="build",
                               returncode=proc.returncode)
