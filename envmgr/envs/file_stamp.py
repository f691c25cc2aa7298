"""The cheap integrity check a ready env gets on every use: size and mtime of the files its runtime imports.

Written at build time (and after a repair): the files the health check's import loaded (Python modules and
the shared libraries mapped into the process, inside the env) plus every extension module and shared library
the env's RECORDs list (torch's, which the health check does not import). Checking it is a stat per file
(a few hundred; no process, no hashing), so "ready" is not said of an env whose runtime import was edited
or deleted. An edit that keeps size and mtime, or one in a file outside this set, is found by
`stemsep env verify` (every file, hashed), not here. Envs built before stamps existed have none: nothing
to compare, they count as intact.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

from envmgr.fsutil import atomic_write_json

STAMP = "stemsep-stamp.json"
# extension modules and shared libraries: what an import loads besides Python source
SHARED_LIBRARY = re.compile(r"\.(so|pyd|dll|dylib)(\.[0-9.]+)?$")


def write_stamp(env_dir: Path, paths: Iterable[str]) -> int:
    """Stamp the files (relative to env_dir) that exist now; how many were stamped."""
    files = {}
    for rel in sorted(set(paths)):
        try:
            st = os.stat(env_dir / rel)
        except OSError:
            continue
        files[rel] = [st.st_size, st.st_mtime_ns]
    atomic_write_json(env_dir / STAMP, {"version": 1, "files": files})
    return len(files)


def stamp_paths(env_dir: Path, loaded: Iterable[str], libraries: Iterable[str] | None = None) -> list[str]:
    """What to stamp: the files an import loaded (the health probe's `loaded`) and the env's shared libraries
    (`libraries` when the caller has them from the RECORDs, else found by a walk)."""
    return sorted(set(loaded) | set(shared_libraries(env_dir) if libraries is None else libraries))


def shared_libraries(env_dir: Path) -> list[str]:
    """Extension modules and shared libraries under the env's lib dir (relative paths): a walk, not the RECORDs
    (parsing those costs ~0.1 s in a torch env, the walk ~0.06 s)."""
    found = []
    for root, _, files in os.walk(env_dir / ("Lib" if os.name == "nt" else "lib")):
        found += [os.path.relpath(os.path.join(root, f), env_dir) for f in files if SHARED_LIBRARY.search(f)]
    return found


def restamp(env_dir: Path) -> int:
    """Stamp the env's stamped files again as they are now (after a repair); its shared libraries where the stamp
    is unreadable."""
    try:
        paths = list(json.loads((env_dir / STAMP).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        paths = shared_libraries(env_dir)
    return write_stamp(env_dir, paths)


def changed_files(env_dir: Path) -> list[str] | None:
    """Stamped files that are gone or have another size or mtime; None when the env has no readable stamp."""
    try:
        files = json.loads((env_dir / STAMP).read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return [STAMP]
    changed = []
    root = str(env_dir)
    for rel, (size, mtime_ns) in files.items():
        try:
            st = os.stat(os.path.join(root, rel))
        except OSError:
            changed.append(rel)
            continue
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            changed.append(rel)
    return changed


def stamp_problem(env_dir: Path) -> str | None:
    """The cheap check's verdict as a problem line (None: intact or no stamp)."""
    changed = changed_files(env_dir)
    if not changed:
        return None
    shown = ", ".join(changed[:3]) + (f" +{len(changed) - 3} more" if len(changed) > 3 else "")
    return f"files its runtime imports were changed or deleted since it was built: {shown}"
