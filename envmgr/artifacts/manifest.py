"""The per-model manifest: what each stored file is, so status needs no re-hashing.

A record is trusted only while the file's size and mtime are the ones recorded; a file changed behind
our back is hashed again. Updates are read-modify-write under a per-model lock and land atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from filelock import FileLock

from envmgr import fsutil
from envmgr.artifacts.layout import StoreLayout, make_dir

FORMAT = 1
MANIFEST_LOCK = ".manifest"  # lock name; artifact filenames never start with a dot
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Record:
    sha256: str
    size: int
    source: str  # the URL it came from, or "import:<path>", or "store:<model id>" (reused)
    recorded_at: str  # UTC, ISO 8601
    pinned: bool  # whether the registry pinned this sha256 when it was recorded
    mtime_ns: int = 0

    def matches_file(self, path: Path) -> bool:
        """The file is still the one recorded (same size and mtime), so its hash need not be recomputed."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


def new_record(path: Path, sha256: str, source: str, pinned: bool) -> Record:
    st = os.lstat(path)
    return Record(sha256=sha256, size=st.st_size, source=source, pinned=pinned, mtime_ns=st.st_mtime_ns,
                  recorded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def sha256_file(path: Path, on_bytes: Optional[Callable[[int], None]] = None) -> str:
    """Hash a file in 1 MiB reads; `on_bytes(n)` reports progress."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return h.hexdigest()


def read_manifest(layout: StoreLayout, model_id: str) -> dict[str, Record]:
    """Records by filename; a missing or unreadable manifest reads as empty (files get re-hashed)."""
    try:
        data = json.loads(layout.manifest_path(model_id).read_text(encoding="utf-8"))
        return {name: Record(**rec) for name, rec in data["artifacts"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def update_manifest(layout: StoreLayout, model_id: str, changes: dict[str, Optional[Record]]) -> None:
    """Set (Record) or drop (None) records, under the model's manifest lock, atomically."""
    lock_path = layout.lock_path(model_id, MANIFEST_LOCK)
    make_dir(lock_path.parent)
    with FileLock(str(lock_path)):
        records = read_manifest(layout, model_id)
        for name, rec in changes.items():
            if rec is None:
                records.pop(name, None)
            else:
                records[name] = rec
        payload = {"format": FORMAT, "model_id": model_id,
                   "artifacts": {name: asdict(rec) for name, rec in sorted(records.items())}}
        fsutil.atomic_write_text(layout.manifest_path(model_id), json.dumps(payload, indent=2) + "\n")


