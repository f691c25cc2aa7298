"""The StemSep app's job fields (`overlap`, `segmentSize`, `device`, `stems`, `ensembleConfig` ...) read into our
job options, or refused by name: a field this server cannot honour is never dropped silently (docs/serve.md has
the table). `run_selection_job` sends them camelCase, `separation_preflight` snake_case; both are read.

Settings keep the app's meaning and name it (`setting_meanings`); registry.settings translates them into each
runtime's native meaning at preflight, as it translates the registry's recommendations:
- `overlap`: a ratio in [0, 1); 2-50 is a divisor (the app's backend keeps that range as UVR's MDX overlap);
  other values in [1, 100) a percentage. A value none of these is passed as a ratio, which the settings check
  refuses (E_SETTINGS).
- `segmentSize`: samples (the app's backend defaults to 352800, 8 s at 44.1 kHz).
- `batchSize`: chunks per batch (every runtime's meaning); `shifts` (0: unset) and `tta` (false: unset) where the
  runtime has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from envmgr.serve.spec import FORMATS
from envmgr.serve.stdio_catalog import AppError

if TYPE_CHECKING:
    from envmgr.preflight.options import JobOptions
    from envmgr.preflight.rules.codes import Finding

UNSUPPORTED = "E_APP_FIELD_UNSUPPORTED"
_OVERLAP_HINT = ("send overlap as a ratio in [0, 1) (0.25: a quarter of each chunk overlaps), a percentage, or a "
                 "divisor 2-50; or leave it out for the model's recommendation")
# our setting -> the app's field (camelCase as run_selection_job sends it, snake_case as preflight does)
SETTING_FIELDS = {"overlap": ("overlap", "overlap"), "segment_size": ("segmentSize", "segment_size"),
                  "batch_size": ("batchSize", "batch_size"), "shifts": ("shifts", "shifts"), "tta": ("tta", "tta")}
# fields the app may send that ask for more than a plain model or recipe run: each is accepted only when neutral
_FEATURES: dict[tuple[str, ...], str] = {
    ("ensembleConfig", "ensemble_config"): "an ensemble runs as a recipe with an ensemble step: choose the recipe "
                                           "(get_recipes), or one model",
    ("postProcessingSteps", "post_processing_steps"): "post-processing runs as a recipe step (phase_fix, invert ...): "
                                                      "choose a recipe that has it",
    ("workflow",): "workflows are not run here: choose a recipe (get_recipes)",
    ("pipelineConfig", "pipeline_config"): "pipelines are not run here: choose a recipe (get_recipes)",
    ("phaseParams", "phase_params"): "Phase Fix runs as a recipe step: choose a recipe that has it",
    ("volumeCompensation", "volume_compensation"): "volume compensation is an ensemble option: leave it off",
    ("invert",): "inversion runs as a recipe step (invert): choose a recipe that has it",
    ("splitFreq", "split_freq"): "band splitting runs as a recipe step (band_split): choose a recipe that has it",
}


@dataclass(frozen=True)
class AppFields:
    """What the app asked of a job, in our terms; `refused` lists what cannot be honoured (one line each)."""

    settings: dict[str, Any] = field(default_factory=dict)
    meanings: dict[str, str] = field(default_factory=dict)
    env: Optional[str] = None
    output_format: str = "wav"
    refused: list[AppError] = field(default_factory=list)

    def options(self, base: JobOptions | None = None) -> JobOptions:
        from dataclasses import replace

        from envmgr.preflight.options import JobOptions

        return replace(base or JobOptions(), settings=self.settings, setting_meanings=self.meanings, env=self.env)

    def spec_options(self) -> dict[str, Any]:
        """The job spec's `options` (envmgr/serve/spec.py): only what the app set."""
        out: dict[str, Any] = {}
        if self.settings:
            out.update(settings=self.settings, setting_meanings=self.meanings)
        if self.env:
            out["env"] = self.env
        return out


def read_fields(payload: dict[str, Any], *, model_stems: Optional[list[str]], is_recipe: bool,
                server_gpus: list[int]) -> AppFields:
    """The app's fields as our options; `model_stems`: the selected model's stems (None for a recipe)."""
    refused: list[AppError] = []
    settings: dict[str, Any] = {}
    meanings: dict[str, str] = {}
    for setting, names in SETTING_FIELDS.items():
        value = _pick(payload, *names)
        if value is None or (setting == "shifts" and value == 0) or (setting == "tta" and value is False):
            continue  # unset, or the app's neutral default
        if is_recipe:
            refused.append(_refuse(names[0], value, "a recipe's steps carry their own settings",
                                   f"leave {names[0]} out, or set it in the recipe's step (docs/recipes.md)"))
            continue
        if setting == "overlap":
            value, meanings["overlap"] = _overlap(value)
        elif setting == "segment_size":
            meanings["segment_size"] = "samples"
        settings[setting] = value
    device = _pick(payload, "device")
    if device is not None:
        problem = _device(str(device).strip().lower(), server_gpus)
        if problem:
            refused.append(_refuse("device", device, *problem))
    stems = _pick(payload, "stems")
    if stems:
        if is_recipe or not isinstance(stems, list) or model_stems is None or set(stems) != set(model_stems):
            writes = "the recipe's outputs" if is_recipe else f"every stem of the model ({', '.join(model_stems or [])})"
            refused.append(_refuse("stems", stems, f"a job writes {writes}; choosing stems is not supported",
                                   "leave stems out (or list all of them) and use the files you need"))
    for feature, hint in _FEATURES.items():
        value = _pick(payload, *feature)
        if _neutral(feature[0], value):
            continue
        refused.append(_refuse(feature[0], value, "this server does not run it as part of a model job", hint))
    fmt = str(_pick(payload, "outputFormat", "output_format") or "wav").lower()
    if fmt not in FORMATS:
        refused.append(AppError("INVALID", f"outputFormat {fmt!r} is not supported", code="E_JOB_SPEC",
                                hint=f"use one of: {', '.join(FORMATS)}"))
    env = _pick(payload, "env")
    if env is not None and not isinstance(env, str):
        refused.append(AppError("INVALID", "env must be the name of an adopted env", code="E_JOB_SPEC",
                                hint="`stemsep env list` shows the adopted envs"))
        env = None
    return AppFields(settings, meanings, env, fmt, refused)


def setting_refusals(findings: list[Finding], fields: AppFields) -> list[AppError]:
    """Our settings check's verdict on the app's settings: a bad value is START_FAILED with our code
    (E_SETTINGS, E_SETTING_RANGE); a setting the model's runtime has no parameter for is refused by name."""
    out = []
    for finding in findings:
        # E_SETTINGS (a value that is no valid overlap) names no subject; its message starts with the setting
        subject = finding.subject or next((s for s in fields.settings if finding.message.startswith(s)), None)
        if finding.code == "W_SETTING_IGNORED" and subject in fields.settings:
            app_field = SETTING_FIELDS[subject][0]
            out.append(_refuse(app_field, fields.settings[subject], finding.why or finding.message,
                               f"leave {app_field} out for this model"))
        elif finding.severity == "error":
            named = f"{SETTING_FIELDS[subject][0]}: " if subject in SETTING_FIELDS else ""
            why = f" ({finding.why})" if finding.why else ""
            hint = _OVERLAP_HINT if subject == "overlap" else finding.hint
            out.append(AppError("START_FAILED", f"{named}{finding.message}{why}", code=finding.code, hint=hint))
    return out


def check_settings(registry: Any, model_id: str, runtime: Optional[str], fields: AppFields, config: Any) -> None:
    """At submission, the same settings check preflight makes (routing, then registry.settings): the app hears
    about a bad value now, not from a failed job."""
    if not fields.settings:
        return
    from envmgr.preflight import rules
    from envmgr.preflight.adopted_env import chosen_env

    adopted = chosen_env(fields.env, runtime, config)
    entry = registry.view(model_id)
    resolution, _ = rules.route(entry, runtime or (adopted.runtime if adopted else None))
    if not resolution.runtime:
        return  # preflight at run time says why nothing can run it
    _, findings = rules.resolve_job_settings(entry, resolution.runtime, fields.settings, fields.meanings)
    refusals = setting_refusals(findings, fields)
    if refusals:
        raise refusals[0]


def _overlap(value: Any) -> tuple[Any, str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or 0 <= value < 1:
        return value, "ratio"
    if 2 <= value <= 50:
        return int(value) if float(value).is_integer() else value, "divisor"
    if 1 <= value < 100:
        return round(value / 100, 6), "ratio"  # a percentage
    return value, "ratio"


def _device(device: str, gpus: list[int]) -> Optional[tuple[str, str]]:
    """None when the server runs the job on that device anyway; else (why, what to do)."""
    if device in ("", "auto"):
        return None
    if device == "cpu":
        return None if not gpus else ("this server runs every job on its GPU slots",
                                      "leave device unset, or start stemsep serve with CUDA_VISIBLE_DEVICES= "
                                      "(empty) to run on the CPU")
    if device in ("cuda", "gpu") or device.startswith("cuda:"):
        if not gpus:
            return "this server has no GPU", "leave device unset (auto) or choose cpu"
        index = device.partition(":")[2]
        if not index or [str(g) for g in gpus] == [index]:
            return None
        return (f"this server spreads jobs over its GPUs {', '.join(f'cuda:{g}' for g in gpus)} itself",
                "leave device unset, or start stemsep serve with CUDA_VISIBLE_DEVICES set to that GPU")
    return "this server runs jobs on cpu or cuda only", "leave device unset (auto)"


def _neutral(name: str, value: Any) -> bool:
    if value in (None, False, "", [], {}):
        return True
    if isinstance(value, dict):  # {enabled: false}, or an ensemble without models
        return value.get("enabled") is False or (name == "ensembleConfig" and not value.get("models"))
    return False


def _refuse(app_field: str, value: Any, why: str, hint: str) -> AppError:
    return AppError("INVALID", f"{app_field} {_short(value)} cannot be honoured: {why}", code=UNSUPPORTED, hint=hint)


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _pick(payload: dict[str, Any], *names: str) -> Any:
    return next((payload[n] for n in names if payload.get(n) is not None), None)
