"""Disk usage the way `du` counts it (allocated blocks, each hardlinked file once), and sizes for people."""

from __future__ import annotations

import os
from pathlib import Path


def disk_usage(paths: list[Path] | tuple[Path, ...], seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes on disk under `paths`; inodes already in `seen` (shared by hardlinks) are not counted again."""
    seen = set() if seen is None else seen
    total = 0
    for root in paths:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total


def human(size: int | float | None, unknown: str = "-") -> str:
    """`639.3 MiB`, `12 B`, `1,536.0 GiB`: the one way sizes are shown to people; `unknown` for None."""
    if size is None:
        return unknown
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if abs(value) < 1024:
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GiB"


def parse_size(text: str) -> int:
    """'500M', '2G', '1.5GiB', '1000' -> bytes."""
    import re

    match = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 500M, 2G)")
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[match.group(2).lower()]
    return int(float(match.group(1)) * factor)
