"""Worker processes: start one in a clean environment, in its own session, and signal its group.

Kept apart from the client so that the early worker (prewarm) and the client share it without
importing each other.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Mapping

TEST_HOOK_ENV = "STEMSEP_WORKER_TEST_HOOK"  # passed through to the worker when set (tests only)
# What a worker may inherit from the host's environment: locale, temp dirs, device selection, thread
# counts, library caches. Never PYTHONPATH/PYTHONHOME/VIRTUAL_ENV: the env must not see host packages.
_PASS_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT",
             "COMSPEC", "WINDIR", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
             "ROCR_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "TORCH_HOME", "XDG_CACHE_HOME", TEST_HOOK_ENV)

def spawn_worker(cmd: list[str], code_root: Path, extra_env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a worker process: pipes on all three streams, its own session (a terminal's Ctrl-C reaches
    the host only), cwd the code copy (`-m` puts the cwd first on sys.path: a user's dir could shadow
    modules). `extra_env`: set for this worker over what it inherits (a server slot's CUDA_VISIBLE_DEVICES)."""
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=code_root, env={**worker_env(code_root), **(extra_env or {})}, start_new_session=True)


def worker_env(code_root: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a worker runs with: what it may inherit, the code copy on its path, no user site."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k in _PASS_ENV or k.startswith("LC_")}
    env.update(PYTHONPATH=str(code_root), PYTHONNOUSERSITE="1", PYTHONIOENCODING="utf-8:backslashreplace",
               PYTHONUNBUFFERED="1")
    return env


def env_command_env(code_root: Path, env_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a command a person runs inside a managed env (`stemsep env run/shell`): the worker's
    own (worker_env), plus the env's scripts dir first on PATH and VIRTUAL_ENV, as activating it would do,
    so that `python` and the env's console scripts are the env's."""
    env = worker_env(code_root, base)
    scripts = env_dir / ("Scripts" if os.name == "nt" else "bin")
    env["PATH"] = os.pathsep.join([str(scripts), *([env["PATH"]] if env.get("PATH") else [])])
    env["VIRTUAL_ENV"] = str(env_dir)
    return env


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the worker leads its own session: its children go too
        if sig == signal.SIGTERM:
            os.killpg(proc.pid, signal.SIGCONT)  # a stopped (frozen) worker must wake to act on SIGTERM
    except (ProcessLookupError, PermissionError):
        pass
