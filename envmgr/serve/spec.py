"""What a client asks the server to run: a job spec, checked once for both front ends (HTTP and stdio).

A spec is plain JSON, stored as given (after checking) in the queue:

    {"kind": "separate", "inputs": ["/abs/song.flac"], "models": ["model-id", ...] (empty: the default model),
     "runtime": null, "output_dir": null (a fresh dir under the first allowed output dir), "format": "wav",
     "options": {JobOptions fields: enforcement, dev_override, confirm_manual_steps, allow_unsafe_pickle,
                 require_hashes, download, settings, setting_meanings (e.g. {"overlap": "ratio"}: settings given
                 in another meaning than the runtime's native one), env (an adopted env's name, as `--env NAME`)}}
    {"kind": "recipe", "recipe": "recipe-id", "inputs": [...], ...}   run as `stemsep run` runs it

Checking here is about shape only; whether the paths are allowed is `paths.PathPolicy`'s job and whether
the job can run is preflight's, at run time (its report becomes the job's first event).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from envmgr.preflight.options import JobOptions
from registry.errors import ExitCode, StemSepError

KINDS = ("separate", "recipe")
FORMATS = ("wav", "flac")  # envmgr.jobs.separate.FORMATS; kept here so the spec imports nothing heavy
_OPTION_FIELDS = {f.name: f for f in fields(JobOptions)}
_MAX_INPUTS = 1000


class SpecError(StemSepError):
    """A job spec a client sent is malformed: nothing was queued."""

    exit_code = ExitCode.USAGE
    code = "E_JOB_SPEC"


@dataclass(frozen=True)
class JobSpec:
    kind: str
    inputs: tuple[str, ...]
    models: tuple[str, ...] = ()
    recipe: str | None = None
    runtime: str | None = None
    output_dir: str | None = None
    format: str = "wav"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        """Jobs with the same group load the same models into the same workers: the scheduler runs them
        back to back where fairness allows."""
        what = self.recipe if self.kind == "recipe" else ",".join(self.models) or "<default>"
        env = self.options.get("env")  # an adopted env runs other workers than the managed one
        return f"{self.kind}:{what}:{self.runtime or ''}" + (f":env={env}" if env else "")

    def job_options(self) -> JobOptions:
        return JobOptions(**dict(self.options))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["inputs"], out["models"], out["options"] = list(self.inputs), list(self.models), dict(self.options)
        return out


def parse_spec(raw: Any) -> JobSpec:
    """A checked JobSpec from a client's JSON object; SpecError naming the first problem otherwise."""
    if not isinstance(raw, Mapping):
        raise SpecError("a job spec must be a JSON object", hint='send {"kind": "separate", "inputs": [...]}')
    known = {f.name for f in fields(JobSpec)}
    unknown = sorted(set(raw) - known - {"model"})
    if unknown:
        raise SpecError(f"unknown job spec field(s): {', '.join(unknown)}", hint=f"known fields: {', '.join(sorted(known))}")
    kind = raw.get("kind", "separate")
    if kind not in KINDS:
        raise SpecError(f"unknown job kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
    inputs = _strings(raw.get("inputs"), "inputs")
    if not inputs:
        raise SpecError("a job needs at least one input", hint='give "inputs": ["/path/to/song.flac"]')
    if len(inputs) > _MAX_INPUTS:
        raise SpecError(f"{len(inputs)} inputs in one job; at most {_MAX_INPUTS}", hint="submit several jobs")
    models = _strings(raw.get("models", [raw["model"]] if raw.get("model") else []), "models")
    recipe = _optional_string(raw, "recipe")
    if kind == "recipe" and (not recipe or models):
        raise SpecError("a recipe job names one recipe and no models", hint='give "recipe": "<recipe id>"')
    if kind == "separate" and recipe:
        raise SpecError("a separate job names models, not a recipe", hint='use "kind": "recipe" to run a recipe')
    fmt = raw.get("format", "wav")
    if fmt not in FORMATS:
        raise SpecError(f"unknown output format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
    return JobSpec(kind=kind, inputs=tuple(inputs), models=tuple(dict.fromkeys(models)), recipe=recipe,
                   runtime=_optional_string(raw, "runtime"), output_dir=_optional_string(raw, "output_dir"),
                   format=fmt, options=_options(raw.get("options") or {}))


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SpecError(f'"{name}" must be a list of non-empty strings', hint=f'e.g. "{name}": ["..."]')
    return list(value)


def _optional_string(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise SpecError(f'"{name}" must be a non-empty string or null')
    return value


def _options(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise SpecError('"options" must be a JSON object')
    unknown = sorted(set(raw) - set(_OPTION_FIELDS))
    if unknown:
        raise SpecError(f"unknown job option(s): {', '.join(unknown)}", hint=f"known options: {', '.join(_OPTION_FIELDS)}")
    for name, value in raw.items():
        if name == "settings":
            if not isinstance(value, Mapping):
                raise SpecError('option "settings" must be a JSON object of setting overrides')
        elif name == "enforcement":
            if value is not None and value not in ("strict", "soft", "report"):
                raise SpecError(f"unknown enforcement {value!r}", hint="use strict, soft or report")
        elif name == "setting_meanings":
            _check_meanings(value)
        elif name == "env":  # whether it is adopted (and for the runtime) is checked at submission
            if value is not None and (not isinstance(value, str) or not value):
                raise SpecError('option "env" must be the name of an adopted env or null',
                                hint="`stemsep env list` shows the adopted envs")
        elif not isinstance(value, bool):
            raise SpecError(f'option "{name}" must be true or false')
    return dict(raw)


def _check_meanings(value: Any) -> None:
    """`{"overlap": "ratio", "segment_size": "samples"}`: the meaning of a setting given in another one than the
    runtime's native one (registry.settings translates it)."""
    from registry.vocab import OVERLAP_MEANINGS, SEGMENT_UNITS

    known = {"overlap": [m for m in OVERLAP_MEANINGS if m != "none"], "segment_size": list(SEGMENT_UNITS)}
    if not isinstance(value, Mapping):
        raise SpecError('option "setting_meanings" must be a JSON object', hint='e.g. {"overlap": "ratio"}')
    for setting, meaning in value.items():
        if setting not in known or meaning not in known[setting]:
            raise SpecError(f'option "setting_meanings": {setting!r} cannot be given as {meaning!r}',
                            hint="; ".join(f"{k}: {', '.join(v)}" for k, v in known.items()))
