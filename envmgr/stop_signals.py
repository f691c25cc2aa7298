"""The signals that stop a command (Ctrl-C's SIGINT, SIGTERM, SIGHUP) and the error each ends it with.

`install()` runs first thing in the CLI. Each of the three raises `Stopped`, a KeyboardInterrupt, in the main
thread, so the one cleanup path every stage has for Ctrl-C runs for all of them: a running job is cancelled
(the worker told, then terminated), its staged files removed, a download keeps its partial. `cancelled()`
turns it into the error the command exits with, 128 + the signal's number as shells report it (docs/errors.md).

The handlers are installed whatever the disposition inherited: a shell starts `cmd &` with SIGINT ignored,
and apps often do the same, but whoever then sends SIGINT to the job (`kill -INT`) means it. The exception
is an ignored SIGHUP: `nohup` ignores it on purpose, so that the command outlives its terminal.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from envmgr.errors import Cancelled, HungUp, Terminated

_STOPS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; raised where the main thread was, as Python raises KeyboardInterrupt for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def install() -> None:
    """Make SIGINT, SIGTERM and SIGHUP raise `Stopped` (an ignored SIGHUP stays ignored: `nohup`)."""
    for sig in _STOPS:
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        signal.signal(sig, _raise_stopped)


def ending() -> None:
    """The command is ending (its outcome is being reported): a further stop signal ends the process at
    once, by the signal's default action, instead of interrupting the report."""
    for sig in _STOPS:
        if signal.getsignal(sig) is _raise_stopped:
            signal.signal(sig, signal.SIG_DFL)


@contextmanager
def held() -> Iterator[None]:
    """Hold stop signals while a short cleanup runs (removing staged files), so a repeated Ctrl-C cannot leave
    it half done. One that arrived is raised after the block, unless an error is already on its way out (the
    command is stopping anyway): a `finally` that cleans up after Ctrl-C keeps the Ctrl-C's error."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change handlers; Python runs them there anyway
        return
    pending: list[int] = []
    ours = [sig for sig in _STOPS if callable(signal.getsignal(sig))]  # never SIG_IGN (nohup) or SIG_DFL
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in ours}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending and sys.exc_info()[1] is None:
        raise Stopped(pending[0])


def cancelled(stop: BaseException, *, why: str = "", hint: str = "") -> Cancelled:
    """The error that ends a command stopped by `stop` (a `Stopped`, or a plain KeyboardInterrupt: Ctrl-C)."""
    signum = getattr(stop, "signum", signal.SIGINT)
    hint = hint or "run it again: what finished is kept and interrupted downloads resume"
    if signum == signal.SIGTERM:
        return Terminated("stopped by SIGTERM", hint=hint,
                          why=why or "the process was sent SIGTERM (by `kill`, a service manager or the app that "
                                     "started it)")
    if signum == signal.SIGHUP:
        return HungUp("stopped: the terminal hung up (SIGHUP)", why=why or "the terminal or session that started "
                      "the command closed", hint=f"{hint}; to keep a command going after its terminal closes, "
                      "start it with `nohup` or inside tmux/screen")
    return Cancelled("cancelled by the user (Ctrl-C)", why=why or "Ctrl-C (SIGINT) stopped the command", hint=hint)
