"""Errors of our Roformer path, each carrying the protocol code the worker reports it under.

They subclass the adapter's JobError, so the stemsep-legacy adapter passes them through unchanged
(code, message, hint) and the host maps the code to an exit code (E_INPUT_* -> input errors).
"""

from __future__ import annotations

from runtimes import protocol as p
from runtimes.errors import JobError


class RoformerError(JobError):
    """Base: `code` is a protocol error code, `hint` says what to do."""

    code_default = p.E_MODEL_LOAD

    def __init__(self, message: str, hint: str = "", code: str | None = None) -> None:
        super().__init__(code or self.code_default, message, hint)

    def __str__(self) -> str:
        return self.message + (f" (hint: {self.hint})" if self.hint else "")


class ConfigError(RoformerError):
    """The MSST YAML config is unreadable, incomplete, or asks for something we do not implement."""


class CheckpointError(RoformerError):
    """The checkpoint is unreadable, truncated, or does not match the config."""


class UnsafeCheckpointError(CheckpointError):
    """Loading the checkpoint would need full unpickling, which runs code from the file."""


class InputError(RoformerError):
    """Audio the model cannot take (channels, sample rate)."""

    code_default = p.E_INPUT_CHANNELS
