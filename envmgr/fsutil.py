"""Atomic writes and store-dir creation with errors that say what to do."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from envmgr.errors import StoreError

_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def store_error(path: Path | str, exc: OSError, action: str = "write to") -> StoreError:
    """Turn an OSError on a state dir into a StoreError that names the dir and the fix."""
    if exc.errno in _SPACE:
        why, hint = f"no space left ({exc.strerror})", "free disk space, or move the store (STEMSEP_HOME / env_store)"
    elif exc.errno == errno.EROFS or exc.errno == errno.EACCES or exc.errno == errno.EPERM:
        why, hint = f"it is not writable ({exc.strerror})", "make it writable, or point STEMSEP_HOME / env_store elsewhere"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        why, hint = f"a part of the path is a file, not a directory ({exc.strerror})", \
            "remove that file or point STEMSEP_HOME / env_store at a directory"
    else:
        why, hint = str(exc), "check the path, or point STEMSEP_HOME / env_store elsewhere"
    return StoreError(f"cannot {action} {path}", why=why, hint=hint)


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise store_error(path, exc, "create") from exc
    if not path.is_dir():
        raise store_error(path, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), "create")
    return path


def _exists(path: Path) -> bool:
    try:
        path.stat()
    except OSError:  # missing, or a name too long to exist (Path.exists() raises for that one)
        return False
    return True


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists: where a dir that is missing would be created."""
    while not _exists(path) and path != path.parent:
        path = path.parent
    return path


def why_not_creatable(path: Path) -> tuple[Path, int | None]:
    """(the dir that exists now where `path` is or would be created, the errno that stops writing there:
    ENOTDIR, EROFS or EACCES; None when `path` is a writable dir or can be created)."""
    anchor = nearest_existing(path)
    if not anchor.is_dir():
        return anchor, errno.ENOTDIR
    if os.statvfs(anchor).f_flag & os.ST_RDONLY:
        return anchor, errno.EROFS
    if not os.access(anchor, os.W_OK | os.X_OK):
        return anchor, errno.EACCES
    return anchor, None


def check_creatable(path: Path) -> None:
    """Raise a StoreError unless `path` is a writable dir or can be created: said before work that needs it."""
    _, err = why_not_creatable(path)
    if err is not None:
        raise store_error(path, OSError(err, os.strerror(err)), "create")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, then rename: readers see the old or the new file, never half.
    A replaced file keeps its permissions; a new one is private to you (0600: config may hold index tokens)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`atomic_write_text` for bytes (a debug bundle returned by a Ray actor)."""
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            try:
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            except FileNotFoundError:
                pass
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise store_error(path, exc) from exc


def sync_generated(files: Sequence[tuple[Path, str]], *, check: bool, command: str) -> int:
    """Generated files (path, the text it should hold): write each that differs (atomically), or with `check`
    write nothing and name each that is out of date. 1 when `check` found one, else 0."""
    import sys

    stale = 0
    for path, text in files:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        if check:
            print(f"{path} is out of date: run {command}", file=sys.stderr)
            stale = 1
        else:
            atomic_write_text(path, text)
            print(f"wrote {path}")
    return stale


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return default
    except (OSError, ValueError):
        return default
