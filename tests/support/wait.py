"""Waiting in tests for something another process does: poll until a deadline instead of sleeping a guess.

The suite runs on busy 2-core machines, so deadlines are generous; they only bound how long a broken
run takes to fail, and a passing run waits no longer than the thing takes.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(predicate: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.05) -> T | None:
    """Call `predicate` until it returns something truthy and return that; None once `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def wait_for(predicate: Callable[[], T], *, what: str, timeout: float = 60.0, interval: float = 0.05,
             process: subprocess.Popen | None = None) -> T:
    """Like `poll`, but fail the test, naming `what`, when it has not happened in time; with `process`, fail
    as soon as that process has exited without it happening (nothing would make it happen after that)."""
    def check() -> T:
        value = predicate()
        if not value and process is not None and process.poll() is not None:
            raise AssertionError(f"still waiting for {what} when process {process.pid} exited with {process.returncode}")
        return value

    value = poll(check, timeout=timeout, interval=interval)
    if not value:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
    return value


def pid_gone(pid: int) -> bool:
    """True once no process has this id (a zombie still has one: its parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def blocked_reading_a_pipe(pid: int) -> bool:
    """True once the process's main thread sleeps in read() on a pipe or FIFO (Linux: /proc/PID/wchan names
    the kernel's pipe-read wait); True where /proc cannot say. Signal a process blocked on a FIFO only then:
    one that arrives in the instant between Python's last check for signals and the read() call is handled
    only once the read returns, which for a FIFO nobody writes is never."""
    try:
        with open(f"/proc/{pid}/wchan", encoding="ascii") as f:
            return "pipe" in f.read()
    except OSError:
        return True
