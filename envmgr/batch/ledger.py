"""The batch ledger: what a batch has done, kept in its output dir so re-submitting the manifest runs only the
rest (`<output dir>/.stemsep-batch/ledger.jsonl`).

One JSON object per line, appended with a single write(2) on an O_APPEND descriptor and fsynced, so a killed
driver leaves whole lines (a torn last line is ignored on reading). Only the driver writes, after an input's
stems are in place (each stem is renamed into place by the worker, so a file there is whole); an input whose
record says done but whose stem files are gone is run again. A failed input is recorded with its error code
and run again on the next submission. One driver per output dir at a time (an flock on `lock`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from envmgr.fsutil import ensure_dir
from registry.errors import ExitCode, StemSepError

FOLDER = ".stemsep-batch"


class BatchLocked(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_BATCH_LOCKED"


def item_key(input_path: Path, model: str, runtime: str, settings: dict[str, Any], output_format: str) -> str:
    """What makes two runs of an input the same run: its path, model, runtime, native settings and format."""
    blob = json.dumps([str(input_path), model, runtime, settings, output_format], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class Ledger:
    def __init__(self, output_dir: Path) -> None:
        self.folder = output_dir / FOLDER
        self.path = self.folder / "ledger.jsonl"
        self._lock_fd: int | None = None
        self._fd: int | None = None

    def open(self) -> "Ledger":
        """Take the output dir for this driver (refused while another batch writes there)."""
        ensure_dir(self.folder)
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BatchLocked(f"another batch is writing to {self.folder.parent}",
                              why=f"{self.folder / 'lock'} is held", hint="wait for it, or pick another -o dir")
        self._lock_fd = fd
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = None

    def __enter__(self) -> "Ledger":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def records(self) -> dict[str, dict[str, Any]]:
        """The last whole record of each key."""
        last: dict[str, dict[str, Any]] = {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return last
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line a killed driver tore; its input counts as not done
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                last[record["key"]] = record
        return last

    def done(self) -> set[str]:
        """Keys whose last record is `done` with every stem file still in place."""
        return {key for key, r in self.records().items()
                if r.get("status") == "done" and all(Path(p).is_file() for p in r.get("stems", []))}

    def append(self, record: dict[str, Any]) -> None:
        assert self._fd is not None, "open() the ledger first"
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        os.write(self._fd, line)  # one write on O_APPEND: the line lands whole, after every earlier one
        os.fsync(self._fd)
