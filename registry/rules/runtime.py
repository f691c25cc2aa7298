"""Where a model may run (seed §3.1, §3.2): routing reads only these fields, so they must agree."""

from __future__ import annotations

from registry.capabilities import cannot_run, capable_runtimes
from registry.rules.base import Hit, ModelContext, model_rule, repeats
from registry.vocab import RUNTIME_IDS


@model_rule("runtime-allowed-nonempty", summary="runtime.allowed names at least one runtime", strict_only=True,
            hint="list the runtimes that can run the model in runtime.allowed; a model no runtime can run "
                 "needs runtime.catalog_only: true and a blocking_reason")
def allowed_nonempty(entry, ctx: ModelContext):
    rt = entry.runtime
    if not rt.allowed and not (rt.catalog_only and (rt.blocking_reason or "").strip()):
        yield Hit(("runtime", "allowed"), "no runtime is allowed, so the model can never run")


@model_rule("runtime-catalog-only-consistent", summary="catalog_only models allow no runtime",
            hint="drop runtime.catalog_only, or empty runtime.allowed")
def catalog_only_consistent(entry, ctx: ModelContext):
    if entry.runtime.catalog_only and entry.runtime.allowed:
        yield Hit(("runtime", "catalog_only"), "catalog_only is true but runtime.allowed lists "
                  + ", ".join(entry.runtime.allowed))


@model_rule("runtime-allowed-unique", summary="runtime.allowed lists each runtime once",
            hint="remove the repeated runtime from runtime.allowed")
def allowed_unique(entry, ctx: ModelContext):
    for i, rt in repeats(entry.runtime.allowed):
        yield Hit(("runtime", "allowed", i), f"{rt} is listed twice")


@model_rule("runtime-preferred-in-allowed", summary="runtime.preferred is one of runtime.allowed",
            hint="set runtime.preferred to one of runtime.allowed, or add it there")
def preferred_in_allowed(entry, ctx: ModelContext):
    rt = entry.runtime
    if rt.preferred is not None and rt.preferred not in rt.allowed:
        yield Hit(("runtime", "preferred"), f"preferred runtime {rt.preferred} is not in allowed "
                  f"{list(rt.allowed)}")


@model_rule("runtime-blocking-reason", summary="blocking_reason says why an excluded runtime cannot run the model",
            strict_only=True,
            hint="write runtime.blocking_reason in plain words, e.g. 'audio-separator: needs HyperACE model code'")
def blocking_reason(entry, ctx: ModelContext):
    excluded = [r for r in RUNTIME_IDS if r not in entry.runtime.allowed]
    if excluded and not (entry.runtime.blocking_reason or "").strip():
        yield Hit(("runtime", "blocking_reason"), f"{', '.join(excluded)} excluded without a reason")


def _flag_agrees(entry, flag: str, runtime: str):
    value = getattr(entry.compatibility, flag)
    allowed = runtime in entry.runtime.allowed
    if value is not None and value != allowed:
        state = "allowed" if allowed else "not allowed"
        yield Hit(("compatibility", flag), f"compatibility.{flag} is {str(value).lower()} but {runtime} is {state} "
                  "in runtime.allowed")


@model_rule("compatibility-audio-separator", summary="compatibility.audio_separator_compatible agrees with allowed",
            strict_only=True, hint="make compatibility.audio_separator_compatible match runtime.allowed")
def compat_audio_separator(entry, ctx: ModelContext):
    yield from _flag_agrees(entry, "audio_separator_compatible", "audio-separator")


@model_rule("compatibility-msst", summary="compatibility.msst_compatible agrees with allowed", strict_only=True,
            hint="make compatibility.msst_compatible match runtime.allowed")
def compat_msst(entry, ctx: ModelContext):
    yield from _flag_agrees(entry, "msst_compatible", "msst")


@model_rule("runtime-model-type", summary="models msst may run name their msst model_type", strict_only=True,
            hint="set runtime.model_type to the MSST model type (e.g. bs_roformer, mel_band_roformer, mdx23c)")
def msst_model_type(entry, ctx: ModelContext):
    if "msst" in entry.runtime.allowed and not (entry.runtime.model_type or "").strip():
        yield Hit(("runtime", "model_type"), "msst is allowed but no model_type says which model class to build")


@model_rule("runtime-capable", summary="every runtime in runtime.allowed can run the model (registry/capabilities.py)",
            strict_only=True,
            hint="remove the runtime from runtime.allowed and say why in blocking_reason, or allow one that can run it "
                 "(`stemsep models show` names them)")
def runtime_capable(entry, ctx: ModelContext):
    for i, runtime in enumerate(entry.runtime.allowed):
        reasons = cannot_run(entry, runtime)
        if reasons:
            able = [r for r in capable_runtimes(entry, RUNTIME_IDS) if r != runtime]
            yield Hit(("runtime", "allowed", i), "; ".join(reasons),
                      hint=f"remove {runtime} from runtime.allowed (say why in blocking_reason)"
                      + (f"; {', '.join(able)} can run it" if able else "; no runtime here can run it"))
