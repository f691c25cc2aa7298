"""The decision: the enforcement mode applied to the findings, per job and per input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


from registry.errors import ExitCode
from envmgr.preflight.rules.codes import CODES, MODES, Finding


@dataclass
class Decision:
    can_proceed: bool
    mode: str
    dev_override: bool
    blocking: list[Finding] = field(default_factory=list)  # errors that stop the job or their input
    overridden: list[Finding] = field(default_factory=list)  # errors the mode lets through
    runnable_inputs: list[str] = field(default_factory=list)
    blocked_inputs: list[str] = field(default_factory=list)

    def exit_code(self) -> ExitCode:
        """The blocking errors' own exit code when they agree (a bad file: 12), else PREFLIGHT_BLOCKED."""
        job = [f for f in self.blocking if f.input is None] or self.blocking
        codes = {CODES[f.code].exit_code for f in job}
        return codes.pop() if len(codes) == 1 else ExitCode.PREFLIGHT_BLOCKED


def decide(findings: Sequence[Finding], inputs: Sequence[str], mode: str, dev_override: bool
           ) -> tuple[Decision, list[Finding]]:
    """Apply the enforcement mode; returns the decision and the enforcement warnings to add to the report."""
    if mode not in MODES:
        raise ValueError(f"enforcement mode {mode!r}")
    decision = Decision(False, mode, dev_override)
    lenient = mode == "report" or (mode == "soft" and dev_override)
    for f in findings:
        if f.severity != "error":
            continue
        (decision.overridden if lenient and not f.fatal else decision.blocking).append(f)
    blocked = {f.input for f in decision.blocking if f.input is not None}
    decision.blocked_inputs = [i for i in inputs if i in blocked]
    decision.runnable_inputs = [i for i in inputs if i not in blocked]
    job_blocked = any(f.input is None for f in decision.blocking)
    decision.can_proceed = not job_blocked and bool(decision.runnable_inputs)
    extra = []
    codes = ", ".join(sorted({f.code for f in decision.overridden}))
    if decision.overridden and mode == "soft":
        extra.append(Finding("W_DEV_OVERRIDE", f"DEV OVERRIDE: proceeding despite {len(decision.overridden)} "
                             f"error(s) ({codes})", "--dev-override in soft enforcement lets policy errors through",
                             "do not use this for real work; fix the errors instead"))
    elif decision.overridden:
        extra.append(Finding("W_NOT_ENFORCED", f"enforcement is report: {len(decision.overridden)} error(s) are not "
                             f"enforced ({codes})", "the job may fail later or give wrong results",
                             "switch to --enforcement strict once these are fixed"))
    if dev_override and mode != "soft":
        extra.append(Finding("W_DEV_OVERRIDE_IGNORED", f"--dev-override has no effect in {mode} enforcement",
                             "only soft enforcement can be overridden", "add --enforcement soft (or set "
                             "STEMSEP_ENFORCEMENT=soft) if you really mean to override"))
    if decision.can_proceed and decision.blocked_inputs:
        extra.append(Finding("W_INPUTS_SKIPPED", f"{len(decision.blocked_inputs)} of {len(inputs)} inputs are "
                             "skipped: " + ", ".join(decision.blocked_inputs), "their errors are listed above",
                             "fix them and run them again"))
    return decision, extra
