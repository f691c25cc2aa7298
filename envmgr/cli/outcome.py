"""How a command's outcome reaches the user: what / why / what to do on stderr, and the exit code.

`error_handler` is the one place that turns every way a command can end into an exit code (docs/errors.md):
a StemSepError exits with its own code; Ctrl-C is one `E_CANCELLED`, exit 130, in every command (SIGTERM and
SIGHUP stop it the same way: `E_TERMINATED` 143, `E_HANGUP` 129; envmgr/stop_signals.py); any other exception
is a bug: `E_INTERNAL`, exit 70, its traceback in a log file the message names. click's usage errors (exit 2)
and explicit exits (typer.Exit, sys.exit) pass through as they are. Once the outcome is being reported, a
further stop signal ends the process at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from envmgr import stop_signals
from envmgr.errors import InternalError
from registry.errors import StemSepError


@contextmanager
def error_handler() -> Iterator[None]:
    """Report whatever error ends the block (what / why / what to do on stderr) and exit with its code."""
    try:
        yield
    except BaseException as exc:
        err = error_for(exc)
        if err is None:
            raise
        stop_signals.ending()
        report_error(err)
        sys.exit(int(err.exit_code))


@contextmanager
def exit_event(emit: Callable[[dict[str, Any]], None] | None) -> Iterator[None]:
    """With `--json` (`emit` given): the event stream ends with one `exit` event however the block ends, with
    exit_code 0 or the error's fields (a bug and Ctrl-C included), and `debug_bundle` when a bundle was written for
    it; the error then goes on to `error_handler`.
    Without `emit`: nothing."""
    if emit is None:
        yield
        return
    try:
        yield
    except BaseException as exc:
        err = error_for(exc)
        if err is None:
            raise
        stop_signals.ending()
        bundle = getattr(err, "debug_bundle", None)  # envmgr/cli/bundle_hook.py: the failed job's debug bundle
        emit({"type": "exit", **err.to_dict(), **({"debug_bundle": bundle} if bundle else {})})
        if err is exc:
            raise
        raise err from None  # the bug's traceback is in its log already
    emit({"type": "exit", "exit_code": 0})


def error_for(exc: BaseException) -> StemSepError | None:
    """The StemSepError that reports `exc`, or None for the ways out that are not errors of ours. A bug's
    traceback is written to its log file here, once."""
    if isinstance(exc, StemSepError):
        return exc
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGTERM/SIGHUP raised as it (stop_signals.Stopped)
        return stop_signals.cancelled(exc)
    if isinstance(exc, _cli_exits()) or not isinstance(exc, Exception):
        return None  # click's usage errors (exit 2), typer.Exit, SystemExit
    return internal_error(exc)


def _cli_exits() -> tuple[type[BaseException], ...]:
    """What typer itself turns into an exit: click's errors (usage errors exit 2), typer.Exit and typer.Abort."""
    import typer

    try:
        from typer._click.exceptions import ClickException  # newer typer carries its own copy of click
    except ImportError:
        from click.exceptions import ClickException  # type: ignore[no-redef,import-not-found,assignment,unused-ignore]
    return ClickException, typer.Exit, typer.Abort


def internal_error(exc: BaseException) -> InternalError:
    """A bug: its traceback goes to a log file (or, if none can be written, to stderr) that the error names."""
    from envmgr.cli.crash_log import write_crash_log

    log = write_crash_log(exc)
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    what = f"unexpected error (a bug in stemsep): {type(exc).__name__}" + (f": {first_line}" if first_line else "")
    if log is None:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return InternalError(what, why="the traceback is printed above: no log file could be written",
                             hint="please report this bug with the command you ran and that traceback")
    return InternalError(what, why=f"the traceback is in {log}",
                         hint=f"please report this bug with the command you ran and the log file {log}")


def report_error(err: StemSepError) -> None:
    """Print what, why and what to do on stderr."""
    from rich.console import Console
    from rich.markup import escape  # messages quote pins like `msst[bs-roformer]`: not markup

    console = Console(stderr=True, highlight=False)
    console.print(f"[bold red]error[/] [dim]({escape(err.code)})[/]: {escape(err.message)}")
    if err.why:
        console.print(f"  [bold]why:[/] {escape(err.why)}")
    if err.hint:
        console.print(f"  [bold]what to do:[/] {escape(err.hint)}")
