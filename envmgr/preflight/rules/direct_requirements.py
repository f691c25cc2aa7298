"""Pip requirements that install from a direct URL or path: code from wherever that points, gated like a code
artifact (rules/artifacts.py): allowed silently only with a pinned sha256, else only with the user's trust."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from envmgr.preflight.rules.codes import Finding


@dataclass(frozen=True)
class DirectRequirementFacts:
    requirement: str  # as the registry writes it
    url: str  # the URL or path it installs from (registry.pep508.direct_reference)
    pinned_sha256: Optional[str] = None  # `#sha256=` in the URL (pip and uv verify the file against it)
    trusted: bool = False  # `stemsep models trust MODEL REQUIREMENT` recorded trust for this exact text


def check_direct_requirements(model_id: str, facts: Sequence[DirectRequirementFacts]) -> list[Finding]:
    findings = []
    for f in facts:
        if f.pinned_sha256:
            continue
        if f.trusted:
            findings.append(Finding(
                "W_REQUIREMENT_USER_TRUSTED", f"{model_id}: the requirement {f.requirement!r} installs from {f.url}, "
                "which you trusted", "the registry pins no sha256 for it: whatever is there when the env is built "
                "is installed and its code runs in the worker", "pin it in the registry overlay "
                f"(`...#sha256=<hash>`), or take the trust back: `stemsep models trust {model_id} "
                f"'{f.requirement}' --revoke`", subject=f.requirement))
            continue
        findings.append(Finding(
            "E_REQUIREMENT_UNTRUSTED", f"{model_id}: refusing to install {f.requirement!r} into the model's env",
            f"it installs from a direct URL or path ({f.url}) that pins no sha256: any code there would run, and "
            "nothing checks it is the code the model's author meant",
            f"pin the file's sha256 in the registry overlay (`{f.requirement.split('#')[0]}#sha256=<hash>`), or, "
            f"after reviewing it, trust it: `stemsep models trust {model_id} '{f.requirement}'`",
            subject=f.requirement))
    return findings
