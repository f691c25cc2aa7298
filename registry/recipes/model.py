"""Typed model of a recipe file: steps `{id, op, inputs, params}` and `outputs: {name: "<step>.<stem>"}`.

`op` is `separate` (a registry model on one input) or an audio operation. Each operation's step class is the
host's declaration of that op: its input roles (`roles`, `variadic`, `min_inputs`) and its params model. The
worker declares the same facts in `runtimes.ops.OPS`, which the host may not import; tests/recipes/
test_ops_table.py checks the two agree. An op param left out takes the op's own default, except Phase Fix's
band and weight, which take the reference model's `phase_fix.recommended_params` first (preflight resolves
them, with provenance).

Everything is strict (`extra="forbid"`, no "4" -> 4): a misspelt key in a recipe is an error, not a no-op.
Whether references resolve, the graph has no cycle and the models fit is judged by preflight
(envmgr/preflight/rules/recipe_graph.py), against the registry.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from registry.vocab import RuntimeId

MIX = "mix"  # the recipe's input: every reference is "mix" or "<step>.<stem>"
SCHEMA_VERSION: Literal[1] = 1

StepId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64,
                              description="Unique in the recipe; lower case, digits, _; not 'mix'.")]
Reference = Annotated[str, Field(pattern=r"^(mix|[a-z][a-z0-9_]*\.[A-Za-z0-9][A-Za-z0-9_-]*)$",
                                 description="'mix' (the input file) or '<step id>.<stem>'.")]
OutputName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=64)]
RecipeId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)]
Hz = Annotated[float, Field(ge=0)]
FftSize = Annotated[int, Field(ge=16, le=65536)]
Hop = Annotated[int, Field(ge=1)]

ENSEMBLE_ALGORITHMS = ("avg_wave", "median_wave", "min_wave", "max_wave", "avg_fft", "median_fft", "min_fft",
                       "max_fft", "uvr_max_spec", "uvr_min_spec", "ensemble_wav")
EnsembleAlgorithm = Literal["avg_wave", "median_wave", "min_wave", "max_wave", "avg_fft", "median_fft", "min_fft",
                            "max_fft", "uvr_max_spec", "uvr_min_spec", "ensemble_wav"]
LengthPolicy = Literal["pad", "trim", "strict"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ---- params: one model per op (unset: the op's default) ------------------------------------------

class StepSettings(Strict):
    """A model's settings for this step, in the registry's meaning (as `--overlap` etc. on `separate`); unset:
    the model's recommended settings."""

    overlap: Optional[Union[int, float]] = None
    segment_size: Optional[int] = None
    batch_size: Optional[int] = None
    shifts: Optional[int] = None
    tta: Optional[bool] = None


class SeparateParams(Strict):
    model: str = Field(description="A registry model id.")
    runtime: Optional[RuntimeId] = Field(default=None, description="Unset: the registry's routing decides.")
    settings: StepSettings = Field(default_factory=StepSettings)


class EnsembleParams(Strict):
    algorithm: Optional[EnsembleAlgorithm] = None
    weights: Optional[list[Annotated[float, Field(ge=0)]]] = Field(
        default=None, description="One weight per input (avg_wave, avg_fft); unset: all 1.")
    n_fft: Optional[FftSize] = None
    hop: Optional[Hop] = None
    length_policy: Optional[LengthPolicy] = None


class PhaseFixParams(Strict):
    curve: Optional[Literal["colab", "uvr"]] = None
    low_hz: Optional[Hz] = Field(default=None, description="Unset: the reference model's recommended lowHz.")
    high_hz: Optional[Hz] = Field(default=None, description="Unset: the reference model's recommended highHz.")
    weight: Optional[float] = Field(default=None, description="High frequency weight (colab curve; not clamped). "
                                    "Unset: the reference model's recommended highFreqWeight.")
    n_fft: Optional[FftSize] = None
    hop: Optional[Hop] = None
    length_policy: Optional[LengthPolicy] = None


class InvertParams(Strict):
    length_policy: Optional[LengthPolicy] = None


class BandSplitParams(Strict):
    crossover_hz: Hz
    width_hz: Optional[Hz] = None
    fade: Optional[Literal["linear", "equal_power"]] = None
    n_fft: Optional[FftSize] = None
    hop: Optional[Hop] = None
    length_policy: Optional[LengthPolicy] = None


class HighPassParams(Strict):
    cutoff_hz: Hz
    order: Optional[Annotated[int, Field(ge=1, le=24)]] = None
    n_fft: Optional[FftSize] = None
    hop: Optional[Hop] = None


# ---- steps: the op table ------------------------------------------------------------------------

class StepBase(Strict):
    id: StepId
    op: str  # each step class narrows it to its op's name (the discriminator)
    inputs: list[Reference]
    # The op's input roles, one per position; `variadic`: the last role repeats, at least `min_inputs` times.
    roles: ClassVar[tuple[str, ...]] = ()
    variadic: ClassVar[bool] = False
    min_inputs: ClassVar[int] = 0
    # The stem an op step makes: None: named as its first input's stem (`mix` for the mix), else this name.
    makes: ClassVar[Optional[str]] = None

    @property
    def input_refs(self) -> list[str]:
        return list(self.inputs)


class SeparateStep(StepBase):
    """Run a registry model on one input; the step makes the stems the model declares (`capabilities.stems`)."""

    op: Literal["separate"]  # narrowed: the discriminator
    inputs: list[Reference] = Field(min_length=1, max_length=1)
    params: SeparateParams
    roles: ClassVar[tuple[str, ...]] = ("input",)


class EnsembleStep(StepBase):
    op: Literal["ensemble"]
    inputs: list[Reference] = Field(min_length=2)
    params: EnsembleParams = Field(default_factory=EnsembleParams)
    roles: ClassVar[tuple[str, ...]] = ("stem",)
    variadic: ClassVar[bool] = True
    min_inputs: ClassVar[int] = 2


class PhaseFixStep(StepBase):
    """The target's magnitude with the phase of the donor: a stem of a valid Phase Fix reference model."""

    op: Literal["phase_fix"]
    inputs: list[Reference] = Field(min_length=2, max_length=2)
    params: PhaseFixParams = Field(default_factory=PhaseFixParams)
    roles: ClassVar[tuple[str, ...]] = ("target", "donor")


class InvertStep(StepBase):
    op: Literal["invert"]
    inputs: list[Reference] = Field(min_length=2, max_length=2)
    params: InvertParams = Field(default_factory=InvertParams)
    roles: ClassVar[tuple[str, ...]] = ("mix", "stem")
    makes: ClassVar[Optional[str]] = "rest"


class BandSplitStep(StepBase):
    op: Literal["band_split"]
    inputs: list[Reference] = Field(min_length=2, max_length=2)
    params: BandSplitParams
    roles: ClassVar[tuple[str, ...]] = ("low_source", "high_source")


class HighPassStep(StepBase):
    op: Literal["high_pass"]
    inputs: list[Reference] = Field(min_length=1, max_length=1)
    params: HighPassParams
    roles: ClassVar[tuple[str, ...]] = ("stem",)


OpStep = Union[EnsembleStep, PhaseFixStep, InvertStep, BandSplitStep, HighPassStep]
Step = Annotated[Union[SeparateStep, OpStep], Field(discriminator="op")]
OP_STEPS: dict[str, type[StepBase]] = {"ensemble": EnsembleStep, "phase_fix": PhaseFixStep, "invert": InvertStep,
                                       "band_split": BandSplitStep, "high_pass": HighPassStep}
OP_NAMES: tuple[str, ...] = ("separate", *OP_STEPS)


class Recipe(Strict):
    id: RecipeId
    name: str = ""
    description: str = ""
    source: str = Field(default="", description="Where the recipe came from (e.g. StemSep's recipes.json and its id).")
    notes: list[str] = Field(default_factory=list, description="What a reader should know (conversion choices...).")
    steps: list[Step] = Field(min_length=1)
    outputs: dict[OutputName, Reference] = Field(min_length=1, description="Output name -> '<step>.<stem>'.")

    @model_validator(mode="after")
    def _unique_step_ids(self) -> "Recipe":
        seen: set[str] = set()
        for step in self.steps:
            if step.id == MIX:
                raise ValueError("a step may not be called 'mix': that name is the recipe's input")
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice: references could not say which step they mean")
            seen.add(step.id)
        return self

    def step(self, step_id: str) -> Optional[StepBase]:
        return next((s for s in self.steps if s.id == step_id), None)


class RecipeFile(Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    recipes: list[Recipe]
