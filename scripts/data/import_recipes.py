#!/usr/bin/env python3
"""Convert StemSep's recipes into ours: `registry/recipes.json` and the report `registry/recipes-import-report.md`.

    python scripts/data/import_recipes.py [STEMSEP_RECIPES_JSON] [--out-dir registry] [--check]

STEMSEP_RECIPES_JSON defaults to ../shared/reference/stemsep/recipes.json (it lives outside the repo). Each
recipe either converts into a graph that `stemsep recipes validate` accepts, or is refused with every reason
found. Model ids are taken as they are: StemSep's ids are the registry's (registry/models.json lists no
aliases), so an id the registry lacks is refused, never guessed. Output is byte-identical for identical
inputs; `--check` writes nothing and exits 1 when either committed file differs.

How StemSep's forms become steps (the report repeats this, and says per recipe what was dropped):
- `single`: one `separate` step; its `output` list must name stems the model declares.
- `algorithm` average / max_spec / min_spec: one `separate` step per model on the mix, then one `ensemble`
  step per stem every model makes. StemSep's own blend (StemSepApp ensemble blender: `_average_blend`,
  `_max_spec_blend`, `_min_spec_blend`) gives the mapping: average = avg_wave (weights normalised, as ours);
  max_spec / min_spec = the bin of the largest / smallest magnitude over an STFT of 4096, hop 1024 = max_fft /
  min_fft with n_fft 4096, hop 1024. Weights mean something to `average` only: unequal weights on another
  algorithm are refused, equal ones dropped.
- `algorithm` phase_fix: model 1 is the target (magnitude), model 2 the reference (phase), on the recipe's
  target stem; `frequency_split`: the low band from the `low` model, the high band from the `high` one, at
  `algorithm_config.split_freq` (crossfade `crossfade_hz`, `fade_policy`; StemSep's code: 200 Hz, linear).
- steps with `step_name` / `input_source` (pipelines): one `separate` step each, reading the mix or the
  `<step>.<stem>` it names; a stem the model does not declare is refused (StemSep's `dereverb.vocals`).
  `action: phase_fix` adds a `separate` step for `source_model` and a `phase_fix` step; its `weight` is the
  high frequency weight, where a model step's `weight` is an ensemble weight.
- the recipe's outputs: the ensemble / phase-fix / band-split result, or the last step's stems (its `output`
  list when it has one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from envmgr.fsutil import sync_generated  # noqa: E402
from envmgr.preflight.recipe import check_recipe  # noqa: E402
from registry.loader import Registry, load_registry  # noqa: E402
from registry.recipes.model import SCHEMA_VERSION, Recipe  # noqa: E402

DEFAULT_SOURCE = REPO.parent / "shared" / "reference" / "stemsep" / "recipes.json"
DEFAULT_OUT_DIR = REPO / "registry"
RECIPES_NAME, REPORT_NAME = "recipes.json", "recipes-import-report.md"

# StemSep's recipe keys that describe the recipe for its app (surfaces, tiers, QA state, export and fallback
# policies) and not the graph: not carried, listed once in the report.
APP_METADATA = ("audio_quality_thresholds", "contraindications", "difficulty", "expected_runtime_tier",
                "expected_vram_tier", "export_policy", "fallback_policy", "family", "golden_set_id", "guide_rank",
                "guide_topics", "intermediate_outputs", "operating_profile", "promotion_status", "qa_status",
                "quality_goal", "quality_tradeoff", "recommended_for", "requires_qa_pass", "requires_verified_assets",
                "runtime_policy", "simple_goal", "simple_surface", "source", "surface", "surface_policy", "target",
                "type", "warning", "workflow_summary")
SPECTRAL = {"max_spec": "max_fft", "min_spec": "min_fft"}  # StemSep's torch STFT blends: n_fft 4096, hop 1024
STEMSEP_STFT = {"n_fft": 4096, "hop": 1024}
OUR_OPS = "ensemble, phase_fix, invert, band_split, high_pass"


class Refused(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass
class Draft:
    """A recipe being built: our steps, the StemSep step names they stand for, the notes."""

    registry: Registry
    steps: list[dict[str, Any]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # StemSep step name -> our step id
    notes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def stems(self, model: str) -> Optional[list[str]]:
        if model not in self.registry.models:
            return None
        return list(self.registry.view(model).capabilities.stems)

    def model(self, model: Any, where: str) -> Optional[str]:
        if not isinstance(model, str) or not model:
            self.reasons.append(f"{where} names no model")
            return None
        if model not in self.registry.models:
            self.reasons.append(f"{where}: model {model!r} is not in registry/models.json (no alias maps it)")
            return None
        return model

    def unique_id(self, wanted: str) -> str:
        base = re.sub(r"[^a-z0-9_]", "_", wanted.lower()).strip("_") or "step"
        base = base if base[0].isalpha() and base != "mix" else f"s_{base}"
        taken = {s["id"] for s in self.steps}
        out, n = base, 2
        while out in taken:
            out, n = f"{base}_{n}", n + 1
        return out

    def separate(self, model: str, source: str, name: str, runtime: Optional[str] = None) -> str:
        step_id = self.unique_id(name)
        params: dict[str, Any] = {"model": model}
        if runtime:
            params["runtime"] = runtime
        self.steps.append({"id": step_id, "op": "separate", "inputs": [source], "params": params})
        return step_id

    def op(self, op: str, name: str, inputs: list[str], params: dict[str, Any]) -> str:
        step_id = self.unique_id(name)
        self.steps.append({"id": step_id, "op": op, "inputs": inputs, **({"params": params} if params else {})})
        return step_id

    def step(self, step_id: str) -> dict[str, Any]:
        return next(s for s in self.steps if s["id"] == step_id)

    def makes(self, step_id: str) -> list[str]:
        step = self.step(step_id)
        if step["op"] == "separate":
            return self.stems(step["params"]["model"]) or []
        return ["rest"] if step["op"] == "invert" else [step["inputs"][0].rpartition(".")[2]]


def convert(raw: dict[str, Any], registry: Registry) -> tuple[dict[str, Any], list[str]]:
    """(our recipe, notes), or Refused with every reason."""
    draft = Draft(registry)
    steps = raw.get("steps") or []
    algorithm = raw.get("algorithm")
    if any("action" in s for s in steps) or any("input_source" in s or "step_name" in s for s in steps):
        outputs = _chain(raw, draft)
    elif algorithm:
        outputs = _ensemble(raw, draft, algorithm)
    elif len(steps) == 1:
        outputs = _single(raw, draft)
    else:
        draft.reasons.append(f"{len(steps)} model steps with no algorithm and no step names: how they combine "
                             "is not said")
        outputs = {}
    outputs = _post_processing(raw, draft, outputs)
    _defaults_note(raw, draft)
    if draft.reasons:
        raise Refused(draft.reasons + _graph_errors(draft, raw["id"], None))
    recipe = {"id": raw["id"], "name": raw.get("name", ""), "description": raw.get("description", ""),
              "source": f"StemSep recipes.json: {raw['id']}", "notes": draft.notes, "steps": draft.steps,
              "outputs": outputs}
    typed = Recipe.model_validate(recipe)
    check = check_recipe(typed, registry)
    errors = _graph_errors(draft, raw["id"], typed)
    if errors:
        raise Refused(errors)
    notes = draft.notes + [f"{f.code}: {f.message}" for _s, f in check.findings if f.severity == "warning"]
    return typed.model_dump(mode="json", exclude_none=True, exclude_defaults=True), notes


def _graph_errors(draft: Draft, recipe_id: str, typed: Optional[Recipe]) -> list[str]:
    """What validation finds wrong with the recipe. A refused draft holds the steps that could be built: they
    are checked too (every output read), so a refusal names every reason, not only the first kind."""
    if typed is None:
        if not draft.steps:
            return []
        refs = [f"{s['id']}.{stem}" for s in draft.steps for stem in draft.makes(s["id"])]
        if not refs:
            return []
        typed = Recipe.model_validate({"id": recipe_id, "steps": draft.steps,
                                       "outputs": {f"o{i}": r for i, r in enumerate(refs)}})
    check = check_recipe(typed, draft.registry)
    return [f"{f.code}: {f.message}" + (f" ({f.why})" if f.why else "") for _s, f in check.errors]


def _single(raw: dict[str, Any], draft: Draft) -> dict[str, str]:
    step = raw["steps"][0]
    model = draft.model(step.get("model_id"), "step 1")
    if model is None:
        return {}
    _weight_note(draft, [step], "a lone model is no ensemble")
    step_id = draft.separate(model, "mix", step.get("step_name") or "separate")
    return {stem: f"{step_id}.{stem}" for stem in _selected(draft, step, step_id, model)}


def _selected(draft: Draft, step: dict[str, Any], step_id: str, model: str) -> list[str]:
    """The stems a StemSep step's `output` list names (all the model's stems without one); a string `output`
    labels the step's result and selects nothing."""
    made = draft.stems(model) or []
    output = step.get("output")
    if isinstance(output, list):
        missing = [o for o in output if o not in made]
        if missing:
            draft.reasons.append(f"step {step_id}: output {output} names {', '.join(map(repr, missing))}, which "
                                 f"{model} does not make (it makes {', '.join(made)})")
        return [o for o in output if o in made]
    if isinstance(output, str) and output not in made:
        draft.notes.append(f"step {step_id}: StemSep's output label {output!r} names no stem of {model} "
                           f"({', '.join(made)}); dropped, the step's stems keep their names")
    return made


def _weight_note(draft: Draft, steps: list[dict[str, Any]], why: str) -> None:
    weights = [s["weight"] for s in steps if "weight" in s]
    if weights:
        draft.notes.append(f"StemSep's ensemble weight{'s' if len(weights) > 1 else ''} {weights} dropped: {why}")


def _ensemble(raw: dict[str, Any], draft: Draft, algorithm: str) -> dict[str, str]:
    steps = raw["steps"]
    models = [draft.model(s.get("model_id"), f"step {i + 1}") for i, s in enumerate(steps)]
    if len(steps) < 2:
        draft.reasons.append(f"algorithm {algorithm!r} over {len(steps)} model: an ensemble needs two or more")
    if draft.reasons or any(m is None for m in models):
        return {}
    known = [m for m in models if m is not None]
    if algorithm in ("phase_fix", "frequency_split"):
        return _pairwise(raw, draft, algorithm, known)
    if algorithm not in ("average", *SPECTRAL):
        draft.reasons.append(f"algorithm {algorithm!r} is no ensemble algorithm here (StemSep's: average, max_spec, "
                             "min_spec, phase_fix, frequency_split)")
        return {}
    weights = [float(s.get("weight", 1)) for s in steps]
    params: dict[str, Any] = {"algorithm": "avg_wave"} if algorithm == "average" else \
        {"algorithm": SPECTRAL[algorithm], **STEMSEP_STFT}
    if len(set(weights)) > 1:
        if algorithm != "average":
            draft.reasons.append(f"weights {weights} with {algorithm}: StemSep weighs only its average blend, so "
                                 "what these weights should do is not said")
            return {}
        params["weights"] = weights
    elif any("weight" in s for s in steps):
        draft.notes.append(f"StemSep's equal weights {weights} dropped: they change nothing")
    ids = [draft.separate(m, "mix", m) for m in known]
    shared = [st for st in draft.makes(ids[0]) if all(st in draft.makes(i) for i in ids[1:])]
    if not shared:
        draft.reasons.append(f"the models {', '.join(known)} make no stem in common: nothing to ensemble")
        return {}
    left_out = sorted({st for i in ids for st in draft.makes(i)} - set(shared))
    if left_out:
        draft.notes.append(f"stems not every model makes are not ensembled: {', '.join(left_out)}")
    _unused_step_keys(draft, steps, ("role", "note"))
    outputs = {}
    for stem in shared:
        ens = draft.op("ensemble", f"ensemble_{stem}", [f"{i}.{stem}" for i in ids], dict(params))
        outputs[stem] = f"{ens}.{stem}"
    return outputs


def _pairwise(raw: dict[str, Any], draft: Draft, algorithm: str, models: list[str]) -> dict[str, str]:
    steps = raw["steps"]
    if len(models) != 2:
        draft.reasons.append(f"{algorithm} takes two models, the recipe gives {len(models)}")
        return {}
    target = str(raw.get("target") or "")
    if algorithm == "frequency_split":
        roles = [str(s.get("role", "")) for s in steps]
        low, high = (1, 0) if "high" in roles[0] or "low" in roles[1] else (0, 1)
        order = [models[low], models[high]]
    else:
        order = models  # StemSep: source 0 = magnitude (target), source 1 = phase reference
    missing = [m for m in order if target not in (draft.stems(m) or [])]
    if missing:
        draft.reasons.append(f"{algorithm} works on the recipe's target stem {target!r}, which "
                             + "; ".join(f"{m} does not make (it makes {', '.join(draft.stems(m) or [])})"
                                         for m in missing))
        return {}
    _weight_note(draft, steps, f"{algorithm} takes no per-model weights")
    _unused_step_keys(draft, steps, ("note",) if algorithm == "frequency_split" else ("role", "note"))
    a, b = (draft.separate(m, "mix", m) for m in order)
    if algorithm == "phase_fix":
        draft.notes.append(f"phase_fix on the target stem {target!r} only (StemSep's blend fixes every stem); the "
                           f"band and weight are {order[1]}'s recommended Phase Fix params (StemSep's app applies "
                           "500/5000 Hz, weight 2 when a recipe names none)")
        fix = draft.op("phase_fix", "phase_fix", [f"{a}.{target}", f"{b}.{target}"], {})
        return {target: f"{fix}.{target}"}
    config = raw.get("algorithm_config") or {}
    params = {"crossover_hz": float(config.get("split_freq", 750)), "width_hz": float(config.get("crossfade_hz", 200)),
              "fade": config.get("fade_policy", "linear"), **STEMSEP_STFT}
    if "crossfade_hz" in config or "fade_policy" in config:
        draft.notes.append("crossfade_hz / fade_policy taken as the recipe states them (StemSep's blend uses a fixed "
                           "200 Hz linear crossfade)")
    split = draft.op("band_split", "band_split", [f"{a}.{target}", f"{b}.{target}"], params)
    return {target: f"{split}.{target}"}


def _unused_step_keys(draft: Draft, steps: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    found = sorted({k for s in steps for k in keys if k in s})
    if found:
        draft.notes.append(f"step keys not used by this algorithm, dropped: {', '.join(found)}")


def _chain(raw: dict[str, Any], draft: Draft) -> dict[str, str]:
    last: Optional[tuple[str, dict[str, Any]]] = None
    for i, step in enumerate(raw["steps"]):
        where = f"step {step.get('step_name') or i + 1}"
        action = step.get("action", "separate" if "model_id" in step else None)
        source = _source(draft, step.get("input_source"), where, last)
        if source is None:
            continue
        if action == "phase_fix":
            step_id = _phase_fix_action(draft, step, where, source, last)
        elif "model_id" in step:
            model = draft.model(step.get("model_id"), where)
            if model is None:
                continue
            if action not in ("separate", None):
                draft.notes.append(f"{where}: action {action!r} runs as a model step ({model}'s roles: "
                                   f"{', '.join(draft.registry.view(model).capabilities.roles)})")
            step_id = draft.separate(model, source, step.get("step_name") or model)
            if isinstance(step.get("output"), list):
                _selected(draft, step, step_id, model)  # every listed stem must exist, used or not
        else:
            draft.reasons.append(f"{where}: action {action!r} is no operation here (ops: separate, {OUR_OPS})")
            continue
        if step_id is None:
            continue
        if step.get("step_name"):
            draft.names[step["step_name"]] = step_id
        if step.get("optional"):
            draft.notes.append(f"step {step_id} is optional in StemSep (skipped when its model is missing); here it "
                               "always runs")
        if "weight" in step and action != "phase_fix":
            draft.notes.append(f"step {step_id}: StemSep's ensemble weight {step['weight']} dropped: no ensemble")
        if step.get("note"):
            draft.notes.append(f"step {step_id}: {step['note']}")
        last = (step_id, step)
    if last is None or draft.reasons:
        return {}
    step_id, step = last
    made = draft.makes(step_id)
    if draft.step(step_id)["op"] == "separate":
        made = _selected(draft, step, step_id, draft.step(step_id)["params"]["model"])
    return {stem: f"{step_id}.{stem}" for stem in made}


def _source(draft: Draft, input_source: Any, where: str, last: Optional[tuple[str, dict[str, Any]]]) -> Optional[str]:
    """Our reference for StemSep's `input_source` ("mix" without one)."""
    if input_source is None:
        return "mix"
    name, _, stem = str(input_source).partition(".")
    step_id = draft.names.get(name)
    if step_id is None:
        draft.reasons.append(f"{where}: input_source {input_source!r} names no earlier step")
        return None
    made = draft.makes(step_id)
    if stem not in made:
        model = draft.step(step_id)["params"].get("model", draft.step(step_id)["op"])
        draft.reasons.append(f"{where}: input_source {input_source!r} names stem {stem!r}, which step {name} "
                             f"({model}) does not make (it makes {', '.join(made)})")
        return None
    return f"{step_id}.{stem}"


def _phase_fix_action(draft: Draft, step: dict[str, Any], where: str, source: str,
                      last: Optional[tuple[str, dict[str, Any]]]) -> Optional[str]:
    reference = draft.model(step.get("source_model"), f"{where} (source_model)")
    stem = step.get("apply_to")
    if reference is None:
        return None
    if not stem:
        draft.reasons.append(f"{where}: phase_fix without apply_to: which stem is fixed is not said")
        return None
    if source == "mix":
        if last is None:
            draft.reasons.append(f"{where}: phase_fix with nothing before it to fix")
            return None
        source = f"{last[0]}.{stem}"
        if stem not in draft.makes(last[0]):
            draft.reasons.append(f"{where}: apply_to {stem!r}, which the step before it does not make")
            return None
    if stem not in (draft.stems(reference) or []):
        draft.reasons.append(f"{where}: the reference {reference} makes no {stem!r} to take the phase from")
        return None
    ref = draft.separate(reference, "mix", reference)
    params = {k: float(step[s]) for k, s in (("low_hz", "lowHz"), ("high_hz", "highHz"), ("weight", "weight"))
              if s in step}
    if "weight" in step:
        draft.notes.append(f"phase_fix weight {step['weight']} is the high frequency weight (colab curve), not an "
                           "ensemble weight")
    return draft.op("phase_fix", step.get("step_name") or "phase_fix", [source, f"{ref}.{stem}"], params)


def _post_processing(raw: dict[str, Any], draft: Draft, outputs: dict[str, str]) -> dict[str, str]:
    post = raw.get("post_processing")
    if not post:
        return outputs
    if post != "high_pass":
        draft.reasons.append(f"post_processing {post!r} is no operation here (ops: {OUR_OPS})")
        return outputs
    target = raw.get("target")
    params = dict(raw.get("post_processing_params") or {})
    if target not in outputs or "cutoff_hz" not in params:
        draft.reasons.append(f"high_pass needs the target stem {target!r} among the outputs and a cutoff_hz")
        return outputs
    step_id = draft.op("high_pass", "high_pass", [outputs[target]], {"cutoff_hz": float(params["cutoff_hz"])})
    return {**outputs, target: f"{step_id}.{target}"}


def _defaults_note(raw: dict[str, Any], draft: Draft) -> None:
    if raw.get("defaults"):
        draft.notes.append(f"StemSep's defaults {json.dumps(raw['defaults'], sort_keys=True)} dropped: one value for "
                           "every model, in no declared meaning (a divisor or a ratio, samples or seconds); each "
                           "model's recommended settings apply")


# ---- the files ----------------------------------------------------------------------------------

def import_recipes(source: Path, registry: Registry) -> tuple[str, str]:
    """(recipes.json text, report text)."""
    raw_bytes = source.read_bytes()
    data = json.loads(raw_bytes)
    converted: list[dict[str, Any]] = []
    report_rows: list[tuple[str, str, list[str], bool]] = []
    for raw in data["recipes"]:
        try:
            recipe, notes = convert(raw, registry)
        except Refused as refused:
            report_rows.append((raw["id"], raw.get("name", ""), refused.reasons, False))
            continue
        recipe.pop("notes", None)
        recipe = {**{k: v for k, v in recipe.items() if k not in ("steps", "outputs")}, **({"notes": notes} if notes
                  else {}), "steps": recipe["steps"], "outputs": recipe["outputs"]}
        converted.append(recipe)
        report_rows.append((raw["id"], raw.get("name", ""), _describe(recipe) + notes, True))
    recipes_text = json.dumps({"schema_version": SCHEMA_VERSION, "recipes": converted}, indent=2,
                              ensure_ascii=False) + "\n"
    unknown_keys = sorted({k for r in data["recipes"] for k in r} - set(APP_METADATA) -
                          {"id", "name", "description", "steps", "algorithm", "algorithm_config", "defaults",
                           "post_processing", "post_processing_params"})
    return recipes_text, _report(source, raw_bytes, data, report_rows, unknown_keys)


def _describe(recipe: dict[str, Any]) -> list[str]:
    steps = "; ".join(f"{s['id']} = {s['op']}"
                      + (f" {s['params']['model']}" if s["op"] == "separate" else "")
                      + f" ({', '.join(s['inputs'])})" for s in recipe["steps"])
    outputs = ", ".join(f"{k} = {v}" for k, v in recipe["outputs"].items())
    return [f"steps: {steps}", f"outputs: {outputs}"]


def _report(source: Path, raw: bytes, data: dict[str, Any], rows: list[tuple[str, str, list[str], bool]],
            unknown_keys: list[str]) -> str:
    done = [r for r in rows if r[3]]
    refused = [r for r in rows if not r[3]]
    lines = [
        "# StemSep's recipes, imported",
        "",
        "Written by `scripts/data/import_recipes.py` (do not edit; run it again). Source: StemSep's `recipes.json`, "
        f"version {data.get('version')}, {len(rows)} recipes, sha256 `{hashlib.sha256(raw).hexdigest()}`.",
        f"Result: **{len(done)} converted** into `registry/recipes.json`, **{len(refused)} refused**. "
        "Every converted recipe passes `stemsep recipes validate` (the graph and each model's runtime and "
        "settings); a refusal lists every reason found.",
        "",
        "How StemSep's forms become graphs, and what is not carried: see the converter's docstring and "
        "docs/recipes.md. Not carried from any recipe (app metadata, not the graph): "
        + ", ".join(f"`{k}`" for k in APP_METADATA) + "."
        + (" Keys nobody handles: " + ", ".join(f"`{k}`" for k in unknown_keys) + "." if unknown_keys else ""),
        "",
        "## Converted",
        "",
    ]
    for rid, name, notes, _ok in done:
        lines += [f"### `{rid}` ({name})", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Refused", ""]
    for rid, name, reasons, _ok in refused:
        lines += [f"### `{rid}` ({name})", ""] + [f"- {r}" for r in reasons] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def packaged_registry() -> Registry:
    """The packaged registry alone: the import must not depend on this machine's overlays."""
    return load_registry([REPO / "registry" / "models.json"])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, nargs="?", default=DEFAULT_SOURCE, help="StemSep's recipes.json")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where recipes.json and the report go")
    parser.add_argument("--check", action="store_true", help="exit 1 when the files differ from a fresh import")
    args = parser.parse_args(argv)
    try:
        recipes_text, report_text = import_recipes(args.source, packaged_registry())
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot import {args.source}: {exc}", file=sys.stderr)
        return 1
    return sync_generated([(args.out_dir / RECIPES_NAME, recipes_text), (args.out_dir / REPORT_NAME, report_text)],
                          check=args.check, command="python scripts/data/import_recipes.py")


if __name__ == "__main__":
    sys.exit(main())
