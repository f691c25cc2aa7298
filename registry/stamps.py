"""Stamps of files, to key caches derived from them (the loader's verdict, the listing index).

Stdlib only: the warm `stemsep models list` path imports this.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

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


def rule_code_files() -> list[Path]:
    """The code that parses and validates a registry: a change to it invalidates derived caches."""
    return [_CODE_DIR / n for n in ("model.py", "vocab.py", "loader.py", "validator.py", "frozen.py")] + sorted(
        (_CODE_DIR / "rules").glob("*.py"))
