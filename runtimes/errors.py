"""Errors a job reports: `JobError` becomes the protocol's `error{code, message, hint}`.

A leaf (stdlib and the protocol only) so that the adapter interface, audio IO and every adapter can
raise them without importing each other.
"""

from __future__ import annotations

from runtimes import protocol as p


class JobError(Exception):
    """A job failed for a reason the adapter understands: reported as `error{code, message, hint}`."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


class JobCancelled(JobError):
    def __init__(self) -> None:
        super().__init__(p.E_CANCELLED, "the job was cancelled")
