"""Where a job-running command gets its debug bundle: `with debug_bundle(record, ...): run the job`.

On a failure (any error but a stop: Ctrl-C, SIGTERM, SIGHUP, and a usage error, exit 2: what was typed is wrong,
and the message says so) the bundle is written (envmgr/diagnostics/bundle.py)
and the error goes on as it was, its hint naming the bundle and its `debug_bundle` field holding the path (the
`--json` exit event carries it: envmgr/cli/outcome.py); a bug is turned into its E_INTERNAL error here, as
`error_for` would anyway. With `always` (--debug-bundle) a run that went well gets one too, announced by `tell`.
Writing a bundle never hides the job's own error: if it fails, a warning says why.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from envmgr.cli.outcome import error_for

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.jobs.job_record import JobRecord
    from registry.errors import StemSepError


# The flags of every command that runs jobs (`separate`, `run`).
ALWAYS_OPTION = typer.Option(False, "--debug-bundle", help="Write a debug bundle even when the run goes well (a "
                             "failed run always gets one, in the log dir; docs/debugging.md).")
INCLUDE_AUDIO_OPTION = typer.Option(False, "--include-audio", help="Put the audio itself into the debug bundle: the "
                                    "inputs, and what each model step of a recipe read (otherwise only their "
                                    "metadata and sha256).")


@contextmanager
def debug_bundle(record: JobRecord, config: MachineConfig, *, always: bool = False, include_audio: bool = False,
                 tell: Callable[[Path], None] | None = None) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        from envmgr.diagnostics.bundle import wants_bundle  # only on a failure: start-up stays light

        err = error_for(exc)
        if err is None or not wants_bundle(err):
            raise
        trace = None if err is exc else "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        path = _write(record, err, config, include_audio, trace)
        if path is not None:
            attach(err, path)
        if err is exc:
            raise
        raise err from None
    if always:
        path = _write(record, None, config, include_audio, None)
        if path is not None and tell is not None:
            tell(path)


def attach(err: StemSepError, path: Path) -> None:
    """Name the bundle in the error: in its hint (what a person reads) and as `debug_bundle` (the exit event's)."""
    note = (f"a debug bundle is at {path}: attach it to a bug report, or re-run the job exactly with "
            f"`stemsep debug replay {path}`")
    err.hint = f"{err.hint}; {note}" if err.hint else note
    err.debug_bundle = str(path)  # type: ignore[attr-defined]


def _write(record: JobRecord, err: StemSepError | None, config: MachineConfig, include_audio: bool,
           trace: str | None) -> Path | None:
    from envmgr.diagnostics.bundle import write_bundle

    try:
        return write_bundle(record, err, config=config, include_audio=include_audio, traceback=trace)
    except Exception as exc:  # never instead of the job's own outcome
        sys.stderr.write(f"warning: could not write the debug bundle: {type(exc).__name__}: {exc}\n")
        return None
