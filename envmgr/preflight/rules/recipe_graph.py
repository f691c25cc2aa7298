"""A recipe's graph against the registry: every reference resolves to a stem its step really makes, no
cycle, an ensemble's stems share a name, a processing model is fed a stem its role takes, a Phase Fix donor
comes from a valid reference model, stems an op combines have one channel count.

Pure: the models arrive as views (None: not in the registry; the step's own check reports that). Each
finding's `subject` is the step it is about (`outputs.<name>` for an output). envmgr/preflight/recipe.py
gathers the facts and runs each `separate` step's one-model checks beside these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from registry.capabilities import splits_channels
from registry.recipes import content
from registry.recipes.graph import consumed, find_cycle, run_order, split_ref, stems_made
from registry.recipes.model import MIX, EnsembleStep, InvertStep, PhaseFixStep, Recipe, SeparateStep, StepBase
from envmgr.preflight.rules.codes import Finding
from envmgr.preflight.rules.inputs import DOWNMIXES_TO_MONO, UPMIXES_MONO, AudioFacts, check_channels
from envmgr.preflight.rules.phase_fix import check_phase_fix

if TYPE_CHECKING:
    from registry.view import ModelView

Models = Mapping[str, Optional["ModelView"]]  # model id -> its entry (None: not in the registry)


@dataclass
class StepFacts:
    """What the graph says about one step."""

    makes: list[str] = field(default_factory=list)
    content: dict[str, str] = field(default_factory=dict)  # stem -> mix | vocals | instrumental | other
    phase_fix: Optional[dict[str, Any]] = None  # a phase_fix step: its reference and resolved params


@dataclass
class GraphFacts:
    order: list[str]
    steps: dict[str, StepFacts]


def check_graph(recipe: Recipe, models: Models, valid_references: Sequence[str]
                ) -> tuple[list[Finding], GraphFacts]:
    findings: list[Finding] = []
    steps = {s.id: s for s in recipe.steps}

    def model_of(step: Optional[StepBase]) -> Optional[ModelView]:
        return models.get(step.params.model) if isinstance(step, SeparateStep) else None

    def model_stems(model_id: str) -> Optional[list[str]]:
        entry = models.get(model_id)
        return list(entry.capabilities.stems) if entry is not None else None

    facts = {s.id: StepFacts(makes=stems_made(s, model_stems)) for s in recipe.steps}
    cycle = find_cycle(recipe)
    if cycle:
        findings.append(Finding("E_RECIPE_CYCLE", f"steps {' -> '.join(cycle)} read each other's stems in a cycle",
                                "each step runs after the steps it reads, so no step of a cycle can start",
                                "make one of them read the mix or an earlier step", subject=cycle[0]))

    def resolves(ref: str, where: str) -> bool:
        step_id, stem = split_ref(ref)
        if step_id is None:
            return True
        if step_id not in steps:
            findings.append(Finding("E_RECIPE_UNKNOWN_STEP", f"{where} reads {ref}: the recipe has no step {step_id!r}",
                                    f"its steps are {', '.join(steps)}", "name one of them, or 'mix' for the input",
                                    subject=where))
            return False
        made = facts[step_id].makes
        producer = steps[step_id]
        if isinstance(producer, SeparateStep) and models.get(producer.params.model) is None:
            return False  # an unknown model: its step says so (E_UNKNOWN_MODEL)
        if stem not in made:
            if isinstance(producer, SeparateStep):
                model = producer.params.model
                why = f"{model} makes {', '.join(made)}" if made else f"{model} declares no stems"
            else:
                why = f"{producer.op} step {step_id} makes one stem, {made[0]}"
            findings.append(Finding("E_RECIPE_UNKNOWN_STEM", f"{where} reads {ref}: step {step_id} makes no stem "
                                    f"{stem!r}", why, f"read one of: {', '.join(f'{step_id}.{m}' for m in made)}"
                                    if made else "fix the step's model first", subject=where))
            return False
        return True

    good = {s.id: all([resolves(r, s.id) for r in s.input_refs]) for s in recipe.steps}
    for name, ref in recipe.outputs.items():
        resolves(ref, f"outputs.{name}")

    order = run_order(recipe)
    contents: dict[str, str] = {MIX: "mix"}
    for step_id in order:
        step = steps[step_id]
        if not good[step_id]:
            continue
        fed = [contents.get(r, "other") for r in step.input_refs]
        made = facts[step_id]
        if isinstance(step, SeparateStep):
            entry = model_of(step)
            roles = list(entry.capabilities.roles) if entry is not None else []
            made.content = {stem: content.separated(roles, fed[0], stem) for stem in made.makes}  # type: ignore[arg-type]
            if entry is not None:
                findings += _role_fits(step, entry, roles, fed[0])
        elif isinstance(step, InvertStep):
            made.content = {made.makes[0]: content.inverted(fed[0], fed[1])}  # type: ignore[arg-type]
        else:
            made.content = {made.makes[0]: content.combined(fed)}  # type: ignore[arg-type]
        if isinstance(step, EnsembleStep):
            findings += _ensemble_stems(step)
        if isinstance(step, PhaseFixStep):
            found, made.phase_fix = _phase_fix(step, steps, models, valid_references)
            findings += found
        for stem, kind in made.content.items():
            contents[f"{step_id}.{stem}"] = kind

    read = consumed(recipe)
    for step in recipe.steps:
        if not any(r.startswith(f"{step.id}.") for r in read):
            findings.append(Finding("W_RECIPE_UNUSED_STEP", f"step {step.id} makes {', '.join(facts[step.id].makes) or 'nothing'}"
                                    " but no output or step reads it", "it would run for nothing",
                                    "add an output for it or remove the step", subject=step.id))
    return findings, GraphFacts(order, facts)


def _role_fits(step: SeparateStep, entry: ModelView, roles: list[str], fed: str) -> list[Finding]:
    refusing = content.roles_taking(roles, fed)  # type: ignore[arg-type]
    if not refusing:
        return []
    wanted = sorted({c for r in refusing for c in content.takes(r)})
    given = "the mix" if step.inputs[0] == MIX else f"{step.inputs[0]} ({fed})"
    return [Finding("E_RECIPE_ROLE_INPUT", f"step {step.id} feeds {given} to {entry.id}, a "
                    f"{'/'.join(refusing)} model", f"{'/'.join(refusing)} models take {' or '.join(wanted)} only: "
                    "docs/recipes.md, 'What a stem holds'",
                    f"feed it a {' or '.join(wanted)} stem, e.g. separate the mix first and read that step's "
                    f"{wanted[0]}", subject=step.id)]


def _ensemble_stems(step: EnsembleStep) -> list[Finding]:
    names = list(dict.fromkeys(split_ref(r)[1] for r in step.inputs))
    if len(names) == 1:
        return []
    return [Finding("E_RECIPE_ENSEMBLE_STEMS", f"ensemble step {step.id} combines {', '.join(step.inputs)}",
                    f"an ensemble combines one stem from several models; these are {', '.join(names)}",
                    "give it the same stem of each model (one ensemble step per stem)", subject=step.id)]


def _phase_fix(step: PhaseFixStep, steps: Mapping[str, StepBase], models: Models,
               valid_references: Sequence[str]) -> tuple[list[Finding], Optional[dict[str, Any]]]:
    """The donor must come from a valid reference model (check_phase_fix, as `--phase-fix-reference` is
    checked); its recommended band and weight fill what the step leaves unset."""
    donor_step, _stem = split_ref(step.inputs[1])
    producer = steps.get(donor_step or "")
    if not isinstance(producer, SeparateStep):
        source = "the mix" if donor_step is None else f"{producer.op if producer else '?'} step {donor_step}"
        return [Finding("E_PHASE_FIX_REFERENCE", f"phase_fix step {step.id} takes its phase from {source}, not "
                        "from a model", "Phase Fix takes the phase of a valid reference model's stem",
                        f"read a stem of a `separate` step whose model is one of: {', '.join(valid_references)}",
                        subject=step.id)], None
    params = step.params
    user = {k: v for k, v in (("lowHz", params.low_hz), ("highHz", params.high_hz),
                              ("highFreqWeight", params.weight)) if v is not None}
    found, resolved = check_phase_fix(producer.params.model, models.get(producer.params.model), valid_references, user)
    found = [Finding(f.code, f"phase_fix step {step.id}: {f.message}", f.why, f.hint, subject=step.id) for f in found]
    if resolved is None:
        return found, None
    curve = params.curve or "colab"
    weight = resolved["params"]["highFreqWeight"]
    if curve == "uvr":
        if params.weight is not None and params.weight != 1:
            found.append(Finding("E_PHASE_FIX_PARAMS", f"phase_fix step {step.id}: weight {params.weight} with curve "
                                 "uvr", "UVR's Phase Swapper has no weight (it is 1)",
                                 "use curve colab for a weighted blend, or leave weight out", subject=step.id))
        weight = {"value": None, "provenance": "runtime_default", "recommended": weight["recommended"]}
    values = {"curve": curve, "low_hz": resolved["params"]["lowHz"]["value"],
              "high_hz": resolved["params"]["highHz"]["value"], "weight": weight["value"]}
    return found, {**resolved, "curve": curve, "op_params": {k: v for k, v in values.items() if v is not None}}


def check_channel_flow(recipe: Recipe, order: Sequence[str], runs: Mapping[str, tuple[ModelView, Optional[str]]],
                       audio: AudioFacts) -> list[Finding]:
    """Channel counts through the graph for one input: a model keeps its input's count unless its runtime
    downmixes (W_DOWNMIX) or upmixes (W_UPMIX) it; an op needs one count over its inputs. `runs`: step id ->
    (model, runtime) of each `separate` step that resolved."""
    if audio.channels is None:
        return []
    steps = {s.id: s for s in recipe.steps}
    channels: dict[str, int] = {MIX: audio.channels}
    findings: list[Finding] = []
    for step_id in order:
        step = steps[step_id]
        fed = [channels.get(r) for r in step.input_refs]
        if any(c is None for c in fed):
            continue
        if isinstance(step, SeparateStep):
            if step_id not in runs:
                continue
            entry, runtime = runs[step_id]
            count = fed[0]
            assert count is not None
            if count != audio.channels:  # the one-model check judged the mix's count, not this stem's
                facts = AudioFacts(audio.path, channels=count)
                findings += [Finding(f.code, f"step {step_id} ({step.inputs[0]}): {f.message}", f.why, f.hint,
                                     subject=step_id, input=audio.path) for f in check_channels(facts, entry, runtime)]
            caps = entry.capabilities
            if count == 2 and caps.supports_stereo is False and not splits_channels(entry, runtime) \
                    and runtime in DOWNMIXES_TO_MONO:
                count = 1
            elif count == 1 and caps.supports_mono is False and runtime in UPMIXES_MONO:
                count = 2
            for stem in entry.capabilities.stems:
                channels[f"{step_id}.{stem}"] = count
            continue
        counts = sorted({c for c in fed if c is not None})
        if len(counts) > 1:
            described = ", ".join(f"{r} ({c} ch)" for r, c in zip(step.input_refs, fed))
            findings.append(Finding("E_RECIPE_CHANNELS", f"{step.op} step {step_id} combines stems of {counts} "
                                    f"channels for {audio.path}", f"its inputs: {described}; a per-channel "
                                    "operation needs one count (a mono model's runtime averaged the stereo input)",
                                    "run the mono model on a runtime that splits the channels, or make the input "
                                    "mono", subject=step_id, input=audio.path))
            continue
        out = stems_made(step, lambda _m: None)
        channels[f"{step_id}.{out[0]}"] = counts[0]
    return findings
