"""The log file of a bug: an unexpected exception's traceback, kept where the user can attach it to a report.

It goes to the machine config's log dir; when the config itself cannot be loaded (the bug may be there) or that
dir cannot be written, to the temp dir. Writing it never raises: a crash while reporting a crash would hide the
first one.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path


def write_crash_log(exc: BaseException) -> Path | None:
    """Write `exc`'s traceback (with the command line and versions) to a new log file and return its path;
    None when no dir could take it."""
    try:
        text = _crash_report(exc)
        name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    except Exception:
        return None
    from envmgr.fsutil import atomic_write_text

    for folder, prefix in _log_dirs():
        path = folder / (prefix + name)
        try:
            atomic_write_text(path, text)
            return path
        except Exception:
            continue  # unwritable, full, not a dir: try the next place
    return None


def _log_dirs() -> list[tuple[Path, str]]:
    """Where a crash log may go, in order, each with a file-name prefix (the temp dir is shared with others)."""
    dirs = []
    try:
        from envmgr.config import load_config

        dirs.append((load_config().log_dir, ""))
    except Exception:
        pass  # a bad config.toml or STEMSEP_* value: the temp dir still takes the log
    dirs.append((Path(tempfile.gettempdir()), "stemsep-"))
    return dirs


def _crash_report(exc: BaseException) -> str:
    try:
        from importlib.metadata import version

        ours = f"stemsep-runtime {version('stemsep-runtime')}"
    except Exception:
        ours = "stemsep-runtime (version unknown)"
    lines = [
        "stemsep stopped on an unexpected exception: a bug. Please attach this file to your report.",
        f"command: {shlex.join(['stemsep', *sys.argv[1:]])}",
        f"{ours} · Python {platform.python_version()} ({sys.executable}) · {platform.platform()}",
        f"time: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        "",
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    ]
    return "\n".join(lines)
