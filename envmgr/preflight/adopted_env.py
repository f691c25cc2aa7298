"""Preflight's facts about an adopted env (envmgr/envs/adopted.py): which one a job runs in (--env, else the
config's adopted_envs entry for its runtime) and what it holds now, as rules.EnvFacts, so that the same env
rules judge it as a managed env. The env's own pip lists its distributions (pip-api); nothing is written."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

from envmgr.errors import UsageError
from envmgr.preflight import rules
from registry.errors import StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.envs.adopted import AdoptedEnv, Fingerprint
    from registry.view import ModelView


def chosen_env(name: Optional[str], runtime: Optional[str], config: MachineConfig) -> Optional[AdoptedEnv]:
    """The adopted env `--env NAME` names (checked against --runtime), else None."""
    if not name:
        return None
    from envmgr.envs.adopted import AdoptedStore

    env = AdoptedStore(config.state_dir).get(name)
    if runtime and runtime != env.runtime:
        raise UsageError(f"the adopted env {name} is for {env.runtime}, not {runtime}",
                         hint=f"drop --runtime, or adopt the env for {runtime} under another name")
    return env


def default_env(runtime: str, config: MachineConfig) -> Optional[AdoptedEnv]:
    """The config's adopted env for `runtime` (adopted_envs = ["RUNTIME=NAME"]), if any."""
    from envmgr.envs.adopted import AdoptedStore, default_for

    name = default_for(runtime, config.adopted_envs)
    if name is None:
        return None
    try:
        return AdoptedStore(config.state_dir).get(name)
    except StemSepError as err:
        raise UsageError(f"the config's adopted_envs names {name!r} for {runtime}, and no env is adopted under "
                         "that name", why=err.why, hint="adopt it (`stemsep env adopt`) or change adopted_envs "
                         f"({config.sources.get('adopted_envs', 'default')})") from err


def _backend(torch: Optional[str]) -> str:
    """The build torch's local version label names (+cu128, +rocm6.3, +cpu); auto when it names none."""
    local = torch.partition("+")[2] if torch else ""
    return local if local.startswith(("cu", "rocm", "cpu")) else "auto"


def adopted_env_facts(entry: ModelView, runtime: str, adopted: AdoptedEnv, config: MachineConfig,
                      companions: list[str], now: Optional[Fingerprint] = None) -> rules.EnvFacts:
    """The adopted env as it is now (`now`: its fingerprint taken already, else taken here), against the model's
    env request (runtime library, base libraries, torch range, the model's pip packages). The machine's overrides
    are for managed envs and do not apply. `companions`: the torch companions the model's architecture imports
    on this runtime."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from envmgr.envs.adopted import inspect
    from envmgr.envs.request import request_for_model
    from envmgr.envs.torch_variant import detect_nvidia

    machine: dict[str, Any] = {"nvidia": detect_nvidia(), "rocm": os.path.exists("/dev/kfd")}
    try:
        req = request_for_model(entry, runtime, config)
    except StemSepError as err:
        return rules.EnvFacts("invalid", env_id=adopted.id, error=err, problem=err.message, **machine)
    base = dict(env_id=adopted.id, path=str(adopted.prefix), python_spec=req.python, torch_spec=req.torch, **machine)
    record = {"name": adopted.name, "python": str(adopted.python), "adopted_fingerprint":
              adopted.fingerprint.digest}
    if now is None:
        try:
            now, _ = inspect(adopted.python)
        except StemSepError as err:
            return rules.EnvFacts("unknown", error=err, problem=err.message,
                                  adopted={**record, "fingerprint": None, "changes": []}, **base)
    dists = now.distributions
    pip = tuple(rules.PipFacts(r, dists.get(canonicalize_name(Requirement(r).name)), "env")
                for r in req.requirements if r != req.torch)
    torch = dists.get("torch") if req.torch else None
    found: dict[str, Any] = {name: dists.get(name) for name in companions} if req.torch else {}
    return rules.EnvFacts(
        "adopted", python=now.python, python_seen_in="env", torch=torch, torch_seen_in="env" if torch else None,
        torch_backend=_backend(torch), pip=pip, **found,
        adopted={**record, "fingerprint": now.digest, "changes": now.changes_since(adopted.fingerprint)}, **base)

