"""Preflight of a recipe: the graph (rules/recipe_graph.py) and, for each `separate` step, everything
`stemsep preflight` checks for one model (runtime, settings, artifacts, requirements, env), before any
download, build or worker start. One report, one section per step (docs/recipes.md, "Validation").

`check_recipe` is the part that needs no input files and no machine state: the graph, and each step's
model, runtime and settings (`stemsep recipes validate`). `run_recipe_preflight` adds the inputs and each
model's one-model preflight (run once per distinct model, runtime and settings).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from envmgr.preflight import rules
from envmgr.preflight.options import JobOptions
from envmgr.preflight.rules.recipe_graph import GraphFacts, check_channel_flow, check_graph
from registry.errors import StemSepError
from registry.recipes.model import Recipe, SeparateStep

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.preflight.run import Preflight
    from registry.loader import Registry
    from registry.view import ModelView

REPORT_SCHEMA_VERSION = 1
# A one-model preflight's notes on its own decision, and its no-input error: the recipe's decision says these once.
_NOT_PER_STEP = frozenset({"W_DEV_OVERRIDE", "W_NOT_ENFORCED", "W_DEV_OVERRIDE_IGNORED", "W_INPUTS_SKIPPED",
                           "E_NO_INPUT"})


@dataclass
class StepCheck:
    """A `separate` step's model, runtime and settings as the registry alone decides them."""

    entry: Optional[ModelView] = None
    resolution: Optional[rules.RuntimeResolution] = None
    findings: list[rules.Finding] = field(default_factory=list)


@dataclass
class RecipeCheck:
    recipe: Recipe
    graph: GraphFacts
    steps: dict[str, StepCheck]
    graph_findings: list[rules.Finding]

    @property
    def graph_rows(self) -> list[tuple[str, rules.Finding]]:
        """(step id or "", finding) for the graph's findings."""
        ids = {s.id for s in self.recipe.steps}
        return [(f.subject if f.subject in ids else "", f) for f in self.graph_findings]

    @property
    def findings(self) -> list[tuple[str, rules.Finding]]:
        """(step id or "", finding) for every finding: the graph's, then each step's."""
        return self.graph_rows + [(sid, f) for sid, check in self.steps.items() for f in check.findings]

    @property
    def errors(self) -> list[tuple[str, rules.Finding]]:
        return [(s, f) for s, f in self.findings if f.severity == "error"]


def check_recipe(recipe: Recipe, registry: Registry) -> RecipeCheck:
    """The recipe against the registry alone: its graph, and each `separate` step's model, runtime and
    settings (what `stemsep recipes validate` judges)."""
    steps: dict[str, StepCheck] = {}
    models: dict[str, Optional[ModelView]] = {}
    for step in recipe.steps:
        if isinstance(step, SeparateStep):
            steps[step.id] = check = _check_separate(step, registry)
            models[step.params.model] = check.entry
    valid = valid_references(registry) if any(s.op == "phase_fix" for s in recipe.steps) else []
    for s in recipe.steps:  # a phase_fix donor's model, when the donor is not a separate step's (reported)
        if s.op == "phase_fix":
            for ref in s.input_refs:
                producer = recipe.step(ref.partition(".")[0])
                if isinstance(producer, SeparateStep) and producer.params.model not in models:
                    models[producer.params.model] = None
    findings, graph = check_graph(recipe, models, valid)
    return RecipeCheck(recipe, graph, steps, findings)


def valid_references(registry: Registry) -> list[str]:
    return [m for m in registry.models if registry.view(m).phase_fix.is_valid_reference is True]


def _check_separate(step: SeparateStep, registry: Registry) -> StepCheck:
    model = step.params.model
    try:
        entry = registry.view(model)
    except StemSepError as err:
        return StepCheck(findings=[rules.from_error(err, "E_UNKNOWN_MODEL", subject=model)])
    resolution, findings = rules.route(entry, step.params.runtime)
    if resolution.runtime:
        _settings, found = rules.resolve_job_settings(entry, resolution.runtime, step_settings(step))
        findings += found
    return StepCheck(entry, resolution, findings)


def step_settings(step: SeparateStep) -> dict[str, Any]:
    return step.params.settings.model_dump(exclude_none=True)


# ---- with inputs: the full preflight ------------------------------------------------------------

@dataclass
class RecipePreflight:
    report: dict[str, Any]
    decision: rules.Decision
    check: RecipeCheck
    step_preflights: dict[str, Preflight]  # separate step id -> its one-model preflight
    inputs: list[Path]

    @property
    def can_proceed(self) -> bool:
        return self.decision.can_proceed


def run_recipe_preflight(recipe: Recipe, inputs: Sequence[Path], options: JobOptions = JobOptions(), *,
                         config: Optional[MachineConfig] = None, registry: Optional[Registry] = None
                         ) -> RecipePreflight:
    """Check everything the recipe's job depends on, starting nothing. Every problem is a finding."""
    from envmgr.config import load_config
    from envmgr.errors import UsageError
    from envmgr.preflight.run import PreflightRequest, _absolute_unique, _load_registry, probe_audio, run_preflight

    started = time.perf_counter()
    config = config or load_config()
    mode = (options.enforcement or config.enforcement).lower()
    if mode not in rules.MODES:
        raise UsageError(f"unknown enforcement mode {options.enforcement!r}", hint="use strict, soft or report")
    registry = registry if registry is not None else _load_registry()
    check = check_recipe(recipe, registry)
    paths = _absolute_unique(inputs)
    audio = [probe_audio(p) for p in paths]
    findings: list[tuple[str, rules.Finding]] = [("", f) for a in audio for f in rules.check_input(a)]
    if not paths:
        findings.append(("", rules.Finding("E_NO_INPUT", "no input files given",
                                           hint="pass one or more audio files")))
    findings += check.graph_rows
    findings += [(sid, f) for sid, sc in check.steps.items() if sc.entry is None for f in sc.findings]

    step_preflights: dict[str, Preflight] = {}
    done: dict[tuple[Any, ...], Preflight] = {}
    for step in recipe.steps:
        if not isinstance(step, SeparateStep) or check.steps[step.id].entry is None:
            continue
        settings = step_settings(step)
        key = (step.params.model, step.params.runtime, tuple(sorted(settings.items())))
        if key not in done:
            request = PreflightRequest(paths, step.params.model, step.params.runtime,
                                       options=replace(options, settings={**settings, **options.settings}))
            done[key] = run_preflight(request, config=config, registry=registry)
        step_preflights[step.id] = done[key]
        findings += [(step.id, f) for f in done[key].findings if f.code not in _NOT_PER_STEP
                     and not f.code.startswith("E_INPUT_")]  # the inputs' own checks: once, above
    runs = {sid: (pf.entry, pf.runtime.runtime) for sid, pf in step_preflights.items()
            if pf.entry is not None and pf.runtime is not None and pf.runtime.runtime}
    for a in audio:
        if not rules.check_input(a):
            findings += [(f.subject or "", f) for f in check_channel_flow(recipe, check.graph.order, runs, a)]

    decision, extra = rules.decide([f for _s, f in findings], [str(p) for p in paths], mode, options.dev_override)
    findings += [("", f) for f in extra]
    report = recipe_report(check, findings, decision=decision, mode=mode, options=options, audio=audio,
                           step_preflights=step_preflights, seconds=time.perf_counter() - started)
    return RecipePreflight(report, decision, check, step_preflights, paths)


def recipe_report(check: RecipeCheck, findings: Sequence[tuple[str, rules.Finding]], *,
                  decision: Optional[rules.Decision] = None, mode: Optional[str] = None,
                  options: Optional[JobOptions] = None, audio: Sequence[rules.AudioFacts] = (),
                  step_preflights: Optional[dict[str, Preflight]] = None, seconds: float = 0.0) -> dict[str, Any]:
    """The report: every finding (with the step it concerns) at the top, then one section per step. Without
    a decision (`recipes validate`), every error blocks."""
    recipe = check.recipe
    blocking = {id(f) for f in decision.blocking} if decision else {id(f) for _s, f in findings
                                                                   if f.severity == "error"}
    step_preflights = step_preflights or {}

    def row(step_id: str, f: rules.Finding) -> dict[str, Any]:
        out = {**f.to_dict(), "step": step_id or None}
        if f.severity == "error":
            out["blocking"] = id(f) in blocking
        return out

    sections = []
    for step in recipe.steps:
        facts = check.graph.steps[step.id]
        section: dict[str, Any] = {"id": step.id, "op": step.op, "inputs": step.input_refs, "makes": facts.makes,
                                   "content": facts.content, "phase_fix": facts.phase_fix,
                                   "params": step.params.model_dump(exclude_none=True)}
        if isinstance(step, SeparateStep):
            sc = check.steps[step.id]
            pf = step_preflights.get(step.id)
            section["model"] = step.params.model
            section["runtime"] = sc.resolution.to_dict() if sc.resolution and sc.resolution.runtime else None
            section["preflight"] = pf.report if pf is not None else None
        sections.append(section)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "recipe": recipe.id,
        "can_proceed": decision.can_proceed if decision else not blocking,
        "enforcement": ({"mode": mode, "dev_override": options.dev_override if options else False,
                         "overridden": [f.code for f in decision.overridden]} if decision else None),
        "inputs": [{**a.to_dict(), "state": "blocked" if decision and a.path in decision.blocked_inputs else "ok"}
                   for a in audio],
        "order": check.graph.order,
        "outputs": dict(recipe.outputs),
        "errors": [row(s, f) for s, f in findings if f.severity == "error"],
        "warnings": [row(s, f) for s, f in findings if f.severity == "warning"],
        "steps": sections,
        "seconds": round(seconds, 4),
    }
