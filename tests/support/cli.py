"""The one way tests run the real `stemsep` CLI: a child process of this interpreter (`-m envmgr.cli.main`).

Its environment is os.environ as it is at the call (so a test's monkeypatch.setenv reaches the child), less
the variables named in `unset`, plus the test's overrides. Tests bind their own defaults (a home, a registry,
a wider COLUMNS) in a thin fixture or function around `run_cli`/`spawn_cli`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

STEMSEP = [sys.executable, "-m", "envmgr.cli.main"]


def cli_environ(env: Mapping[str, str] | None = None, unset: Iterable[str] = ()) -> dict[str, str]:
    """os.environ now, without `unset`, with `env` on top."""
    dropped = set(unset)
    return {**{k: v for k, v in os.environ.items() if k not in dropped}, **(env or {})}


def run_cli(*args: Any, env: Mapping[str, str] | None = None, unset: Iterable[str] = (), cwd: Path = REPO,
            timeout: float = 600, **run: Any) -> subprocess.CompletedProcess[str]:
    """Run `stemsep *args` to the end; stdout and stderr captured as text."""
    return subprocess.run([*STEMSEP, *map(str, args)], env=cli_environ(env, unset), cwd=cwd, timeout=timeout,
                          capture_output=True, text=True, **run)


def spawn_cli(*args: Any, env: Mapping[str, str] | None = None, unset: Iterable[str] = (), cwd: Path = REPO,
              **popen: Any) -> subprocess.Popen[str]:
    """Start `stemsep *args` and return at once (for tests that act while it runs: Ctrl-C, reading --json live).
    stdout is a text pipe; stderr too unless `stderr=` says otherwise."""
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([*STEMSEP, *map(str, args)], env=cli_environ(env, unset), cwd=cwd,
                            stdout=subprocess.PIPE, text=True, **popen)


def as_background_job() -> None:
    """`preexec_fn` for spawn_cli: start the CLI as a shell starts `stemsep ... &` (and apps often start
    children): with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def under_nohup() -> None:
    """`preexec_fn` for spawn_cli: start the CLI as `nohup stemsep ...` does: with SIGHUP ignored."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


# The ways a running command is stopped (envmgr/stop_signals.py), for `parametrize("sig, started, code,
# exit_code, message", STOPS)`: the signal, how the CLI was started (a preexec_fn for spawn_cli), and the
# error's code, exit code and message.
STOPS = [
    pytest.param(signal.SIGINT, None, "E_CANCELLED", 130, "cancelled by the user (Ctrl-C)", id="ctrl-c"),
    pytest.param(signal.SIGINT, as_background_job, "E_CANCELLED", 130, "cancelled by the user (Ctrl-C)",
                 id="sigint-to-a-job-started-with-it-ignored"),
    pytest.param(signal.SIGTERM, None, "E_TERMINATED", 143, "stopped by SIGTERM", id="sigterm"),
    pytest.param(signal.SIGHUP, None, "E_HANGUP", 129, "stopped: the terminal hung up (SIGHUP)", id="sighup"),
]


def json_events(stdout: str) -> list[dict[str, Any]]:
    """The events of a `--json` run: every stdout line is one JSON object."""
    return [json.loads(line) for line in stdout.splitlines()]


def write_user_registry(home: Path, name: str, models: list[dict[str, Any]]) -> Path:
    """`models` as the user registry `name`.json in `home`'s config dir (the CLI merges it with the packaged one)."""
    registries = home / "config" / "registries"
    registries.mkdir(parents=True, exist_ok=True)
    path = registries / f"{name}.json"
    path.write_text(json.dumps({"schema_version": "1", "models": models}))
    return path


def home_sharing_session_envs(home: Path) -> dict[str, str]:
    """Overrides for a CLI home of the test's own (config, model store, state) that reuses the session's env
    store and caches, so the envs the session has built are not built again."""
    from envmgr.config import load_config

    shared = load_config()
    return {"STEMSEP_HOME": str(home), "STEMSEP_ENV_STORE": str(shared.env_store),
            "STEMSEP_CACHE_DIR": str(shared.cache_dir), "STEMSEP_UV_CACHE_DIR": str(shared.uv_cache_dir)}
