"""What the user stated on a preflight run, and the one place that records it.

Preflight gathers facts without writing anything. A user's statements on the command line
(`--allow-unsafe-pickle` for a checkpoint's content, `--confirm-manual-steps`) count for this run's
decision as given; once the decision is made, `record_statements` remembers them (code-trust and
manual-step records under the state dir), so later runs need not repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PickleConsent:
    model_id: str
    filename: str
    sha256: str  # the content the consent is for: the registry's pin, else the stored file's
    path: Path


@dataclass
class Statements:
    pickle_consents: list[PickleConsent] = field(default_factory=list)
    confirmed_steps: dict[str, list[str]] = field(default_factory=dict)  # model id -> step texts


def record_statements(state_dir: Path, statements: Statements) -> None:
    """Remember the user's statements of this run (atomic writes; nothing to do when there are none)."""
    if statements.pickle_consents:
        from envmgr.preflight import code_trust

        for c in statements.pickle_consents:
            code_trust.record(state_dir, c.model_id, c.filename, c.sha256, c.path)
    if statements.confirmed_steps:
        from envmgr.preflight.confirmations import confirm_steps

        for model_id, texts in statements.confirmed_steps.items():
            confirm_steps(state_dir, model_id, texts)
