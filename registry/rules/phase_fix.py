"""Phase Fix references (seed §3.5) and their parameters."""

from __future__ import annotations

from registry.rules.base import Hit, ModelContext, model_rule
from registry.vocab import PHASE_FIX_MAX_HZ as MAX_HZ

PARAMS = ("phase_fix", "recommended_params")


@model_rule("phase-fix-frequency-range", summary="Phase Fix params: 0 < lowHz <= highHz <= 24000",
            hint="give lowHz and highHz in Hz with lowHz <= highHz, e.g. the guide's UVR defaults 500 / 5000")
def frequency_range(entry, ctx: ModelContext):
    p = entry.phase_fix.recommended_params
    if p.lowHz is not None and not 0 < p.lowHz <= MAX_HZ:
        yield Hit(PARAMS + ("lowHz",), f"lowHz {p.lowHz} is outside (0, {MAX_HZ}]")
    if p.highHz is not None and not 0 < p.highHz <= MAX_HZ:
        yield Hit(PARAMS + ("highHz",), f"highHz {p.highHz} is outside (0, {MAX_HZ}]")
    if p.lowHz is not None and p.highHz is not None and p.lowHz > p.highHz:
        yield Hit(PARAMS + ("lowHz",), f"lowHz {p.lowHz} is above highHz {p.highHz}")


@model_rule("phase-fix-weight-range", summary="Phase Fix highFreqWeight is within 0..4",
            hint="use a weight in 0..4 (the guide recommends 2 for Becruily's vocal model)")
def weight_range(entry, ctx: ModelContext):
    w = entry.phase_fix.recommended_params.highFreqWeight
    if w is not None and not 0 <= w <= 4:
        yield Hit(PARAMS + ("highFreqWeight",), f"highFreqWeight {w} is outside 0..4")


@model_rule("phase-fix-role-consistent", summary="is_valid_reference <=> role phase_fix_reference",
            hint="set phase_fix.is_valid_reference: true and list phase_fix_reference in capabilities.roles, "
                 "or neither")
def role_consistent(entry, ctx: ModelContext):
    flagged = entry.phase_fix.is_valid_reference is True
    has_role = "phase_fix_reference" in entry.capabilities.roles
    if flagged and not has_role:
        yield Hit(("capabilities", "roles"), "a valid Phase Fix reference lacks the phase_fix_reference role")
    elif has_role and not flagged:
        yield Hit(("phase_fix", "is_valid_reference"), "the phase_fix_reference role is listed but "
                  "is_valid_reference is not true")


@model_rule("phase-fix-params-need-reference", summary="Phase Fix params only on valid references",
            severity="warning", hint="drop the params, or mark the model phase_fix.is_valid_reference: true")
def params_need_reference(entry, ctx: ModelContext):
    p = entry.phase_fix.recommended_params
    if entry.phase_fix.is_valid_reference is not True and any(
            v is not None for v in (p.lowHz, p.highHz, p.highFreqWeight)):
        yield Hit(PARAMS, "Phase Fix parameters are given but the model is not a valid reference")
