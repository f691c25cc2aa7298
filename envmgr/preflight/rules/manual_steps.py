"""Manual steps of a model: done (confirmed or automated by an artifact) or blocking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence


from envmgr.preflight.rules.codes import Finding
from registry.view import artifacts_for

if TYPE_CHECKING:
    from registry.view import ManualStepView, ModelView


def step_text(step: str | ManualStepView) -> str:
    return step if isinstance(step, str) else step.text


def check_manual_steps(entry: ModelView, confirmed: Iterable[str], artifact_rows: Sequence[Mapping[str, Any]],
                       runtime: str | None = None) -> tuple[list[Finding], list[dict[str, Any]]]:
    """A step is automated when it names one of the model's code artifacts; else it needs your confirmation.
    A step automated by a file only other runtimes use (msst's model code) is theirs: `runtime` does without it."""
    code_files = {r["filename"]: r for r in artifact_rows if r["kind"] == "code"}
    others = {a.filename for a in entry.artifacts.all()} - {a.filename for a in artifacts_for(entry, runtime)}
    confirmed = set(confirmed)
    rows, waiting, done = [], [], []
    for step in entry.requirements.manual_steps:
        text = step_text(step)
        by = None if isinstance(step, str) else step.automated_by
        if by in others:
            continue
        if by in code_files:
            rows.append({"text": text, "state": "automated", "automated_by": by, "trust": code_files[by]["trust"]})
        elif text in confirmed:
            rows.append({"text": text, "state": "confirmed", "automated_by": None, "trust": None})
            done.append(text)
        else:
            rows.append({"text": text, "state": "unconfirmed", "automated_by": None, "trust": None})
            waiting.append(text)
    findings = []
    if waiting:
        findings.append(Finding("E_MANUAL_STEPS", f"{entry.id} needs {len(waiting)} manual step(s) done by you: "
                                + " | ".join(waiting), "StemSep cannot do or check these for you",
                                "do them, then confirm with --confirm-manual-steps (remembered for this model)",
                                subject=entry.id))
    if done:
        findings.append(Finding("W_MANUAL_STEPS_CONFIRMED", f"{entry.id}: you confirmed {len(done)} manual step(s): "
                                + " | ".join(done), "a reminder: StemSep cannot check them", subject=entry.id))
    return findings, rows
