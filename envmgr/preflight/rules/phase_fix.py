"""A Phase Fix reference: a valid reference model and sane band parameters."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence


from registry.vocab import PHASE_FIX_MAX_HZ as MAX_HZ
from envmgr.preflight.rules.codes import Finding


PHASE_FIX_PARAMS = ("lowHz", "highHz", "highFreqWeight")


def check_phase_fix(reference_id: str, reference: Any, valid_references: Sequence[str],
                    user: Mapping[str, float]) -> tuple[list[Finding], Optional[dict[str, Any]]]:
    """A requested reference must be a valid one; its recommended params apply unless you give your own."""
    listing = ", ".join(valid_references) or "none in this registry"
    if reference is None or reference.phase_fix.is_valid_reference is not True:
        what = "is not a model in the registry" if reference is None else "is not a valid Phase Fix reference"
        return [Finding("E_PHASE_FIX_REFERENCE", f"{reference_id} {what}",
                        "Phase Fix takes its phase from the reference; the guide names which models work as one",
                        f"use one of: {listing}", subject=reference_id)], None
    findings = []
    params = {}
    recommended = reference.phase_fix.recommended_params
    for name in PHASE_FIX_PARAMS:
        rec = getattr(recommended, name)
        if name in user:
            params[name] = {"value": user[name], "provenance": "user", "recommended": rec}
            if rec is not None and user[name] != rec:
                findings.append(Finding("W_PHASE_FIX_OVERRIDE", f"Phase Fix {name}: your {user[name]} replaces "
                                        f"{reference_id}'s recommended {rec}", subject=name))
        else:
            params[name] = {"value": rec, "provenance": "registry" if rec is not None else "runtime_default",
                            "recommended": rec}
    low, high, weight = (params[n]["value"] for n in PHASE_FIX_PARAMS)
    problems = []
    for name, value in (("lowHz", low), ("highHz", high)):
        if value is not None and not 0 < value <= MAX_HZ:
            problems.append(f"{name} {value} is outside (0, {MAX_HZ}]")
    if low is not None and high is not None and low > high:
        problems.append(f"lowHz {low} is above highHz {high}")
    if weight is not None and not 0 <= weight <= 4:
        problems.append(f"highFreqWeight {weight} is outside 0..4")
    if problems:
        findings.append(Finding("E_PHASE_FIX_PARAMS", "Phase Fix parameters are out of range", "; ".join(problems),
                                "give 0 < lowHz <= highHz <= 24000 and a weight in 0..4 (the guide's UVR "
                                "defaults: 500 / 5000)", subject=reference_id))
    return findings, {"reference": reference_id, "params": params}
