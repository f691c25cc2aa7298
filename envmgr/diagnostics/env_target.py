"""Which managed env `stemsep env run/shell ENV_OR_MODEL` means, and its environment for a person's command.

ENV_OR_MODEL is, in this order: an env id (exactly), a model id (the env that model runs in on its preferred
runtime, or on `--runtime`), a unique env id prefix (as `env show` takes). A model's env is used only when it
is ready; `build` builds (or repairs) it first, else the error names the command that does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envmgr.errors import UnknownEnvError, UsageError
from registry.errors import ExitCode, StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.envs.builder import Progress
    from envmgr.envs.manager import EnvManager
    from registry.loader import Registry


class EnvNotBuiltError(StemSepError):
    """A model's env is not built (or is broken) and the command was not asked to build it."""

    exit_code = ExitCode.ENV_BUILD
    code = "E_ENV_NOT_BUILT"


@dataclass(frozen=True)
class TargetEnv:
    id: str
    path: Path
    python: Path
    problem: str | None  # None: ready; else why the store does not count it ready (it may still run)
    model: str | None = None  # the model id it was chosen for, when one was given


def find_target(name: str, config: MachineConfig, *, runtime: str | None = None, build: bool = False,
                progress: Progress | None = None) -> TargetEnv:
    from envmgr.envs.manager import EnvManager

    manager = EnvManager(config)
    matches = manager.store.find(name)
    if name in matches:
        return _stored(manager, name, runtime)
    from envmgr.catalog.registry_files import load

    registry = load()
    if name in registry:
        return _model_env(manager, registry, name, runtime, build, progress)
    if len(matches) == 1:
        return _stored(manager, matches[0], runtime)
    if matches:
        raise UnknownEnvError(f"env id prefix {name!r} is ambiguous", why=f"it matches {', '.join(matches)}",
                              hint="give more characters of the id")
    known = [r.id for r in manager.store.records()]
    nearest = registry.nearest(name)
    raise UnknownEnvError(f"no env or model {name!r}",
                          why=f"no env id in {config.env_store} starts with it (envs: "
                          f"{', '.join(known) if known else 'none'}) and no model has this id"
                          + (f" (nearest model ids: {', '.join(nearest)})" if nearest else ""),
                          hint="`stemsep env list` shows env ids; `stemsep models list` shows model ids")


def _stored(manager: EnvManager, env_id: str, runtime: str | None) -> TargetEnv:
    """An env named by its id: used even when the store counts it broken (debugging one is the point), as long
    as its interpreter is there to run."""
    from envmgr.envs.health import env_python, quick_check

    if runtime:
        raise UsageError(f"--runtime {runtime} was given with the env id {env_id}",
                         why="an env id names one env already; --runtime chooses the env of a model id",
                         hint=f"drop --runtime, or name a model instead of {env_id}")
    path = manager.store.env_dir(env_id)
    unusable = quick_check(path)
    if unusable:
        raise EnvNotBuiltError(f"env {env_id} cannot run commands", why=unusable,
                               hint=f"remove it (`stemsep env rm {env_id}`) and rebuild it with `stemsep setup MODEL`, "
                               "or run `stemsep env run MODEL --build -- CMD`")
    return TargetEnv(env_id, path, env_python(path), manager.store.problem(env_id))


def _model_env(manager: EnvManager, registry: Registry, model_id: str, runtime: str | None, build: bool,
               progress: Progress | None) -> TargetEnv:
    from envmgr.envs.health import env_python
    from envmgr.envs.request import request_for_model
    from registry.routing import choose_runtime

    entry = registry.view(model_id)
    chosen = choose_runtime(entry, runtime).runtime
    req = request_for_model(entry, chosen, manager.config)
    env_id = manager.env_id(req)  # resolves when no lock is cached; an unresolvable request raises its own error
    problem = manager.store.problem(env_id)
    if problem is not None and not build:
        flag = f" --runtime {runtime}" if runtime else ""
        never = problem == "not built"
        raise EnvNotBuiltError(f"the {chosen} env of model {model_id} ({env_id}) is "
                               f"{'not built' if never else 'broken'}",
                               why="it was never built on this machine, or was removed" if never else problem,
                               hint=f"add --build (`stemsep env run {model_id}{flag} --build -- CMD`) or build it "
                               f"first with `stemsep setup {model_id}{flag}`")
    if problem is not None:
        env = manager.ensure(req, progress=progress)
        manager.store.add_models(env.id, [model_id])
        env_id = env.id
    path = manager.store.env_dir(env_id)
    return TargetEnv(env_id, path, env_python(path), None, model=model_id)
