"""Path safety of the store: a model id or filename can only ever name an entry inside its folder.

Names come from registry files (which users can write) and are used as single path components, so
they are checked, not sanitised: a name that is not a plain bare file name is refused outright.
Nothing is ever derived from a URL or a server header (Content-Disposition), and no symlink inside
the store is followed.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from envmgr.artifacts.errors import UnsafePathError

_FORBIDDEN = re.compile(r"[/\\:\x00-\x1f]")  # a separator, ':' or a control character (NUL included)
_MAX_NAME_BYTES = 255  # the usual file-system limit for one path component


def check_name(name: str, what: str) -> str:
    """Return `name` when it is a plain, visible, single path component; raise UnsafePathError otherwise.

    Leading dots are refused too: the store keeps its own bookkeeping in dot-entries (manifest,
    partial downloads) and hidden artifacts would be easy to miss.
    """
    problem = None
    if not isinstance(name, str) or not name:
        problem = "it is empty"
    elif name.startswith("."):
        problem = "it starts with '.' (a hidden name, or '.'/'..' which leave the folder)"
    elif _FORBIDDEN.search(name):  # one regex, not a loop per character: the catalog checks every name per list
        problem = "it contains a path separator, ':' or a control character"
    elif len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        problem = f"it is longer than {_MAX_NAME_BYTES} bytes"
    elif name != name.strip():
        problem = "it starts or ends with white space"
    if problem:
        raise UnsafePathError(
            f"Refusing {what} {name!r}: {problem}.",
            why="A model id or artifact filename becomes a single entry in the model store; anything "
            "else could write outside the model's folder.",
            hint="Fix the registry entry: artifact filenames and model ids must be bare names like "
            "'model.ckpt'.",
        )
    return name


def refuse_symlink(path: Path) -> None:
    """Raise UnsafePathError when `path` is a symlink (a link in the store could point anywhere)."""
    if path.is_symlink():
        raise UnsafePathError(
            f"Refusing to use {path}: it is a symbolic link inside the model store.",
            why="The store never follows links, so that no download or import can write outside it.",
            hint=f"Remove the link (rm '{path}'), then import the file it pointed to with "
            "`stemsep models import`, which hardlinks or copies it into the store.",
        )


def is_regular_file(path: Path) -> bool:
    """True for a regular file that is not a symlink."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def open_for_append(path: Path) -> int:
    """Open (creating) a file for appending without following a symlink at its name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o644)
