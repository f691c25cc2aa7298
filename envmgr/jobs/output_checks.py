"""The output dir and the stem file names, checked when the job is planned: before any download, env build or
separation, so a `-o` that cannot be written or a name the filesystem refuses costs nothing."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from envmgr.fsutil import why_not_creatable
from registry.errors import ExitCode, StemSepError

NAME_MAX, PATH_MAX = 255, 4096  # where the filesystem does not say (POSIX's usual limits)


class OutputError(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_OUTPUT"


def check_output_dir(out: Path) -> Path:
    """Raise unless `out` exists as a writable dir or can be created; returns the dir that exists now."""
    anchor, err = why_not_creatable(out)
    if err == errno.ENOTDIR:
        raise OutputError(f"cannot create the output dir {out}", code="E_OUTPUT_UNWRITABLE",
                          why=f"{anchor} is a file, not a directory", hint="pick another dir with -o")
    if err is not None:
        target = "the output dir" if anchor == out else f"{anchor}, where the output dir {out} would be created,"
        state = "on a read-only filesystem" if err == errno.EROFS else "not writable by you"
        raise OutputError(f"cannot write stems into {out}", code="E_OUTPUT_UNWRITABLE", why=f"{target} is {state}",
                          hint="pick a dir you can write to with -o")
    new_parts = out.relative_to(anchor).parts
    for i in range(len(new_parts)):
        _check_length(anchor, anchor.joinpath(*new_parts[:i + 1]), "output dir")
    return anchor


def _limit(anchor: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(anchor, name))
    except (OSError, ValueError):
        return default


def check_name_lengths(out: Path, anchor: Path, names: Iterable[str]) -> None:
    """Raise when a stem file name (or its full path) is longer than the filesystem under `out` allows."""
    for name in names:
        _check_length(anchor, out / name, "stem file")


def _check_length(anchor: Path, path: Path, what: str) -> None:
    encoding = sys.getfilesystemencoding()
    name_max, path_max = _limit(anchor, "PC_NAME_MAX", NAME_MAX), _limit(anchor, "PC_PATH_MAX", PATH_MAX)
    size = len(path.name.encode(encoding, "surrogateescape"))
    shorter = ("rename the input to a shorter name (stem files are named `<input>_(<stem>)_<model>.<format>`)"
               if what == "stem file" else "pick a shorter output dir with -o")
    if size > name_max:
        raise OutputError(f"the {what} name {path.name!r} is too long for the filesystem of {anchor}",
                          code="E_OUTPUT_NAME_TOO_LONG", why=f"it is {size} bytes; names there may have at most "
                          f"{name_max}", hint=shorter)
    full = len(str(path).encode(encoding, "surrogateescape"))
    if full > path_max:
        raise OutputError(f"the {what} path {path} is too long", code="E_OUTPUT_NAME_TOO_LONG",
                          why=f"it is {full} bytes; paths may have at most {path_max}",
                          hint="pick a shorter output dir with -o" + (", or rename the input" if what == "stem file"
                                                                     else ""))


def remove_staging_dirs(output_dir: Path) -> None:
    """The hidden staging dirs a killed worker left half-written in `output_dir` (a whole stem is renamed out of
    its staging dir; what is still in one is never a result). Only for a dir no running worker writes to."""
    import shutil

    from runtimes.protocol import staging_dir_name

    prefix, suffix = staging_dir_name("x").split("x")  # ".stemsep-", ".partial"
    for entry in output_dir.glob(f"{prefix}*{suffix}"):
        shutil.rmtree(entry, ignore_errors=True)
