"""Which envs `stemsep setup` must build: models -> runtime (registry routing) -> env requests, grouped
so that models with identical requests are built once."""

from __future__ import annotations

from dataclasses import dataclass, field

from envmgr.config import MachineConfig
from envmgr.envs.request import EnvRequest, request_for_model
from envmgr.errors import UsageError
from registry.errors import StemSepError


@dataclass
class Group:
    request: EnvRequest
    models: list[str] = field(default_factory=list)


@dataclass
class Plan:
    groups: list[Group]
    skipped: list[dict]  # {"model", "reason"}: models the selection named but that cannot run as asked


def load_models(extra: tuple[str, ...] = ()):
    """The registry the CLI reads everywhere (envmgr.catalog.registry_files), plus `extra` overlay files."""
    from pathlib import Path

    from envmgr.catalog.registry_files import load

    return load([Path(p) for p in extra])


def choose(entry, requested: str | None) -> str:
    from registry.routing import choose_runtime

    return choose_runtime(entry, requested).runtime


def plan_setup(model_ids: list[str], *, runtime: str | None, all_models: bool, config: MachineConfig,
               registries: tuple[str, ...] = ()) -> Plan:
    registry = load_models(registries)
    if all_models:
        entries = list(registry.models.values())
    elif model_ids:
        entries = [registry.get(m) for m in model_ids]  # unknown ids fail here, before anything is built
    elif registry.default_model:
        entries = [registry.get(registry.default_model)]
    else:
        raise UsageError("no model selected and the registry has no default model", hint="name models, or pass --all")
    groups: dict[EnvRequest, Group] = {}
    skipped = []
    for entry in entries:
        try:
            chosen = choose(entry, runtime)
        except StemSepError as err:
            if not all_models:
                raise
            skipped.append({"model": entry.id, "reason": f"{err.message}: {err.why}" if err.why else err.message})
            continue
        req = request_for_model(entry, chosen, config)
        groups.setdefault(req, Group(req)).models.append(entry.id)
    return Plan(groups=list(groups.values()), skipped=skipped)
