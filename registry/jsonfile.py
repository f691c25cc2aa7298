"""Reading a registry file: any failure names the file and, for bad JSON, the line and column."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from registry.errors import ExitCode, StemSepError


class RegistryReadError(StemSepError):
    """A registry file is missing, unreadable or not JSON."""

    exit_code = ExitCode.USAGE
    code = "E_REGISTRY_UNREADABLE"

    def __init__(self, message: str, *, path: Path, line: int | None = None, column: int | None = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.path, self.line, self.column = path, line, column


def write_quietly(path: Path, text: str) -> None:
    """Write a cache file atomically (a reader sees the whole file or none); one that cannot be written only
    costs speed next time, so failures are ignored."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def read_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise RegistryReadError(f"registry file {path} does not exist", path=path, why=str(exc.strerror),
                                hint="check the path (stemsep registry validate takes registry JSON files)") from exc
    except IsADirectoryError as exc:
        raise RegistryReadError(f"registry file {path} is a directory", path=path,
                                hint="pass the JSON file inside it") from exc
    except OSError as exc:
        raise RegistryReadError(f"cannot read registry file {path}", path=path, why=exc.strerror or str(exc),
                                hint="check the file's permissions") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RegistryReadError(f"{path}:{line}:{column}: registry file is not UTF-8 text", path=path, line=line,
                                column=column, why=str(exc), hint="save the file as UTF-8") from exc
    del raw  # a large overlay's bytes need not live on beside its text and the parsed objects
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryReadError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}", path=path,
                                line=exc.lineno, column=exc.colno,
                                why=f"the JSON parser stopped at line {exc.lineno}, column {exc.colno}",
                                hint="fix the JSON at that position (a missing comma or quote is typical)") from exc
    except RecursionError as exc:
        raise RegistryReadError(f"{path}: JSON nested too deeply", path=path,
                                hint="a registry is only a few levels deep; check the file") from exc
