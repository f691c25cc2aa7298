"""Recipes for the preflight tests: test models that make a graph (a de-reverb model, a Phase Fix reference,
both run by the DSP worker), a valid base recipe and its faults, run through the real recipe preflight."""

from __future__ import annotations

from typing import Any

from tests.preflight.conftest import dsp, load_with

RECIPE_MODELS = [
    dsp("pf-dsp"),
    dsp("pf-dereverb", capabilities={"roles": ["dereverb"], "stems": ["noreverb", "reverb"]}),
    dsp("pf-ref", capabilities={"roles": ["separation", "phase_fix_reference"]},
        phase_fix={"is_valid_reference": True,
                   "recommended_params": {"lowHz": 400, "highHz": 4000, "highFreqWeight": 1.5}}),
]


def sep(step_id: str, model: str, source: str = "mix", **params: Any) -> dict[str, Any]:
    return {"id": step_id, "op": "separate", "inputs": [source], "params": {"model": model, **params}}


def base_steps() -> list[dict[str, Any]]:
    """Two models, an ensemble of their vocals, the first's instrumental phase-fixed with the reference's."""
    return [sep("a", "pf-dsp"), sep("b", "pf-ref"),
            {"id": "ens", "op": "ensemble", "inputs": ["a.vocals", "b.vocals"], "params": {"algorithm": "max_fft"}},
            {"id": "fix", "op": "phase_fix", "inputs": ["a.instrumental", "b.instrumental"]}]


BASE_OUTPUTS = {"vocals": "ens.vocals", "instrumental": "fix.instrumental"}


def make_recipe(steps: list[dict[str, Any]] | None = None, outputs: dict[str, str] | None = None) -> Any:
    from registry.recipes.model import Recipe

    return Recipe.model_validate({"id": "pf_recipe", "steps": base_steps() if steps is None else steps,
                                  "outputs": BASE_OUTPUTS if outputs is None else outputs})


def recipe_preflight(t: Any, steps: list[dict[str, Any]] | None = None, outputs: dict[str, str] | None = None,
                     **options: Any) -> Any:
    """The recipe preflight of `steps` on t's song, with the recipe test models in the registry."""
    from envmgr.preflight.options import JobOptions
    from envmgr.preflight.recipe import run_recipe_preflight

    return run_recipe_preflight(make_recipe(steps, outputs), [t.song], JobOptions(**options), config=t.config,
                                registry=load_with(t.tmp, *RECIPE_MODELS))


def recipe_codes(t: Any, steps: list[dict[str, Any]] | None = None, outputs: dict[str, str] | None = None,
                 **options: Any) -> set[str]:
    report = recipe_preflight(t, steps, outputs, **options).report
    return {e["code"] for e in report["errors"] + report["warnings"]}


def with_step(step: dict[str, Any]) -> list[dict[str, Any]]:
    return base_steps() + [step]


def replaced(step_id: str, step: dict[str, Any]) -> list[dict[str, Any]]:
    return [step if s["id"] == step_id else s for s in base_steps()]


def channel_codes(mono_model: bool) -> set[str]:
    """Channel counts through a graph on a stereo input: a mono Mel-Roformer on msst (which averages the two
    channels) ensembled with a stereo model's stem, and a stereo-only model on stemsep-legacy (which does not
    upmix) fed the mono stem."""
    from envmgr.preflight.rules import AudioFacts
    from envmgr.preflight.rules.recipe_graph import check_channel_flow
    from registry.model import ModelEntry
    from registry.recipes.graph import run_order

    def roformer(model_id: str, **caps: Any) -> Any:
        return ModelEntry.model_validate({"id": model_id, "architecture": "Mel-Roformer", "capabilities": {
            "stems": ["vocals", "instrumental"], "supports_mono": True, "supports_stereo": True, **caps}})

    mono = roformer("mono", supports_stereo=not mono_model)
    stereo_only = roformer("stereo-only", supports_mono=False)
    recipe = make_recipe([sep("m", "mono"), sep("s", "stereo-only"), sep("after", "stereo-only", "m.vocals"),
                          {"id": "ens", "op": "ensemble", "inputs": ["m.vocals", "s.vocals"]}],
                         {"vocals": "ens.vocals", "again": "after.vocals"})
    runs = {"m": (mono, "msst"), "s": (stereo_only, "stemsep-legacy"), "after": (stereo_only, "stemsep-legacy")}
    found = check_channel_flow(recipe, run_order(recipe), runs, AudioFacts("/song.wav", channels=2))
    return {f.code for f in found}
