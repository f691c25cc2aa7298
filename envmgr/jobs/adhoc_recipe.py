"""The recipe `separate`'s shorthands stand for: `-m A -m B --ensemble ALG [--weights 2,1]`, `--phase-fix-ref MODEL
[--phase-fix-low-hz/-high-hz/-weight]`, `--then MODEL:STEM`. It then runs as any recipe does (recipe_run.py).

Built in this order: one `separate` step per -m model; with --ensemble, one ensemble step per stem every model
makes (an ensemble combines one stem of several models); with --phase-fix-ref, the reference model on the mix
and a phase_fix step with the current instrumental as target and the reference's instrumental as donor; each
--then runs MODEL on the current STEM, whose outputs become `<STEM>-<the model's stem>`. Outputs: the stems
as they stand at the end. The recipe's id names the models (and the algorithm), so output files say what made
them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from envmgr.errors import UsageError


@dataclass(frozen=True)
class Shorthands:
    models: Sequence[str]
    ensemble: Optional[str] = None
    weights: Optional[list[float]] = None
    phase_fix_ref: Optional[str] = None
    phase_fix_params: Optional[dict[str, float]] = None  # low_hz, high_hz, weight (only those given)
    then: Sequence[str] = ()  # "MODEL:STEM"

    @property
    def used(self) -> bool:
        return bool(self.ensemble or self.phase_fix_ref or self.then)


def _step_id(model_id: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9_]", "_", model_id.lower())
    base = base if base[:1].isalpha() else f"m_{base}"
    step, n = base[:60], 2
    while step in taken or step == "mix":
        step, n = f"{base[:56]}_{n}", n + 1
    taken.add(step)
    return step


def adhoc_recipe(wanted: Shorthands, stems_of: Callable[[str], Sequence[str]]) -> Any:
    """The typed Recipe; `stems_of(model id)`: the model's declared stems (raises for an unknown model)."""
    from pydantic import ValidationError

    from registry.recipes.model import Recipe

    if not wanted.models:
        raise UsageError("the ensemble, Phase Fix and --then shorthands need at least one -m MODEL")
    if len(wanted.models) > 1 and not wanted.ensemble:
        raise UsageError(f"{len(wanted.models)} models with --phase-fix-ref or --then, but no --ensemble",
                         hint="add --ensemble ALG to combine them first, or give one -m")
    if wanted.ensemble and len(wanted.models) < 2:
        raise UsageError("--ensemble needs two or more -m models", hint="give -m A -m B")
    taken: set[str] = set()
    steps: list[dict[str, Any]] = []
    made: dict[str, list[str]] = {}
    for model in wanted.models:
        sid = _step_id(model, taken)
        steps.append({"id": sid, "op": "separate", "inputs": ["mix"], "params": {"model": model}})
        made[sid] = list(stems_of(model))
    if wanted.ensemble:
        common = [s for s in made[steps[0]["id"]] if all(s in stems for stems in made.values())]
        if not common:
            raise UsageError("the models share no stem to ensemble",
                             why="; ".join(f"{s['params']['model']}: {', '.join(made[s['id']])}" for s in steps),
                             hint="ensemble models that make the same stems")
        current = {}
        for stem in common:
            sid = _step_id(f"ensemble_{stem}", taken)
            params: dict[str, Any] = {"algorithm": wanted.ensemble}
            if wanted.weights is not None:
                params["weights"] = wanted.weights
            steps.append({"id": sid, "op": "ensemble", "inputs": [f"{s['id']}.{stem}" for s in steps
                                                                  if s["op"] == "separate"], "params": params})
            current[stem] = f"{sid}.{stem}"
    else:
        current = {stem: f"{steps[0]['id']}.{stem}" for stem in made[steps[0]["id"]]}
    if wanted.phase_fix_ref:
        ref = _step_id(f"ref_{wanted.phase_fix_ref}", taken)
        ref_stems = list(stems_of(wanted.phase_fix_ref))
        if "instrumental" not in current or "instrumental" not in ref_stems:
            raise UsageError("Phase Fix swaps the phase of an instrumental, but there is none on one side",
                             why=f"target stems: {', '.join(current)}; {wanted.phase_fix_ref} makes "
                             f"{', '.join(ref_stems)}", hint="use models that make an `instrumental` stem, or "
                             "write a recipe naming the stems (docs/recipes.md)")
        steps.append({"id": ref, "op": "separate", "inputs": ["mix"], "params": {"model": wanted.phase_fix_ref}})
        fix = _step_id("phase_fix", taken)
        steps.append({"id": fix, "op": "phase_fix", "inputs": [current["instrumental"], f"{ref}.instrumental"],
                      "params": dict(wanted.phase_fix_params or {})})
        current["instrumental"] = f"{fix}.instrumental"
    for spec in wanted.then:
        model, sep, stem = spec.rpartition(":")
        if not sep or not model or stem not in current:
            raise UsageError(f"--then {spec!r}: give MODEL:STEM with STEM one of {', '.join(current)}")
        sid = _step_id(model, taken)
        steps.append({"id": sid, "op": "separate", "inputs": [current.pop(stem)], "params": {"model": model}})
        for made_stem in stems_of(model):
            current[f"{stem}-{made_stem}"] = f"{sid}.{made_stem}"
    name = "_".join(wanted.models) + (f"_{wanted.ensemble}" if wanted.ensemble else "") + \
        ("_phasefix" if wanted.phase_fix_ref else "") + "".join(f"_then_{t.rpartition(':')[0]}" for t in wanted.then)
    recipe_id = re.sub(r"[^a-z0-9_.-]", "_", name.lower())[:100]
    try:
        return Recipe.model_validate({"id": recipe_id, "name": "separate shorthands", "steps": steps,
                                      "outputs": current})
    except ValidationError as exc:
        from registry.recipes.loader import schema_problems

        raise UsageError("these shorthands do not make a valid recipe", why="\n".join(schema_problems(exc)[:8]),
                         hint="write the recipe as a file and `stemsep run` it (docs/recipes.md)") from None
