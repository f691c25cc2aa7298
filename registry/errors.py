"""Errors every host module raises: what went wrong, why, what to do, and a distinct exit code.

The exit codes are part of the CLI contract (README "Exit codes"); apps driving `stemsep` rely on them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INVALID = 1  # registry/config content is invalid (validate found errors)
    USAGE = 2  # bad arguments, unknown model id, unreadable file
    PREFLIGHT_BLOCKED = 3  # preflight said no; nothing was started
    UNRESOLVABLE = 4  # requirement set cannot be resolved (conflicting pins)
    ENV_BUILD = 5  # env could not be built (index unreachable, install failed, health check failed)
    NO_INTERPRETER = 6  # no Python satisfies the requested range
    STORE = 7  # state dir not writable, disk full
    ARTIFACT = 8  # download failed, sha256 mismatch, unsafe path
    WORKER = 9  # worker crashed or broke the protocol
    TIMEOUT = 10  # worker silent / job took too long
    JOB = 11  # the worker reported a job error (model load, inference)
    INPUT = 12  # input audio missing or undecodable
    CANCELLED = 130  # Ctrl-C


class StemSepError(Exception):
    """Base of all user-facing errors. `code` is a stable machine-readable string (e.g. `E_UNKNOWN_MODEL`)."""

    exit_code: ExitCode = ExitCode.INVALID
    code: str = "E_STEMSEP"

    def __init__(self, message: str, *, why: str = "", hint: str = "", code: str | None = None,
                 exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.why = why
        self.hint = hint
        if code is not None:
            self.code = code
        if exit_code is not None:
            self.exit_code = exit_code

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "why": self.why, "hint": self.hint,
                "exit_code": int(self.exit_code)}

    def __str__(self) -> str:
        parts = [self.message]
        if self.why:
            parts.append(f"Why: {self.why}")
        if self.hint:
            parts.append(f"What to do: {self.hint}")
        return "\n".join(parts)
