"""The model's runtime (routing from registry data only) and its settings in the runtime's native meaning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional


from registry.errors import StemSepError
from registry.routing import RuntimeChoice, RuntimeNotAllowedError, choose_runtime
from registry.settings import ResolvedSettings, resolve_settings
from registry.uvr_params import missing_uvr_params
from envmgr.preflight.rules.codes import Finding, from_error

if TYPE_CHECKING:
    from registry.view import ModelView


@dataclass(frozen=True)
class RuntimeResolution:
    runtime: Optional[str]  # what the job would run on (None: nothing can run it)
    reason: Optional[str]  # user | preferred | first_allowed | first_capable
    allowed: tuple[str, ...]
    blocking_reason: Optional[str]
    in_allowed: bool

    def to_dict(self) -> dict[str, Any]:
        why = RuntimeChoice(self.runtime or "", self.reason).explain() if self.reason else None  # type: ignore[arg-type]
        if self.runtime and not self.in_allowed:
            why = "you asked for it, although the registry does not allow it (not enforced)"
        return {"id": self.runtime, "reason": self.reason, "why": why, "allowed": list(self.allowed),
                "blocking_reason": self.blocking_reason, "in_allowed": self.in_allowed}


def route(entry: ModelView, requested: Optional[str]) -> tuple[RuntimeResolution, list[Finding]]:
    """Routing by registry data only (registry.routing); a disallowed request stays the runtime a
    non-enforcing mode would run, with E_RUNTIME_NOT_ALLOWED quoting blocking_reason."""
    allowed = tuple(entry.runtime.allowed)
    reason_text = entry.runtime.blocking_reason
    try:
        choice = choose_runtime(entry, requested)
    except RuntimeNotAllowedError as err:
        runtime = requested if err.code == "E_RUNTIME_NOT_ALLOWED" else None
        return (RuntimeResolution(runtime, "user" if runtime else None, allowed, reason_text, False),
                [from_error(err, subject=requested)])
    except StemSepError as err:
        return RuntimeResolution(None, None, allowed, reason_text, False), [from_error(err, subject=requested)]
    resolution = RuntimeResolution(choice.runtime, choice.reason, allowed, reason_text, True)
    missing = missing_uvr_params(entry, choice.runtime)  # the load would fail after a yes (registry.uvr_params)
    if missing:
        return resolution, [Finding("E_UVR_PARAMS_MISSING", f"{entry.id} cannot load on {choice.runtime}: its entry "
                                    f"lacks UVR's parameters {', '.join(missing)}",
                                    why=f"{choice.runtime} finds an {entry.architecture} model's parameters by the "
                                    "hash of its file in UVR's model data, which the registry entry must supply",
                                    hint="add uvr_model_data from UVR's model_data.json to the entry (stemsep registry "
                                    "validate names the keys)", subject=choice.runtime)]
    return resolution, []


def resolve_job_settings(entry: ModelView, runtime: str, user: Mapping[str, Any],
                         meanings: Optional[Mapping[str, str]] = None) -> tuple[Optional[ResolvedSettings],
                                                                                list[Finding]]:
    """Recommended settings translated to the runtime's native values; user values win and are shown (read in
    the runtime's native meaning unless `meanings` names another, e.g. {"overlap": "ratio"})."""
    from registry.settings import SettingsError

    try:
        resolved = resolve_settings(entry, runtime, user=user, user_meanings=meanings)
    except SettingsError as err:
        return None, [from_error(err, "E_SETTINGS")]
    findings = [Finding("E_SETTING_RANGE", p.message, why=p.why, hint=p.hint, subject=p.name)
                for p in resolved.problems]  # the runtime would refuse the value, or silently change it
    for name in user:
        item = resolved.settings.get(name)
        if item is None or item.provenance != "user" or item.param is None or item.value is None:
            findings.append(Finding("W_SETTING_IGNORED", f"--{name.replace('_', '-')} {user[name]} is not used",
                                    why=(item.note if item else "") or f"{runtime} has no {name} parameter for "
                                    f"{entry.id}", hint="leave it out", subject=name))
            continue
        recommended = getattr(entry.recommended_settings, name, None)
        meaning = (meanings or {}).get(name)
        if recommended == user[name] and meaning is None:
            continue  # the same value: nothing is overridden (the table still shows provenance `user`)
        given = f"{user[name]} ({meaning})" if meaning else f"{user[name]}"
        if recommended is not None:
            message = f"{name}: your {given} replaces the registry's recommended {recommended}"
        else:
            message = f"{name}: your {given} replaces {runtime}'s default"
        findings.append(Finding("W_SETTING_OVERRIDDEN", message, why=item.note, subject=name,
                                hint=f"leave --{name.replace('_', '-')} out to use the recommendation"))
    return resolved, findings
