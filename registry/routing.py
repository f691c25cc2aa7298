"""Deterministic routing (seed §4.2): which runtime runs a model, from registry data only.

1. The user asked for a runtime: it must be in `runtime.allowed`, else a blocking error quoting
   `blocking_reason`.
2. Otherwise `runtime.preferred`, else the first of `runtime.allowed`.
Nothing here looks at a model's id or name.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Optional

from registry.errors import ExitCode, StemSepError
from registry.vocab import RUNTIME_IDS

if TYPE_CHECKING:
    from registry.view import ModelView

Reason = Literal["user", "preferred", "first_allowed"]


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str
    reason: Reason

    def explain(self) -> str:
        return {"user": "you asked for it", "preferred": "the registry's preferred runtime for this model",
                "first_allowed": "the first runtime the registry allows for this model"}[self.reason]


class RuntimeNotAllowedError(StemSepError):
    """The model cannot run in the requested runtime (or in any)."""

    exit_code = ExitCode.PREFLIGHT_BLOCKED
    code = "E_RUNTIME_NOT_ALLOWED"

    def __init__(self, message: str, *, model_id: str, requested: Optional[str], allowed: list[str], **kw: Any):
        super().__init__(message, **kw)
        self.model_id, self.requested, self.allowed = model_id, requested, allowed


class UnknownRuntimeError(StemSepError):
    """The requested runtime id is not a canonical runtime."""

    exit_code = ExitCode.USAGE
    code = "E_UNKNOWN_RUNTIME"


def choose_runtime(entry: ModelView, requested: Optional[str] = None) -> RuntimeChoice:
    allowed = list(entry.runtime.allowed)
    reason = (entry.runtime.blocking_reason or "").strip()
    if requested is not None and requested not in RUNTIME_IDS:
        near = difflib.get_close_matches(requested, RUNTIME_IDS, n=1, cutoff=0.4)
        raise UnknownRuntimeError(f"unknown runtime {requested!r}",
                                  hint=(f"did you mean {near[0]}? " if near else "")
                                  + f"runtimes: {', '.join(RUNTIME_IDS)}")
    if not allowed:
        raise RuntimeNotAllowedError(
            f"{entry.id} cannot run in any runtime", model_id=entry.id, requested=requested, allowed=[],
            why=reason or "its registry entry allows no runtime",
            hint="pick another model (`stemsep models list`)", code="E_NO_RUNTIME")
    if requested is not None:
        if requested in allowed:
            return RuntimeChoice(requested, "user")
        raise RuntimeNotAllowedError(
            f"{entry.id} cannot run in {requested}", model_id=entry.id, requested=requested, allowed=allowed,
            why=reason or f"its registry entry allows only {', '.join(allowed)}",
            hint=f"use --runtime {allowed[0]}" + (f" (allowed: {', '.join(allowed)})" if len(allowed) > 1 else "")
            + ", or leave --runtime out to use the model's preferred runtime")
    preferred = entry.runtime.preferred
    if preferred is not None:
        if preferred not in allowed:  # the validator rejects this; never route around bad data silently
            raise StemSepError(f"{entry.id}: preferred runtime {preferred} is not in allowed {allowed}",
                               hint="fix the registry entry (stemsep registry validate)",
                               code="E_REGISTRY_INVALID", exit_code=ExitCode.INVALID)
        return RuntimeChoice(preferred, "preferred")
    return RuntimeChoice(allowed[0], "first_allowed")
