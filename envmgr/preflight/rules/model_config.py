"""The model's config file (once it is in the model store) against what the chosen runtime can run and reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from registry.capabilities import CAPABILITIES, cannot_run, is_mono_model
from envmgr.preflight.rules.codes import Finding

if TYPE_CHECKING:
    from registry.view import ModelView


@dataclass(frozen=True)
class ConfigFacts:
    filename: str
    keys: frozenset[str]  # dotted keys of its top-level sections ("training.target_instrument")
    mono: Optional[bool]  # the network takes one channel (model.stereo false / audio.num_channels 1); None: unsaid


def check_config(entry: ModelView, runtime: str, config: Optional[ConfigFacts]) -> list[Finding]:
    """What the config file says against the runtime's capability facts: a mono network the runtime cannot
    feed, keys it reads without a default (missing: the load fails), keys its adapter adds to a derived copy."""
    caps = CAPABILITIES.get(runtime)
    arch = caps.arch(str(entry.architecture)) if caps else None
    if config is None or caps is None or arch is None:
        return []
    findings = []
    if config.mono and not is_mono_model(entry):  # the entry says stereo (or nothing): the file decides
        reasons = cannot_run(entry, runtime, mono=True)
        if reasons:
            findings.append(Finding("E_RUNTIME_CANNOT_RUN", f"{entry.id} cannot run in {runtime}: its config "
                                    f"{config.filename} describes a mono network", why="; ".join(reasons),
                                    hint="run it with --runtime stemsep-legacy if the entry allows it, and correct "
                                    "the entry (capabilities.supports_stereo: false, runtime.allowed)",
                                    subject=config.filename))
    missing = [k for k in arch.config_keys if k not in config.keys]
    if missing:
        findings.append(Finding("E_CONFIG_KEY_MISSING", f"{entry.id}'s config {config.filename} lacks "
                                f"{', '.join(missing)}, which {caps.label} reads without a default",
                                why="the model would fail to load", hint="use the config file published with the "
                                "checkpoint, or pick another runtime with --runtime", subject=config.filename))
    adapted = {k: v for k, v in arch.adapted_keys.items() if k not in config.keys}
    if adapted:
        findings.append(Finding("W_CONFIG_ADAPTED", f"{runtime} gets a copy of {config.filename} with "
                                + ", ".join(f"{k}: {_yaml(v)}" for k, v in adapted.items()) + " added",
                                why=f"{caps.label} reads {', '.join(adapted)} without a default; the model's config "
                                "does not need it for its own code",
                                hint="nothing to do: the original file in the model store is not changed",
                                subject=config.filename))
    return findings


def _yaml(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
