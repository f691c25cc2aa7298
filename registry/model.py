"""Typed model of a registry file (seed proposal §3.1-3.7 plus our additive fields).

Every class keeps unknown keys (`extra="allow"`): the legacy StemSep file carries many
(`runtime.hosts`, `catalog`, `verification`...) and they must survive a load unchanged.
Object-valued fields accept `null` (the legacy file writes null where an object is expected) and
read it as the safe default: nothing allowed, nothing required, no capability claimed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Optional, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_serializer, model_validator

from registry.vocab import ArtifactKind, EvidenceKind, OverlapMeaning, Role, RuntimeId, SegmentUnit


def _null_is_empty(value: Any) -> Any:
    return {} if value is None else value


def _null_is_empty_list(value: Any) -> Any:
    return [] if value is None else value


if TYPE_CHECKING:  # a type checker reads `Nullable[X]` as X and `NullableList[X]` as list[X]
    _T = TypeVar("_T")
    Nullable = Annotated[_T, "null reads as the object's defaults"]
    NullableList = Annotated[list[_T], "null reads as empty"]
else:
    class Nullable:
        """`Nullable[X]`: an object field where the legacy file may write null; null reads as X's defaults."""

        def __class_getitem__(cls, tp: Any) -> Any:
            return Annotated[tp, BeforeValidator(_null_is_empty, json_schema_input_type=Optional[tp])]

    class NullableList:
        """`NullableList[X]`: a list field where the legacy file may write null; null reads as empty."""

        def __class_getitem__(cls, tp: Any) -> Any:
            return Annotated[list[tp], BeforeValidator(_null_is_empty_list, json_schema_input_type=Optional[list[tp]])]


class Base(BaseModel):
    """Keeps unknown keys, and remembers which object fields were written as null so a dump writes them
    back as null (a legacy file read and written again is unchanged)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)  # no "4" -> 4 coercion
    # Fields written as null, set on the instance only where there are some. Not a PrivateAttr: pydantic
    # initialises private attributes on every object it builds, which cost a tenth of validating a large
    # overlay (scripts/bench/registry_scale.py); a class-level default costs nothing.
    _nulls: ClassVar[frozenset[str]] = frozenset()
    # The read-only methods whose results a frozen entry records (registry.frozen): every method that
    # code reading an entry calls must be named here, or a frozen entry would lack it.
    frozen_calls: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _remember_nulls(cls, data: Any, handler: Any) -> Any:
        obj = handler(data)
        if isinstance(data, dict):
            nulls = frozenset(k for k, v in data.items() if v is None and k in cls.model_fields)
            if nulls:
                object.__setattr__(obj, "_nulls", nulls)  # beside the fields: dumps and equality ignore it
        return obj

    @model_serializer(mode="wrap")
    def _restore_nulls(self, handler: Any) -> Any:
        out = handler(self)
        for key in self._nulls:
            if key in out and out[key] in ({}, []):  # still the default the null was read as
                out[key] = None
        return out


class Evidence(Base):
    """Where a curated fact came from. `source` is `deton24_guide.txt:L49-53`, a config name, or a URL."""

    fields: list[str] = Field(description="Entry fields this evidence supports, e.g. ['runtime', 'phase_fix'].")
    kind: EvidenceKind
    source: str
    note: str = ""


class Links(Base):
    checkpoint: Optional[str] = None
    config: Optional[str] = None
    homepage: Optional[str] = None


class RecommendedSettings(Base):
    """Settings the guide recommends; applied by default unless the user overrides them (seed §2.5).

    `overlap` carries the meaning declared in `settings_semantics.overlap.meaning`; `segment_size` the
    unit in `settings_semantics.segment_size.unit` (samples when unset). registry.settings translates
    both into the chosen runtime's native parameters.
    """

    segment_size: Optional[int] = None
    overlap: Optional[Union[int, float]] = None
    batch_size: Optional[int] = None
    tta: Optional[bool] = None
    shifts: Optional[int] = None
    bit_depth: Optional[int] = None


class RuntimeSpec(Base):
    """Where a model may run (seed §3.1). Routing reads only this."""

    allowed: NullableList[RuntimeId] = Field(default_factory=list)
    preferred: Optional[RuntimeId] = None
    blocking_reason: Optional[str] = Field(
        default=None, description="Why the canonical runtimes missing from `allowed` cannot run this model."
    )
    model_type: Optional[str] = Field(
        default=None,
        description="Model type the runtime builds (MSST `model_type`, e.g. bs_roformer, mel_band_roformer, mdx23c).",
    )
    catalog_only: bool = Field(
        default=False,
        description="Listed for reference only: no canonical runtime can run it (then `allowed` is empty and "
        "`blocking_reason` says why).",
    )


class Compatibility(Base):
    uvr_compatible: Optional[bool] = None
    audio_separator_compatible: Optional[bool] = None
    msst_compatible: Optional[bool] = None
    known_issues: NullableList[str] = Field(default_factory=list)


class VersionRange(Base):
    min: Optional[str] = None
    max: Optional[str] = None


class TorchRequirement(VersionRange):
    required: Optional[bool] = Field(
        default=None,
        description="Whether the model needs torch at all; null: the runtime decides (only stemsep-legacy "
        "has torch-free models, e.g. the built-in DSP default).",
    )
    cuda: NullableList[str] = Field(default_factory=list, description="Supported CUDA builds, e.g. cu121.")
    rocm: NullableList[str] = Field(default_factory=list, description="Supported ROCm builds, e.g. rocm6.2.")


class PipRequirement(Base):
    packages: NullableList[str] = Field(default_factory=list, description="PEP 508 requirements added to the env.")
    runtimes: NullableList[RuntimeId] = Field(
        default_factory=list, description="The runtimes whose env gets these packages (e.g. only the one whose "
        "code imports them); empty: every runtime's env.")


class FilesRequirement(Base):
    expects: NullableList[str] = Field(default_factory=list)
    provides: NullableList[str] = Field(default_factory=list)


class ManualStep(Base):
    """A step a person running the model by hand must do; `automated_by` names the artifact that does it for us."""

    text: str
    automated_by: Optional[str] = Field(default=None, description="Filename of the artifact that automates this step.")


class Requirements(Base):
    python: Nullable[VersionRange] = Field(default_factory=VersionRange)
    torch: Nullable[TorchRequirement] = Field(default_factory=TorchRequirement)
    pip: Nullable[PipRequirement] = Field(default_factory=PipRequirement)
    files: Nullable[FilesRequirement] = Field(default_factory=FilesRequirement)
    manual_steps: NullableList[Union[str, ManualStep]] = Field(default_factory=list)
    runtime_pins: dict[RuntimeId, str] = Field(
        default_factory=dict,
        description="Runtime library the recommended settings were checked against, as a PEP 508 pin "
        "(e.g. {'audio-separator': 'audio-separator==0.47.1'}); the env uses it instead of the runtime's default.",
    )


class OverlapSemantics(Base):
    meaning: Optional[OverlapMeaning] = Field(
        default=None, description="What `recommended_settings.overlap` means; translated per runtime at resolve time."
    )
    meaning_by_runtime: dict[str, str] = Field(
        default_factory=dict, description="The runtime's native meaning of overlap (checked against the settings table)."
    )
    notes: Optional[str] = None


class SegmentSemantics(Base):
    unit: Optional[SegmentUnit] = Field(
        default=None, description="Unit of `recommended_settings.segment_size`; null reads as samples."
    )


class SettingsSemantics(Base):
    """What the recommended values mean (seed §3.4).

    The seed proposal nests overlap under `recommended_settings.overlap`; the legacy file and we put it
    directly under `overlap`. `overlap_semantics()` reads either, so both spellings load.
    """

    frozen_calls: ClassVar[tuple[str, ...]] = ("overlap_semantics",)

    overlap: Nullable[OverlapSemantics] = Field(default_factory=OverlapSemantics)
    segment_size: Nullable[SegmentSemantics] = Field(default_factory=SegmentSemantics)

    def overlap_semantics(self) -> OverlapSemantics:
        if "overlap" not in self.model_fields_set:
            nested = (self.model_extra or {}).get("recommended_settings")
            if isinstance(nested, dict) and isinstance(nested.get("overlap"), dict):
                try:
                    return OverlapSemantics.model_validate(nested["overlap"])
                except ValueError:
                    pass  # the validator reports the malformed seed-style block
        return self.overlap


class PhaseFixParams(Base):
    lowHz: Optional[float] = None
    highHz: Optional[float] = None
    highFreqWeight: Optional[float] = None


class PhaseFix(Base):
    is_valid_reference: Optional[bool] = None
    recommended_params: Nullable[PhaseFixParams] = Field(default_factory=PhaseFixParams)
    recommended_usage: NullableList[str] = Field(default_factory=list)


class Capabilities(Base):
    stems: NullableList[str] = Field(default_factory=list)
    roles: NullableList[Role] = Field(default_factory=list)
    supports_mono: Optional[bool] = None
    supports_stereo: Optional[bool] = None


class Artifact(Base):
    kind: ArtifactKind = "other"
    filename: str = Field(description="Bare file name in the model's store folder (no directories).")
    sha256: Optional[str] = None
    size_bytes: Optional[int] = None
    url: Optional[str] = None
    mirrors: NullableList[str] = Field(default_factory=list, description="Fallback URLs, tried in order after `url`.")
    model_type: Optional[str] = Field(default=None, description="Code artifacts: the model type this code provides.")
    class_name: Optional[str] = Field(default=None, description="Code artifacts: the model class in the file.")
    unsafe_pickle: bool = Field(
        default=False, description="Checkpoints: loading needs full unpickling; still requires the user's consent."
    )
    runtimes: NullableList[RuntimeId] = Field(
        default_factory=list, description="The runtimes that use this file (e.g. a code artifact only msst "
        "imports): the others neither download nor judge it. Empty: every runtime.")


class Artifacts(Base):
    frozen_calls: ClassVar[tuple[str, ...]] = ("all",)

    primary: Optional[Artifact] = None
    config: Optional[Artifact] = None
    additional: NullableList[Artifact] = Field(default_factory=list)

    def all(self) -> list[Artifact]:
        return [a for a in (self.primary, self.config) if a is not None] + list(self.additional)


class UvrModelData(Base):
    """The parameters UVR's model data gives an MDX-Net or VR model (its `model_data.json` entry, in UVR's own
    key names). UVR and audio-separator find them by a hash of the model file; the audio-separator adapter
    writes them under the hash of the file actually on disk, so they do not depend on the file's name."""

    uvr_hash: Optional[str] = Field(
        default=None, description="The key UVR's model data lists these parameters under: MD5 of the published "
        "file's last 10,240,000 bytes (all of a smaller file). Evidence only; the file on disk is hashed at run time.")
    primary_stem: Optional[str] = Field(default=None, description="The stem the model predicts (UVR's spelling).")
    compensate: Optional[float] = Field(default=None, description="MDX-Net: volume compensation of the primary stem.")
    mdx_dim_f_set: Optional[int] = Field(default=None, description="MDX-Net: frequency bins the model takes (dim_f).")
    mdx_dim_t_set: Optional[int] = Field(default=None, description="MDX-Net: log2 of the frames it takes (dim_t = 2**n).")
    mdx_n_fft_scale_set: Optional[int] = Field(default=None, description="MDX-Net: STFT size (n_fft).")
    vr_model_param: Optional[str] = Field(default=None, description="VR: the model-param set (a JSON file name "
                                          "without .json in the library's vr_network/modelparams).")
    nout: Optional[int] = Field(default=None, description="VR 5.1 models: output channels (with nout_lstm).")
    nout_lstm: Optional[int] = Field(default=None, description="VR 5.1 models: LSTM width (with nout).")
    is_karaoke: Optional[bool] = None
    is_bv_model: Optional[bool] = None
    is_bv_model_rebalanced: Optional[float] = None


class ModelEntry(Base):
    id: str
    name: str = ""
    architecture: str = "Other"
    type: str = ""
    description: str = ""
    links: Nullable[Links] = Field(default_factory=Links)
    recommended_settings: Nullable[RecommendedSettings] = Field(default_factory=RecommendedSettings)
    runtime: Nullable[RuntimeSpec] = Field(default_factory=RuntimeSpec)
    compatibility: Nullable[Compatibility] = Field(default_factory=Compatibility)
    requirements: Nullable[Requirements] = Field(default_factory=Requirements)
    settings_semantics: Nullable[SettingsSemantics] = Field(default_factory=SettingsSemantics)
    phase_fix: Nullable[PhaseFix] = Field(default_factory=PhaseFix)
    capabilities: Nullable[Capabilities] = Field(default_factory=Capabilities)
    artifacts: Nullable[Artifacts] = Field(default_factory=Artifacts)
    evidence: NullableList[Evidence] = Field(default_factory=list)
    uvr_model_data: Optional[UvrModelData] = Field(
        default=None, description="MDX-Net and VR models: the parameters UVR's model data gives them.")

    frozen_calls: ClassVar[tuple[str, ...]] = ("to_json",)

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON data, as the file writes it (what a worker receives)."""
        return self.model_dump(mode="json")


class RegistryFile(Base):
    schema_version: Union[str, int] = "1"
    default_model: Optional[str] = Field(default=None, description="Model used when `separate` gets no -m.")
    models: list[ModelEntry]
