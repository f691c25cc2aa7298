"""Stamps of files, to key caches derived from them (the loader's verdict, the listing index).

Stdlib only: the warm `stemsep models list` path imports this.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Optional

_CODE_DIR = Path(__file__).resolve().parent


def stamp(paths: Iterable[Path]) -> list[list[Any]]:
    """(path, size, mtime) per file: what a cache derived from these files is keyed by."""
    out: list[list[Any]] = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append([str(Path(path).resolve()), st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([str(path), None, None])  # a missing file: the uncached path reports it
    return out


def installed_version(package: str) -> Optional[list[Any]]:
    """What identifies the installed `package` (an import name that is also its distribution's, e.g. pydantic):
    the version in the name of its dist-info folder beside it (`pydantic-2.14.4.dist-info`), else its
    `__init__`'s stamp; None when it is not installed. Found without importing the package or
    importlib.metadata: either would cost the warm start more than the cache saves (scripts/bench/README.md)."""
    from importlib.util import find_spec

    spec = find_spec(package)
    if spec is None or not spec.origin:
        return None
    origin = Path(spec.origin)
    dist = package.replace("-", "_")
    folders = sorted(origin.parent.parent.glob(f"{dist}-*.dist-info"))  # several: a stale one was left
    return [folder.stem[len(dist) + 1:] for folder in folders] or stamp([origin])


def rule_code_files() -> list[Path]:
    """The code that parses and validates a registry: a change to it invalidates derived caches."""
    return [_CODE_DIR / n for n in ("model.py", "vocab.py", "loader.py", "validator.py", "frozen.py",
                                       "settings.py", "pep508.py")] + sorted(
        (_CODE_DIR / "rules").glob("*.py"))
