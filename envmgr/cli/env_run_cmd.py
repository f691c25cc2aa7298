"""`stemsep env run ENV_OR_MODEL -- CMD...` and `stemsep env shell [ENV_OR_MODEL]`: a person's command inside a
managed env, with the environment its worker gets (envmgr/worker/process.py: env_command_env).

Which env ENV_OR_MODEL means is envmgr/diagnostics/env_target.py's. On POSIX the command replaces this process
(exec): its exit code and its signals are its own, and a shell keeps the terminal to itself.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

_RUNTIME = typer.Option(None, "--runtime", "-r", help="With a model id: the env of the model on this runtime.")
_BUILD = typer.Option(False, "--build", help="With a model id: build (or repair) the model's env when it is not "
                      "ready, instead of failing.")


def register(env: typer.Typer) -> None:
    """Adds `run` and `shell` to `stemsep env`."""
    env.command("run")(env_run)
    env.command("shell")(env_shell)


def env_run(target: str = typer.Argument(..., metavar="ENV_OR_MODEL", help="Env id (or unique prefix), or a "
                                         "model id: the env that model runs in."),
            command: list[str] = typer.Argument(..., metavar="-- CMD...", help="The command and its arguments; "
                                                "put `--` before it when it has options."),
            runtime: Optional[str] = _RUNTIME, build: bool = _BUILD) -> None:
    """Run CMD inside a managed env, with the variables its worker gets (PYTHONPATH = StemSep's worker code,
    thread and device variables passed on, no user site) and the env's bin dir first on PATH; exits with
    CMD's own exit code. CMD runs in your current dir (a worker runs in its code copy: a `runtimes` dir here
    would come first for `python -c`). Example: `stemsep env run htdemucs -- python -c "import torch"`."""
    _exec(target, command, runtime=runtime, build=build, shell=False)


def env_shell(target: Optional[str] = typer.Argument(None, metavar="[ENV_OR_MODEL]", help="Env id (or unique "
                                                     "prefix) or model id; default: the registry's default model."),
              runtime: Optional[str] = _RUNTIME, build: bool = _BUILD) -> None:
    """Start your shell ($SHELL) inside a managed env, with the variables its worker gets; `exit` leaves it."""
    if target is None:
        from envmgr.catalog.registry_files import load
        from envmgr.errors import UsageError

        target = load().default_model
        if not target:
            raise UsageError("no env or model given and the registry has no default model",
                             hint="name one: `stemsep env shell ENV_OR_MODEL` (`stemsep env list` shows env ids)")
    _exec(target, [_user_shell()], runtime=runtime, build=build, shell=True)


def _user_shell() -> str:
    if os.name == "nt":
        return os.environ.get("COMSPEC", "cmd.exe")
    return os.environ.get("SHELL") or "/bin/sh"


def _exec(target: str, command: list[str], *, runtime: str | None, build: bool, shell: bool) -> None:
    from envmgr.config import load_config
    from envmgr.diagnostics.env_target import find_target
    from envmgr.worker.code_copy import ensure_worker_code
    from envmgr.worker.process import env_command_env

    config = load_config()
    progress = (lambda stage, message: typer.echo(f"env: {stage}: {message}", err=True)) if build else None
    env = find_target(target, config, runtime=runtime, build=build, progress=progress)
    code = ensure_worker_code(config.cache_dir)
    environ = env_command_env(code.root, env.path)
    environ["STEMSEP_ENV_ID"] = env.id  # for a prompt or a script to tell where it runs
    if shell:  # a terminal's own settings; none of them changes what Python imports
        environ.update({k: os.environ[k] for k in ("TERM", "COLORTERM", "SHELL") if k in os.environ})
    if env.problem:
        typer.echo(f"warning: env {env.id} is broken ({env.problem}); running in it anyway", err=True)
    if shell:
        typer.echo(f"shell in env {env.id} ({env.python}); `exit` to leave", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    _replace_process(command, environ, env.id)


def _replace_process(command: list[str], environ: dict[str, str], env_id: str) -> None:
    import shutil

    from envmgr.errors import UsageError

    program = shutil.which(command[0], path=environ.get("PATH")) if os.sep not in command[0] else command[0]
    if program is None or not os.access(program, os.X_OK):
        raise UsageError(f"cannot run {command[0]!r} in env {env_id}",
                         why="it is not an executable file" if program else "it is in neither the env's bin dir "
                         "nor on PATH", hint="name a program that exists (e.g. `python`), or give its path")
    if os.name == "nt":  # no exec that keeps the console and the exit code: wait for it and pass its code on
        import subprocess

        raise typer.Exit(subprocess.call([program, *command[1:]], env=environ))
    os.execve(program, command, environ)
