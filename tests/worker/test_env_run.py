"""`stemsep env run` / `env shell` through the real CLI in the session's real DSP env: the command sees exactly
the environment a worker of that env gets (read from a real worker's /proc/<pid>/environ), plus the env's bin
dir first on PATH; its exit code (and its death by a signal) is the CLI's; a model id means its env, which is
built only with --build."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from envmgr.worker.client import WorkerClient
from envmgr.worker.code_copy import WorkerCode
from registry.errors import ExitCode
from tests.support.cli import run_cli

pytestmark = [pytest.mark.envs, pytest.mark.skipif(not sys.platform.startswith("linux"),
                                                    reason="reads a worker's environment from /proc")]

SHOW = ("import json, os, site, sys, runtimes; print(json.dumps({'environ': dict(os.environ), 'prefix': sys.prefix, "
        "'runtimes': runtimes.__file__, 'no_user_site': not site.ENABLE_USER_SITE}))")
ADDED = ("PATH", "VIRTUAL_ENV", "STEMSEP_ENV_ID")  # what `env run` sets beyond the worker's own environment


def worker_environ(client: WorkerClient) -> dict[str, str]:
    raw = Path(f"/proc/{client.pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_env_run_sees_the_workers_variables_and_passes_exit_codes_on(dsp_env: Any, worker_code: WorkerCode,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    # Variables a worker inherits (threads, devices) and ones it must not see (a host PYTHONPATH, anything else).
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("PYTHONPATH", "/host/site-packages")
    monkeypatch.setenv("STEMSEP_DOCTOR_TEST_HOST_ONLY", "1")
    client = WorkerClient(dsp_env.python, "stemsep-legacy", worker_code, env_id=dsp_env.id)
    client.start()
    try:
        worker = worker_environ(client)
    finally:
        client.close()

    # Run from a dir of no importance: the command runs in the caller's dir (the repo's would put its own
    # runtimes/ first on `python -c`'s path).
    ran = run_cli("env", "run", dsp_env.id[:20], "--", "python", "-c", SHOW, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    environ = seen["environ"]
    assert {k: v for k, v in environ.items() if k not in ADDED} == {k: v for k, v in worker.items() if k != "PATH"}
    assert environ["PATH"] == os.pathsep.join([str(dsp_env.path / "bin"), worker["PATH"]])
    assert environ["VIRTUAL_ENV"] == str(dsp_env.path) and environ["STEMSEP_ENV_ID"] == dsp_env.id
    assert environ["PYTHONPATH"] == str(worker_code.root) and environ["OMP_NUM_THREADS"] == "3"
    assert "STEMSEP_DOCTOR_TEST_HOST_ONLY" not in environ
    assert Path(seen["prefix"]).resolve() == dsp_env.path.resolve()  # `python` is the env's
    assert Path(seen["runtimes"]).resolve().is_relative_to(worker_code.root.resolve()) and seen["no_user_site"]

    code = run_cli("env", "run", dsp_env.id, "--", "python", "-c", "import sys; sys.exit(7)")
    assert code.returncode == 7 and code.stderr == ""
    killed = run_cli("env", "run", dsp_env.id, "--", "python", "-c", "import os, signal; os.kill(os.getpid(), "
                     "signal.SIGTERM)")
    assert killed.returncode == -signal.SIGTERM  # the command replaced the CLI: its death is the CLI's
    missing = run_cli("env", "run", dsp_env.id, "--", "no-such-program-here")
    assert missing.returncode == ExitCode.USAGE and "no-such-program-here" in missing.stderr


def test_env_shell_runs_the_users_shell_in_the_env(dsp_env: Any) -> None:
    shell = run_cli("env", "shell", dsp_env.id, env={"SHELL": "/bin/sh"},
                    input='echo "$STEMSEP_ENV_ID $VIRTUAL_ENV"; command -v python; exit 4\n')
    assert shell.returncode == 4, shell.stderr
    assert shell.stdout.split() == [dsp_env.id, str(dsp_env.path), str(dsp_env.path / "bin" / "python")]
    assert f"shell in env {dsp_env.id}" in shell.stderr


def test_a_model_id_means_its_env_which_is_built_only_with_build(tmp_path: Path, dsp_env: Any) -> None:
    from envmgr.config import load_config

    # A private env store (the uv cache and locks stay the session's): the default DSP model's env is not in it.
    store = {"STEMSEP_ENV_STORE": str(tmp_path / "envs"), "STEMSEP_LOG_DIR": str(tmp_path / "logs")}
    probe = ["--", "python", "-c", "import sys; print(sys.prefix); sys.exit(3)"]
    refused = run_cli("env", "run", "builtin-center-split", *probe, env=store)
    assert refused.returncode == ExitCode.ENV_BUILD and "E_ENV_NOT_BUILT" in refused.stderr
    assert "--build" in refused.stderr and "stemsep setup builtin-center-split" in refused.stderr
    assert not (tmp_path / "envs").exists() or not any((tmp_path / "envs").iterdir())

    built = run_cli("env", "run", "builtin-center-split", "--build", *probe, env=store)
    assert built.returncode == 3, built.stderr
    prefix = Path(built.stdout.strip())
    assert prefix.parent == tmp_path / "envs" and prefix.name.startswith("stemsep-legacy-")
    again = run_cli("env", "run", "builtin-center-split", *probe, env=store)  # ready now: no --build needed
    assert again.returncode == 3 and again.stdout.strip() == str(prefix) and "env:" not in again.stderr

    wrong = run_cli("env", "run", "builtin-center-split", "--runtime", "msst", *probe, env=store)
    assert wrong.returncode != 0 and "msst" in wrong.stderr
    unknown = run_cli("env", "run", "no-such-env-or-model", *probe, env=store)
    assert unknown.returncode == ExitCode.USAGE and "E_UNKNOWN_ENV" in unknown.stderr
    assert load_config().env_store != tmp_path / "envs"  # the session's own store was not touched
