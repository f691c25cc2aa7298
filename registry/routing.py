"""Deterministic routing (seed §4.2): which runtime runs a model, from registry data only.

1. The user asked for a runtime: it must be in `runtime.allowed`, else a blocking error quoting
   `blocking_reason`.
2. Otherwise `runtime.preferred`, else the first of `runtime.allowed`.
Either way the runtime's capability facts (registry/capabilities.py) must not exclude the model: a
requested runtime they exclude is refused with their reason (E_RUNTIME_CANNOT_RUN), and without a request
the first allowed runtime that can run it is taken. The validator keeps our curated file free of such
entries; a user's file read in compat mode may still hold them.
Nothing here looks at a model's id or name.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Optional

from registry.capabilities import cannot_run, capable_runtimes
from registry.errors import ExitCode, StemSepError
from registry.vocab import RUNTIME_IDS

if TYPE_CHECKING:
    from registry.view import ModelView

Reason = Literal["user", "preferred", "first_allowed", "first_capable"]


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str
    reason: Reason

    def explain(self) -> str:
        return {"user": "you asked for it", "preferred": "the registry's preferred runtime for this model",
                "first_allowed": "the first runtime the registry allows for this model",
                "first_capable": "the first runtime the registry allows that can run this model"}[self.reason]


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
    able = capable_runtimes(entry, allowed)
    if requested is not None:
        unable = cannot_run(entry, requested)
        if requested in allowed and not unable:
            return RuntimeChoice(requested, "user")
        if requested in allowed:
            raise _cannot_run(entry, requested, unable, able, requested)
        raise RuntimeNotAllowedError(
            f"{entry.id} cannot run in {requested}", model_id=entry.id, requested=requested, allowed=allowed,
            why=" ".join(x for x in (reason or f"its registry entry allows only {', '.join(allowed)}.",
                                     _capability_why(unable, able) if unable else "") if x),
            hint=f"use --runtime {allowed[0]}" + (f" (allowed: {', '.join(allowed)})" if len(allowed) > 1 else "")
            + ", or leave --runtime out to use the model's preferred runtime")
    preferred = entry.runtime.preferred
    if preferred is not None:
        if preferred not in allowed:  # the validator rejects this; never route around bad data silently
            raise StemSepError(f"{entry.id}: preferred runtime {preferred} is not in allowed {allowed}",
                               hint="fix the registry entry (stemsep registry validate)",
                               code="E_REGISTRY_INVALID", exit_code=ExitCode.INVALID)
        if preferred in able:
            return RuntimeChoice(preferred, "preferred")
    elif allowed[0] in able:
        return RuntimeChoice(allowed[0], "first_allowed")
    if able:
        return RuntimeChoice(able[0], "first_capable")
    first = preferred or allowed[0]
    raise _cannot_run(entry, first, cannot_run(entry, first), able, None)


def _capability_why(reasons: tuple[str, ...], able: list[str]) -> str:
    return "; ".join(reasons) + (f"; {', '.join(able)} can" if able else "")


def _cannot_run(entry: ModelView, runtime: str, reasons: tuple[str, ...], able: list[str],
                requested: Optional[str]) -> RuntimeNotAllowedError:
    """The registry allows `runtime` but its capability facts exclude the model: the load would fail."""
    return RuntimeNotAllowedError(
        f"{entry.id} cannot run in {runtime}", model_id=entry.id, requested=requested, allowed=list(entry.runtime.allowed),
        why=_capability_why(reasons, able),
        hint=(f"use --runtime {able[0]}" if able else "no runtime here can run it; pick another model")
        + "; and remove the runtime from the entry's runtime.allowed (`stemsep registry validate` names it)",
        code="E_RUNTIME_CANNOT_RUN")
