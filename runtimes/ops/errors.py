"""The one error an audio operation raises: a ValueError that says what, why and what to do.

The runner turns it into a job error (code, message, hint); a leaf module so every op can raise it.
"""

from __future__ import annotations


class OpError(ValueError):
    """An operation cannot run on these inputs or params."""

    def __init__(self, message: str, why: str, hint: str) -> None:
        super().__init__(f"{message}: {why}. {hint}")
        self.message = message
        self.why = why
        self.hint = hint
