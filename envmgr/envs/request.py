"""What goes into an env: an `EnvRequest`, built from a registry entry or a plain requirement list.

A leaf of the env stage: the lock and the builders read requests; nothing here resolves or builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from envmgr.config import MachineConfig, load_config
from envmgr.envs.interpreters import model_python_spec, python_range
from envmgr.envs.runtime_defs import RUNTIMES
from envmgr.envs.uvtool import Sources
from envmgr.errors import UnresolvableError
from registry.errors import ExitCode, StemSepError
from registry.settings import is_torch_requirement
from registry.view import pip_packages_for

if TYPE_CHECKING:
    from registry.view import ModelView

@dataclass(frozen=True)
class EnvRequest:
    """Everything that decides what goes into an env. Preflight shows it; `lock_inputs()` keys the lock."""

    runtime: str
    python: str  # PEP 440 specifier set the interpreter must satisfy
    requirements: tuple[str, ...]  # runtime library pin, base libs, torch spec, the model's packages
    torch: str | None  # the torch requirement, None when the env has no torch
    torch_backend: str  # cpu | cuXXX | rocmX.Y | xpu | auto | none
    overrides: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    # Not part of the lock key: why each override is there, and what to import for the health check.
    notes: tuple[str, ...] = field(default=(), compare=False)
    health_modules: tuple[str, ...] = field(default=(), compare=False)

    @property
    def sources(self) -> Sources:
        return Sources(self.index_url, self.extra_index_urls, self.find_links, self.torch_backend)

    def lock_inputs(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "python": self.python, "requirements": list(self.requirements),
                "torch_backend": self.torch_backend, "overrides": list(self.overrides),
                "constraints": list(self.constraints), "index_url": self.index_url,
                "extra_index_urls": list(self.extra_index_urls), "find_links": list(self.find_links)}

    def as_dict(self) -> dict[str, Any]:
        return {**self.lock_inputs(), "torch": self.torch, "notes": list(self.notes),
                "health_modules": list(self.health_modules)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EnvRequest":
        tuples = ("requirements", "overrides", "constraints", "extra_index_urls", "find_links", "notes",
                  "health_modules")
        fields: dict[str, Any] = {k: (tuple(v) if k in tuples else v) for k, v in data.items()
                                  if k in cls.__dataclass_fields__}
        return cls(**fields)


def version_spec(name: str, min_version: str | None, max_version: str | None) -> str:
    """`torch` + registry {min, max} -> a requirement; a two-part max ("2.5") allows every 2.5.x."""
    return name + model_python_spec(min_version, max_version)


def _higher(a: str | None, b: str | None) -> str | None:
    """The higher of two minimum versions (either may be absent)."""
    if a is None or b is None:
        return a or b
    return max(a, b, key=Version)


def request_for_model(entry: ModelView, runtime: str, config: MachineConfig | None = None) -> EnvRequest:
    """The env request for running registry `entry` (typed or frozen) on `runtime`."""
    config = config or load_config()
    rdef = RUNTIMES.get(runtime)
    if rdef is None:
        raise StemSepError(f"unknown runtime {runtime!r}", code="E_UNKNOWN_RUNTIME", exit_code=ExitCode.USAGE,
                           hint=f"canonical runtimes: {', '.join(RUNTIMES)}")
    reqs = entry.requirements
    model_id = getattr(entry, "id", "?")
    with_torch = rdef.needs_torch(reqs.torch.required)
    requirements: list[str] = []
    library = rdef.library_requirement(config.torch_backend, reqs.runtime_pins.get(runtime))
    if library:
        requirements.append(library)
    requirements += rdef.requires
    torch_spec = None
    if with_torch:
        torch_spec = version_spec("torch", _higher(reqs.torch.min, rdef.torch_floor), reqs.torch.max)
        requirements.append(torch_spec)
        requirements += rdef.torch_requires
    for text in pip_packages_for(entry, runtime):  # scoped to the runtimes whose code imports them
        from packaging.requirements import InvalidRequirement, Requirement  # here: most models pin nothing

        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise StemSepError(f"model {model_id}: bad pip requirement {text!r}", why=str(exc),
                               hint="fix requirements.pip.packages in the registry (PEP 508)",
                               code="E_REGISTRY_INVALID", exit_code=ExitCode.INVALID) from exc
        if text not in requirements:
            requirements.append(text)

    overrides = list(config.overrides)
    notes = [f"machine override: {o}" for o in config.overrides]
    machine_torch = [o for o in config.overrides if is_torch_requirement(o)]
    if torch_spec is not None and machine_torch and torch_spec != "torch":  # not None: with_torch
        _check_torch_pin(model_id, machine_torch[0], torch_spec)
    if torch_spec is not None and rdef.torch_cap_lifted and not machine_torch:
        # Replaces the library's own torch cap; keeps the model's range.
        cap_free = torch_spec if torch_spec != "torch" else "torch>=2.0.1"
        overrides.append(cap_free)
        notes.append(f"runtime override: {cap_free} ({rdef.torch_cap_lifted})")
    elif torch_spec is not None and rdef.torch_cap_lifted:
        notes.append(f"runtime: {rdef.torch_cap_lifted}; the machine override {machine_torch[0]} applies")

    python = python_range(rdef.python, model_python_spec(reqs.python.min, reqs.python.max))
    return EnvRequest(
        runtime=runtime, python=str(python), requirements=tuple(requirements), torch=torch_spec,
        torch_backend=config.torch_backend, overrides=tuple(overrides), constraints=tuple(config.constraints),
        index_url=config.index_url, extra_index_urls=tuple(config.extra_index_urls),
        find_links=tuple(config.find_links), notes=tuple(notes),
        health_modules=rdef.health_imports(with_torch, library),
    )


def request_for_requirements(requirements: list[str] | tuple[str, ...], *, runtime: str = "custom",
                             python: str | None = None, config: MachineConfig | None = None) -> EnvRequest:
    """An env request for a plain requirement list (tests, tools), with the machine config applied.

    `python` is a version ("3.11") or a specifier set; default: any Python the host would accept.
    """
    config = config or load_config()
    torch = next((r for r in requirements if is_torch_requirement(r)), None)
    if python and python[0].isdigit():
        python = f"=={python}.*" if python.count(".") < 2 else f"=={python}"
    return EnvRequest(
        runtime=runtime, python=python or ">=3.10", requirements=tuple(requirements), torch=torch,
        torch_backend=config.torch_backend, overrides=tuple(config.overrides),
        constraints=tuple(config.constraints), index_url=config.index_url,
        extra_index_urls=tuple(config.extra_index_urls), find_links=tuple(config.find_links),
        notes=tuple(f"machine override: {o}" for o in config.overrides),
    )


def request_for_ops(config: MachineConfig | None = None) -> EnvRequest:
    """The light env a recipe's audio operations (runtimes/ops) run in: stemsep-legacy without torch, numpy and
    soundfile only; the same lock inputs as the built-in DSP model's, so the same env."""
    from dataclasses import replace

    rdef = RUNTIMES["stemsep-legacy"]
    request = request_for_requirements(list(rdef.requires), runtime=rdef.id, python=rdef.python, config=config)
    return replace(request, health_modules=rdef.health_imports(False))


def _check_torch_pin(model_id: str, pin: str, torch_spec: str) -> None:
    from packaging.requirements import Requirement

    wanted = Requirement(torch_spec).specifier
    pinned = [s.version for s in Requirement(pin).specifier if s.operator in ("==", "===")]
    if pinned and not wanted.contains(pinned[0], prereleases=True):
        raise UnresolvableError(
            f"model {model_id} needs {torch_spec}, but the machine config forces {pin}",
            packages=["torch"], why="overrides replace every requirement on torch, so the model's range cannot hold",
            hint="change the torch override (STEMSEP_OVERRIDES / overrides) or run another model",
        )
