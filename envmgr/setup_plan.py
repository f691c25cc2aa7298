"""Which envs `stemsep setup` must build: models -> runtime (registry routing) -> env requests, grouped
so that models with identical requests are built once."""

from __future__ import annotations

from dataclasses import dataclass, field

from envmgr.config import MachineConfig
from envmgr.envs import EnvRequest, request_for_model
from registry.errors import ExitCode, StemSepError


@dataclass
class Group:
    request: EnvRequest
    models: list[str] = field(default_factory=list)


@dataclass
class Plan:
    groups: list[Group]
    skipped: list[dict]  # {"model", "reason"}: models the selection named but that cannot run as asked


def load_models(overlays: tuple[str, ...] = ()):
    """(models by id, default model id, get(id) raising the registry's unknown-model error)."""
    try:
        from registry.loader import load_registry
    except ImportError:  # the registry loader lands in its own issue; until then read the packaged file
        load_registry = None
    if load_registry is not None:
        registry = load_registry(overlays=overlays)
        return registry.models, registry.default_model, registry.get
    import importlib.resources

    from registry.model import RegistryFile

    packaged = importlib.resources.files("registry") / "models.json"
    texts = ([packaged.read_text(encoding="utf-8")] if packaged.is_file() else [])
    texts += [open(p, encoding="utf-8").read() for p in overlays]
    models, default = {}, None
    for text in texts:
        data = RegistryFile.model_validate_json(text)
        models.update({m.id: m for m in data.models})
        default = data.default_model or default

    def get(model_id: str):
        if model_id not in models:
            import difflib

            near = difflib.get_close_matches(model_id, models, n=3)
            raise StemSepError(f"unknown model {model_id!r}", code="E_UNKNOWN_MODEL", exit_code=ExitCode.USAGE,
                               hint=f"did you mean: {', '.join(near)}?" if near else "`stemsep models list`")
        return models[model_id]

    return models, default, get


def choose(entry, requested: str | None) -> str:
    try:
        from registry.routing import choose_runtime
    except ImportError:
        choose_runtime = None
    if choose_runtime is not None:
        return choose_runtime(entry, requested).runtime
    allowed = list(entry.runtime.allowed)
    if requested:
        if requested not in allowed:
            raise StemSepError(f"model {entry.id} cannot run on {requested}", code="E_RUNTIME_NOT_ALLOWED",
                               exit_code=ExitCode.PREFLIGHT_BLOCKED,
                               why=entry.runtime.blocking_reason or f"allowed: {', '.join(allowed) or 'none'}")
        return requested
    if entry.runtime.preferred:
        return entry.runtime.preferred
    if allowed:
        return allowed[0]
    raise StemSepError(f"model {entry.id} has no runtime", code="E_NO_RUNTIME", exit_code=ExitCode.PREFLIGHT_BLOCKED,
                       why=entry.runtime.blocking_reason or "runtime.allowed is empty")


def plan_setup(model_ids: list[str], *, runtime: str | None, all_models: bool, config: MachineConfig,
               registries: tuple[str, ...] = ()) -> Plan:
    models, default, get = load_models(registries)
    if all_models:
        entries = list(models.values())
    elif model_ids:
        entries = [get(m) for m in model_ids]  # unknown ids fail here, before anything is built
    elif default:
        entries = [get(default)]
    else:
        raise StemSepError("no model selected and the registry has no default model", code="E_USAGE",
                           exit_code=ExitCode.USAGE, hint="name models, or pass --all")
    groups: dict[EnvRequest, Group] = {}
    skipped = []
    for entry in entries:
        try:
            chosen = choose(entry, runtime)
        except StemSepError as err:
            if not all_models:
                raise
            skipped.append({"model": entry.id, "reason": err.message})
            continue
        req = request_for_model(entry, chosen, config)
        groups.setdefault(req, Group(req)).models.append(entry.id)
    return Plan(groups=list(groups.values()), skipped=skipped)
