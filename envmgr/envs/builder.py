"""Materializing a lock into a venv directory: uv (hardlinks from its cache) or virtualenv + pip.

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
        base = [uv_bin, "pip", "sync", "--python", str(env_python(target)), "--require-hashes", "--link-mode",
                _link_mode(config), "--no-config", "--quiet",
                *uvtool.build_constraints([*req.overrides, *req.constraints], Path(scratch))]

        def sync(lock_path: Path) -> None:
            # Every pin and hash is in the lock, so a warm cache needs no index: try offline first (an
            # online sync revalidates each index page, slow even with a warm cache: scripts/bench/README.md),
            # then online for the rest.
            if not config.offline and uvtool.run([*base, str(lock_path), *req.sources.uv_args(offline=True)],
                                                 env=env).returncode == 0:
                return
            _check(uvtool.run([*base, str(lock_path), *req.sources.uv_args(offline=config.offline)], env=env),
                   req, config)

        if late and len(late) < len(lock.packages):
            first = Path(scratch) / "first.txt"  # the same pins and hashes, the late packages left out
            first.write_text(lock.without(late))
            sync(first)
            on_partial()  # type: ignore[misc]
        sync(lock_file)  # the whole lock: what the env ends up with either way
    return "uv"


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
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("PIP_") or k.startswith("VIRTUALENV_")) or k in _PIP_PASS}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip.conf would add sources the lock does not know about
    env.pop("VIRTUAL_ENV", None)
    _check(uvtool.run([sys.executable, "-m", "virtualenv", "--quiet", "--no-download", "--no-periodic-update",
                       "--python", lock.interpreter.executable, str(target)], env=env), req, config)
    progress("sync", f"pip install ({len(lock.packages)} packages)")
    _check(uvtool.run([str(env_python(target)), "-m", "pip", "install", "--quiet", "--no-input", "--no-deps",
                       "--require-hashes", "--disable-pip-version-check", "-r", str(lock_file),
                       *req.sources.pip_args(offline=config.offline)], env=env), req, config)
    return "virtualenv"


def _link_mode(config: MachineConfig) -> str:
    """Hardlink when the uv cache and the store share a filesystem (they do by default), else copy."""
    try:
        same = os.stat(config.uv_cache_dir).st_dev == os.stat(config.env_store).st_dev
    except OSError:
        same = True
    return "hardlink" if same else "copy"


def _check(proc, req: "EnvRequest", config: MachineConfig) -> None:
    if proc.returncode != 0:
        raise classify_failure((proc.stderr or "") + (proc.stdout or ""), req, config, action="build",
                               returncode=proc.returncode)
