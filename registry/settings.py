"""Settings semantics: what `overlap` and `segment_size` mean in each runtime, and the translation into
the runtime's native parameters (docs/DESIGN.md §4).

The registry stores each recommended value once, with a declared meaning (`settings_semantics`). At
resolve time the value is translated into the meaning the chosen runtime's pinned library version
uses, with explicit rounding, and every resolved setting says where it came from.

The table was read in the libraries' own code (wheels from PyPI):
- audio-separator `architectures/mdxc_separator.py` (Roformer and MDX23C): MDX23C always steps by
  `chunk_size // overlap`. Roformer stepped by `int(overlap * sample_rate)` samples (seconds, clamped to
  the chunk) in 0.35.0, 0.44.0, 0.45.0 and 0.46.0, and by `chunk_size // overlap` since 0.47.0, whose
  default is the YAML `inference.num_overlap`, else 8. Roformer chunk = stft_hop_length * (dim_t - 1),
  dim_t being `segment_size` only with `override_model_segment_size`.
- audio-separator `mdx_separator.py`: step = int((1 - overlap) * chunk_size), `mdx_params` default 0.25;
  segment_size in STFT frames (default 256).
- audio-separator Demucs (`uvr_lib_v5/demucs/apply.py`): stride = int((1 - overlap) * segment), default
  0.25; `segment_size` in seconds ("Default" = the model's own).
- audio-separator VR: no overlap (window_size, aggression).
- msst 0.1.0 `utils/model_utils.py:demix`: step = chunk_size // inference.num_overlap for every model
  type; chunk_size from `inference.chunk_size`, else `audio.chunk_size`; htdemucs uses
  training.samplerate * training.segment instead.
- stemsep-legacy: our Roformer mirrors msst (divisor, `inference.num_overlap`); the DSP model has none.

Each row also says what the runtime accepts for each native parameter (`NativeRange`, from the same code);
resolution turns a whole-number float into an int for an integer parameter, refuses a translation that would
round to no overlap (`OverlapLostError`), and lists every other value outside the range as a `RangeProblem`
(preflight's E_SETTING_RANGE), never clamping it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping, Optional

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from registry.errors import ExitCode, StemSepError
from registry.vocab import ARCHITECTURE_FAMILIES, RUNTIME_IDS

if TYPE_CHECKING:
    from registry.view import ModelView

# The library version a runtime uses when the model pins none (envmgr.envs.runtime_defs pins the same).
RUNTIME_DEFAULT_VERSIONS: dict[str, Optional[str]] = {
    "audio-separator": "0.47.1",
    "msst": "0.1.0",
    "stemsep-legacy": None,  # our own code: versioned with this repo
}

# Families whose models msst runs chunk by chunk with one `num_overlap` divisor.
_MSST_CHUNKED = frozenset({"roformer", "mdx23c", "scnet", "bandit", "apollo", "other"})


@dataclass(frozen=True)
class NativeRange:
    """The values a runtime accepts for one native parameter, as read in its code. Preflight checks every
    translated value against it (E_SETTING_RANGE), so a value the runtime would refuse, or silently change,
    is caught before the job starts."""

    integer: bool = False  # an int is required: 4.0 fails there, or a fraction is cut off silently
    low: Optional[float] = None
    low_open: bool = False  # `low` itself is refused
    high: Optional[float] = None
    high_open: bool = False
    hop: bool = False  # overlap: the hop it gives must be at least one sample (checked when the chunk is known)
    source: str = ""

    def describe(self) -> str:
        words = ["an integer" if self.integer else "a number"]
        if self.low is not None:
            words.append(f"{'>' if self.low_open else '>='} {_plain(self.low)}")
        if self.high is not None:
            words.append(f"{'<' if self.high_open else '<='} {_plain(self.high)}")
        text = " ".join(words[:2]) + (f" and {words[2]}" if len(words) > 2 else "")
        return text + (" that leaves a hop of at least one sample" if self.hop else "")


def _plain(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class SettingsRule:
    """One row of the docs/DESIGN.md §4 table: how a runtime (at some library versions) reads the settings of a
    family."""

    runtime: str
    families: frozenset[str]
    versions: str  # PEP 440 specifier set the row applies to ("" = every version)
    overlap_meaning: str  # native meaning of the overlap parameter (vocab OVERLAP_MEANINGS)
    overlap_param: Optional[str]  # dotted native parameter, e.g. `mdxc_params.overlap`
    overlap_default: str  # what the runtime uses when we pass nothing
    segment_param: Optional[str] = None
    segment_unit: Optional[str] = None  # native unit of segment_param (vocab SEGMENT_UNITS)
    params: Mapping[str, str] = field(default_factory=dict)  # other settings: name -> native parameter
    extra_when_segment: Mapping[str, Any] = field(default_factory=dict)  # set along with segment_param
    source: str = ""
    accepts: Mapping[str, NativeRange] = field(default_factory=dict)  # setting name -> what the runtime takes

    def applies(self, runtime: str, family: str, version: Optional[str]) -> bool:
        if runtime != self.runtime or family not in self.families:
            return False
        if not self.versions:
            return True
        return version is not None and Version(version) in SpecifierSet(self.versions)


# What each runtime accepts, read in its code (same library versions as the table). A divisor must be an int:
# audio-separator's `chunk_size // 4.0` is a float that `range()` refuses, msst and stemsep-legacy refuse a
# non-Integral num_overlap.
_BATCH = NativeRange(integer=True, low=1, source="batch_size: chunks per batch, a positive integer in every runtime")
_AS_DIVISOR = NativeRange(integer=True, low=1, hop=True, source="audio-separator 0.47.1 mdxc_separator.py: "
                          "overlap <= 0 is refused and step = chunk_size // overlap must be > 0")
_AS_SECONDS = NativeRange(low=0, low_open=True, hop=True, source="audio-separator 0.44.0-0.46.0 mdxc_separator.py: "
                          "a desired step int(overlap * sample_rate) of 0 becomes the whole chunk (no overlap)")
_AS_FRAMES = NativeRange(integer=True, low=2, source="audio-separator: chunk = hop_length * (segment_size - 1) "
                         "must be at least one hop")
_AS_MDX_RATIO = NativeRange(low=0, high=1, high_open=True, hop=True, source="audio-separator mdx_separator.py: "
                            "step = int((1 - overlap) * chunk_size) must be > 0; below 0 chunks leave gaps")
_AS_DEMUCS_RATIO = NativeRange(low=0, high=1, high_open=True, hop=True, source="audio-separator demucs apply.py: "
                               "stride = int((1 - overlap) * segment) must be > 0; below 0 chunks leave gaps")
_AS_DEMUCS_SEGMENT = NativeRange(integer=True, low=1, source="audio-separator demucs apply.py demucs_segments: "
                                 "int(segment_size) cuts a fraction off")
_AS_SHIFTS = NativeRange(integer=True, low=0, source="audio-separator demucs apply.py: shifts, an integer >= 0")
_MSST_DIVISOR = NativeRange(integer=True, low=1, hop=True, source="msst 0.1.0 demix: num_overlap must be an "
                            "Integral >= 1 and at most chunk_size")
_MSST_SAMPLES = NativeRange(integer=True, low=1, source="msst 0.1.0 demix: chunk_size must be a positive integer")
_MSST_SECONDS = NativeRange(low=0, low_open=True, source="msst 0.1.0 demix (htdemucs): round(samplerate * "
                            "segment) must be >= 1")
_LEGACY_DIVISOR = NativeRange(integer=True, low=1, hop=True, source="runtimes/legacy/roformer/config.py: "
                              "num_overlap an integer >= 1, at most chunk_size")
_LEGACY_SAMPLES = NativeRange(integer=True, low=1, source="runtimes/legacy/roformer/config.py: chunk_size an "
                              "integer >= 1")

_AS_MDXC_PARAMS = {"batch_size": "mdxc_params.batch_size"}
_AS_MDXC_SEGMENT = {"mdxc_params.override_model_segment_size": True}

SETTINGS_TABLE: tuple[SettingsRule, ...] = (
    SettingsRule("audio-separator", frozenset({"roformer"}), ">=0.47.0", "divisor", "mdxc_params.overlap",
                 "YAML inference.num_overlap, else 8", "mdxc_params.segment_size", "frames", _AS_MDXC_PARAMS,
                 _AS_MDXC_SEGMENT, "audio-separator 0.47.1 mdxc_separator.py: step = chunk_size // overlap",
                 {"overlap": _AS_DIVISOR, "segment_size": _AS_FRAMES, "batch_size": _BATCH}),
    SettingsRule("audio-separator", frozenset({"roformer"}), "<0.47.0", "seconds", "mdxc_params.overlap",
                 "8", "mdxc_params.segment_size", "frames", _AS_MDXC_PARAMS, _AS_MDXC_SEGMENT,
                 "audio-separator 0.44.0-0.46.0 mdxc_separator.py: desired_step = int(overlap * sample_rate), "
                 "clamped to chunk_size", {"overlap": _AS_SECONDS, "segment_size": _AS_FRAMES, "batch_size": _BATCH}),
    SettingsRule("audio-separator", frozenset({"mdx23c"}), "", "divisor", "mdxc_params.overlap",
                 "8 (0.47+: YAML inference.num_overlap first)", "mdxc_params.segment_size", "frames",
                 _AS_MDXC_PARAMS, _AS_MDXC_SEGMENT,
                 "audio-separator mdxc_separator.py: hop_size = chunk_size // overlap",
                 {"overlap": _AS_DIVISOR, "segment_size": _AS_FRAMES, "batch_size": _BATCH}),
    SettingsRule("audio-separator", frozenset({"mdx_net"}), "", "ratio", "mdx_params.overlap", "0.25",
                 "mdx_params.segment_size", "frames", {"batch_size": "mdx_params.batch_size"}, {},
                 "audio-separator mdx_separator.py: step = int((1 - overlap) * chunk_size)",
                 {"overlap": _AS_MDX_RATIO, "segment_size": _AS_FRAMES, "batch_size": _BATCH}),
    SettingsRule("audio-separator", frozenset({"demucs"}), "", "ratio", "demucs_params.overlap", "0.25",
                 "demucs_params.segment_size", "seconds", {"shifts": "demucs_params.shifts"},
                 {"demucs_params.segments_enabled": True},
                 "audio-separator demucs apply.py: stride = int((1 - overlap) * segment)",
                 {"overlap": _AS_DEMUCS_RATIO, "segment_size": _AS_DEMUCS_SEGMENT, "shifts": _AS_SHIFTS}),
    SettingsRule("audio-separator", frozenset({"vr"}), "", "none", None, "-", None, None,
                 {"batch_size": "vr_params.batch_size", "tta": "vr_params.enable_tta"}, {},
                 "audio-separator vr_separator.py: window_size and aggression, no overlap", {"batch_size": _BATCH}),
    SettingsRule("msst", _MSST_CHUNKED, "", "divisor", "inference.num_overlap", "YAML inference.num_overlap",
                 "inference.chunk_size", "samples", {"batch_size": "inference.batch_size", "tta": "use_tta"}, {},
                 "msst 0.1.0 utils/model_utils.py demix: step = chunk_size // num_overlap",
                 {"overlap": _MSST_DIVISOR, "segment_size": _MSST_SAMPLES, "batch_size": _BATCH}),
    SettingsRule("msst", frozenset({"demucs"}), "", "divisor", "inference.num_overlap", "YAML inference.num_overlap",
                 "training.segment", "seconds", {"batch_size": "inference.batch_size", "tta": "use_tta"}, {},
                 "msst 0.1.0 demix (htdemucs): chunk = samplerate * segment, step = chunk // num_overlap",
                 {"overlap": _MSST_DIVISOR, "segment_size": _MSST_SECONDS, "batch_size": _BATCH}),
    SettingsRule("stemsep-legacy", frozenset({"roformer"}), "", "divisor", "inference.num_overlap",
                 "YAML inference.num_overlap", "inference.chunk_size", "samples",
                 {"batch_size": "inference.batch_size"}, {}, "runtimes/legacy mirrors msst's demix",
                 {"overlap": _LEGACY_DIVISOR, "segment_size": _LEGACY_SAMPLES, "batch_size": _BATCH}),
    SettingsRule("stemsep-legacy", frozenset({"dsp"}), "", "none", None, "-", None, None, {}, {},
                 "runtimes/legacy DSP model: whole-file STFT, no chunks"),
)


class SettingsError(StemSepError):
    """A recommended or user setting cannot be translated for the chosen runtime."""

    exit_code = ExitCode.PREFLIGHT_BLOCKED
    code = "E_SETTINGS"


def family_of(entry: ModelView) -> str:
    """The settings family of a model: an exact lookup of its declared `architecture` (never its id or name)."""
    return ARCHITECTURE_FAMILIES.get(entry.architecture, "other")


def pinned_version(entry: ModelView, runtime: str) -> Optional[str]:
    """The runtime library version the model's settings are keyed to: its exact pin, else the runtime default."""
    pin = entry.requirements.runtime_pins.get(runtime)
    default = RUNTIME_DEFAULT_VERSIONS.get(runtime)
    if not pin:
        return default
    exact = exact_pin_version(pin)
    if exact is not None:
        return exact
    from packaging.requirements import InvalidRequirement, Requirement  # here: only pinned models parse one

    try:
        spec = Requirement(pin).specifier
    except InvalidRequirement as exc:
        raise SettingsError(f"runtime pin {pin!r} of {entry.id} is not a valid PEP 508 requirement",
                            why=str(exc), hint="fix requirements.runtime_pins in the registry") from exc
    if default is not None and Version(default) in spec:
        return default
    raise SettingsError(
        f"cannot tell which {runtime} version {entry.id}'s settings are meant for",
        why=f"the pin {pin!r} is not an exact version and does not include the default {default}",
        hint=f"pin an exact version, e.g. {runtime}=={default}")


def is_torch_requirement(requirement: str) -> bool:
    """Whether a PEP 508 requirement names torch (an invalid one does not)."""
    from packaging.requirements import InvalidRequirement, Requirement  # here: most starts check no requirement
    from packaging.utils import canonicalize_name

    try:
        return canonicalize_name(Requirement(requirement).name) == "torch"
    except InvalidRequirement:
        return False


@lru_cache(maxsize=1024)  # a pure function of the text, asked several times per entry
def exact_pin_version(pin: str) -> Optional[str]:
    """`0.47.1` from `audio-separator[cpu]==0.47.1`; None when the pin is not a single exact version."""
    from registry import pep508

    requirement = pep508.parse(pin)
    if requirement is None:
        return None
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        try:
            return str(Version(specs[0].version))
        except InvalidVersion:
            return None
    return None


def settings_rule(runtime: str, family: str, version: Optional[str]) -> Optional[SettingsRule]:
    for row in SETTINGS_TABLE:
        if row.applies(runtime, family, version):
            return row
    return None


def native_overlap_meaning(entry: ModelView, runtime: str) -> Optional[str]:
    """The meaning `overlap` has in `runtime` for this model at its pinned version (None: no table row)."""
    try:
        row = settings_rule(runtime, family_of(entry), pinned_version(entry, runtime))
    except (SettingsError, InvalidVersion):
        return None
    return row.overlap_meaning if row else None


# ---- translation -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Geometry:
    """What the model's own config says about its chunks (known once its YAML is at hand; all optional)."""

    sample_rate: Optional[int] = None
    chunk_size: Optional[int] = None  # samples
    hop_length: Optional[int] = None  # STFT hop (audio-separator frames <-> samples)


DEFAULT_SAMPLE_RATE = 44100  # every model in the registry runs at 44.1 kHz unless its config says otherwise


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def hop_fraction(value: float, meaning: str, chunk: Optional[int], sample_rate: int) -> Optional[float]:
    """hop / chunk for an overlap value in its meaning; None when the chunk length is needed and unknown."""
    if meaning == "divisor":
        return 1.0 / value
    if meaning == "ratio":
        return 1.0 - value
    if meaning == "seconds":
        if not chunk:
            return None
        return min(value * sample_rate, chunk) / chunk
    raise ValueError(f"overlap meaning {meaning!r} has no hop")


def overlap_from_fraction(fraction: float, meaning: str, chunk: Optional[int], sample_rate: int) -> Optional[float]:
    """The native overlap value for a hop fraction, rounded explicitly:
    divisor: nearest integer (halves up), at least 1; ratio: 4 decimals in [0, 0.9999];
    seconds: 4 decimals (None without a chunk length)."""
    if meaning == "divisor":
        return max(1, _round_half_up(1.0 / fraction))
    if meaning == "ratio":
        return min(max(round(1.0 - fraction, 4), 0.0), 0.9999)
    if meaning == "seconds":
        return None if not chunk else round(fraction * chunk / sample_rate, 4)
    raise ValueError(f"overlap meaning {meaning!r} has no hop")


def translate_overlap(value: float, source: str, target: str, *, chunk: Optional[int] = None,
                      sample_rate: int = DEFAULT_SAMPLE_RATE) -> tuple[Optional[float], str]:
    """Translate an overlap `value` from meaning `source` to meaning `target` -> (native value, note).

    The native value is None when the translation needs a chunk length that is not known. A divisor is
    always an int (4.0 -> 4: every runtime fails on a float divisor).
    """
    if source == target:
        if target == "divisor" and type(value) is float and value.is_integer():  # 4.0: runtimes need an int
            return int(value), f"{value} ({target}) is the integer {int(value)}: passed as an int"
        return value, f"{value} ({target}) passed as is"
    if "none" in (source, target):
        return None, f"{source} overlap cannot be expressed as {target}"
    fraction = hop_fraction(value, source, chunk, sample_rate)
    if fraction is None or fraction <= 0:
        return None, f"{value} ({source}) needs the model's chunk size to become {target}"
    native = overlap_from_fraction(fraction, target, chunk, sample_rate)
    if native is None:
        return None, f"{value} ({source}) needs the model's chunk size to become {target}"
    back = hop_fraction(native, target, chunk, sample_rate)
    exact = back is not None and math.isclose(back, fraction, rel_tol=1e-6)
    return native, (f"{value} ({source}) -> {native} ({target}), hop {fraction:.4g} of the chunk"
                    + ("" if exact else f", rounded (now {back:.4g})"))


def segment_to_samples(value: float, unit: Optional[str], geo: Geometry, sample_rate: int) -> Optional[int]:
    if unit == "samples":
        return int(value)
    if unit == "seconds":
        return _round_half_up(value * sample_rate)
    if unit == "frames":
        return None if not geo.hop_length else geo.hop_length * (int(value) - 1)
    raise ValueError(f"segment unit {unit!r}")


def samples_to_segment(samples: int, unit: Optional[str], geo: Geometry, sample_rate: int) -> Optional[float]:
    """Rounded explicitly: frames to the nearest whole frame (halves up), seconds to 3 decimals."""
    if unit == "samples":
        return samples
    if unit == "seconds":
        return round(samples / sample_rate, 3)
    if unit == "frames":
        return None if not geo.hop_length else _round_half_up(samples / geo.hop_length) + 1
    raise ValueError(f"segment unit {unit!r}")


@dataclass(frozen=True)
class ResolvedSetting:
    name: str  # registry name: overlap, segment_size, batch_size, shifts, tta
    param: Optional[str]  # native parameter (dotted), None when the runtime has none
    value: Any  # native value; None: pass nothing, the runtime's default applies
    meaning: Optional[str]  # native meaning/unit of `value`
    provenance: str  # registry | user | runtime_default
    source_value: Any = None  # the value before translation
    source_meaning: Optional[str] = None
    note: str = ""


@dataclass(frozen=True)
class ResolvedSettings:
    runtime: str
    library_version: Optional[str]
    family: str
    rule_source: str
    settings: dict[str, ResolvedSetting]
    problems: tuple[RangeProblem, ...] = ()  # native values the runtime would refuse or silently change

    def native(self) -> dict[str, Any]:
        """Nested native parameters for the job message, e.g. {"inference": {"num_overlap": 4}}.

        Settings left to the runtime's default are omitted, so the runtime applies its own.
        """
        out: dict[str, Any] = {}
        for item in self.settings.values():
            if item.param is None or item.value is None:
                continue
            _set_dotted(out, item.param, item.value)
        row = settings_rule(self.runtime, self.family, self.library_version)
        seg = self.settings.get("segment_size")
        if row and seg is not None and seg.value is not None:
            for param, value in row.extra_when_segment.items():
                _set_dotted(out, param, value)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "library_version": self.library_version, "family": self.family,
                "rule_source": self.rule_source, "native": self.native(),
                "settings": {k: asdict(v) for k, v in self.settings.items()}}


def _set_dotted(out: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def resolve_settings(entry: ModelView, runtime: str, *, user: Optional[Mapping[str, Any]] = None,
                     user_meanings: Optional[Mapping[str, str]] = None, geometry: Optional[Geometry] = None,
                     library_version: Optional[str] = None) -> ResolvedSettings:
    """Resolve a model's settings for `runtime` into native parameters with provenance.

    `user` overrides win over the registry's recommendations. A user value is read in the runtime's
    native meaning (what that runtime's documentation and the guide's per-engine advice use) unless
    `user_meanings` names another meaning (`divisor`, `ratio`, `seconds`; for segment_size a unit).
    `geometry` (from the model's config, when available) supplies chunk size, sample rate and STFT hop
    for translations that need them; without it, a recommended segment_size in samples stands in for
    the chunk and the sample rate is taken as 44.1 kHz.
    """
    if runtime not in RUNTIME_IDS:
        raise SettingsError(f"unknown runtime {runtime!r}", hint=f"use one of {', '.join(RUNTIME_IDS)}")
    user = dict(user or {})
    user_meanings = dict(user_meanings or {})
    geo = geometry or Geometry()
    version = library_version or pinned_version(entry, runtime)
    family = family_of(entry)
    row = settings_rule(runtime, family, version)
    if row is None:
        raise SettingsError(
            f"{runtime} {version or ''} has no settings semantics for {entry.id} ({entry.architecture})".replace("  ", " "),
            why=f"the settings table (registry/settings.py) has no row for runtime {runtime}, family {family}",
            hint="pick a runtime from the model's runtime.allowed, or extend the settings table with evidence")
    rate = geo.sample_rate or DEFAULT_SAMPLE_RATE
    rec = entry.recommended_settings
    semantics = entry.settings_semantics
    resolved: dict[str, ResolvedSetting] = {}

    seg = _resolve_segment(row, rec.segment_size, semantics.segment_size.unit or "samples", user, user_meanings,
                           geo, rate)
    resolved["segment_size"] = seg
    chunk = geo.chunk_size or _segment_samples(seg, row, geo, rate)
    resolved["overlap"] = _resolve_overlap(row, rec.overlap, semantics.overlap_semantics().meaning, user,
                                           user_meanings, chunk, rate)
    for name in ("batch_size", "shifts", "tta"):
        param = row.params.get(name)
        if name in user:
            resolved[name] = ResolvedSetting(name, param, user[name] if param else None, None, "user", user[name],
                                             note="" if param else f"{runtime} has no {name} for this model; ignored")
            continue
        value = getattr(rec, name)
        if value is not None and param:
            resolved[name] = ResolvedSetting(name, param, value, None, "registry", value)
        else:
            resolved[name] = ResolvedSetting(name, param, None, None, "runtime_default", value,
                                             note="" if param or value is None
                                             else f"{runtime} has no {name} for this model; recommendation unused")
    resolved, problems = _fit_native_ranges(row, resolved, chunk, rate)
    return ResolvedSettings(runtime, version, family, row.source, resolved, problems)


def _resolve_segment(row: SettingsRule, recommended: Optional[int], unit: str, user: Mapping[str, Any],
                     user_meanings: Mapping[str, str], geo: Geometry, rate: int) -> ResolvedSetting:
    if row.segment_param is None:
        given = user.get("segment_size", recommended)
        return ResolvedSetting("segment_size", None, None, None, "runtime_default", given,
                               note="" if given is None else "this runtime has no segment size for the model")
    if "segment_size" in user:
        value, src_unit, provenance = user["segment_size"], user_meanings.get("segment_size", row.segment_unit), "user"
    elif recommended is not None:
        value, src_unit, provenance = recommended, unit, "registry"
    else:
        return ResolvedSetting("segment_size", row.segment_param, None, row.segment_unit, "runtime_default",
                               note="the model config's own chunk applies")
    if src_unit == row.segment_unit:
        return ResolvedSetting("segment_size", row.segment_param, value, row.segment_unit, provenance, value, src_unit)
    samples = segment_to_samples(value, src_unit, geo, rate)
    native = None if samples is None else samples_to_segment(samples, row.segment_unit, geo, rate)
    if native is None:
        return ResolvedSetting("segment_size", row.segment_param, None, row.segment_unit, "runtime_default", value,
                               src_unit, note=f"{value} {src_unit} needs the model's STFT hop length to become "
                               f"{row.segment_unit}; the model config's own segment applies")
    return ResolvedSetting("segment_size", row.segment_param, native, row.segment_unit, provenance, value, src_unit,
                           note=f"{value} {src_unit} -> {native} {row.segment_unit}")


def _segment_samples(seg: ResolvedSetting, row: SettingsRule, geo: Geometry, rate: int) -> Optional[int]:
    if seg.value is not None and row.segment_unit:
        return segment_to_samples(seg.value, row.segment_unit, geo, rate)
    if seg.source_value is not None and seg.source_meaning:
        return segment_to_samples(seg.source_value, seg.source_meaning, geo, rate)
    return None


def _resolve_overlap(row: SettingsRule, recommended: Optional[float], meaning: Optional[str],
                     user: Mapping[str, Any], user_meanings: Mapping[str, str], chunk: Optional[int],
                     rate: int) -> ResolvedSetting:
    native_meaning = row.overlap_meaning
    if "overlap" in user:
        value, src, provenance = user["overlap"], user_meanings.get("overlap", native_meaning), "user"
    elif recommended is not None and meaning in ("divisor", "ratio", "seconds"):
        value, src, provenance = recommended, meaning, "registry"
    else:
        note = f"runtime default: {row.overlap_default}"
        if recommended is not None:
            note = f"recommended {recommended} has no declared meaning ({meaning!r}); " + note
        return ResolvedSetting("overlap", row.overlap_param, None, native_meaning, "runtime_default",
                               recommended, meaning, note)
    if native_meaning == "none":
        return ResolvedSetting("overlap", None, None, "none", "runtime_default", value, src,
                               note="this runtime has no overlap parameter for the model; value unused")
    _check_overlap_value(value, src, provenance)
    native, note = translate_overlap(value, src, native_meaning, chunk=chunk, sample_rate=rate)
    if native is None:
        return ResolvedSetting("overlap", row.overlap_param, None, native_meaning, "runtime_default", value, src,
                               note=f"{note}; runtime default applies: {row.overlap_default}")
    _refuse_lost_overlap(row, value, src, native, provenance, chunk, rate)
    return ResolvedSetting("overlap", row.overlap_param, native, native_meaning, provenance, value, src, note)


def _check_overlap_value(value: Any, meaning: str, provenance: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e9 and math.isfinite(value)
    if ok and meaning == "divisor":
        ok = value >= 1 and float(value).is_integer()
    elif ok and meaning == "ratio":
        ok = 0 <= value < 1
    elif ok and meaning == "seconds":
        ok = value > 0
    elif meaning not in ("divisor", "ratio", "seconds"):
        raise SettingsError(f"unknown overlap meaning {meaning!r}", hint="use divisor, ratio or seconds")
    if not ok:
        what = {"divisor": "an integer >= 1", "ratio": "a number in [0, 1)", "seconds": "a number > 0"}[meaning]
        where = "your --overlap" if provenance == "user" else "the registry's recommended overlap"
        raise SettingsError(f"overlap {value!r} is not a valid {meaning}", why=f"{where} must be {what}",
                            hint="pass a value in the runtime's native meaning, or name its meaning")


# ---- what the runtime accepts ------------------------------------------------------------------

class OverlapLostError(SettingsError):
    """A translated overlap would round to no overlap at all, which the value asked for did not mean."""


def _no_overlap(value: float, meaning: str, chunk: Optional[int], rate: int) -> bool:
    fraction = hop_fraction(value, meaning, chunk, rate)
    return fraction is not None and fraction >= 1 - 1e-9


# The largest hop fraction that still rounds to some overlap in a meaning (overlap_from_fraction's rounding):
# divisor: round_half_up(1 / f) >= 2 while f <= 2/3; ratio: round(1 - f, 4) >= 0.0001 while f <= 0.99995.
_LAST_OVERLAPPING_FRACTION = {"divisor": 2 / 3, "ratio": 0.99995}
_LEAST_OVERLAP = {"divisor": 2, "ratio": 0.0001}  # the least overlap each meaning can express
_NO_OVERLAP = {"divisor": 1, "ratio": 0}


def _refuse_lost_overlap(row: SettingsRule, value: float, src: str, native: float, provenance: str,
                         chunk: Optional[int], rate: int) -> None:
    """Refuse a translation that rounds to no overlap (divisor 1, ratio 0) from a value that asked for some.

    A value that itself means no overlap (ratio 0, divisor 1, a hop of a whole chunk in seconds) keeps that
    meaning and passes: the user or the registry said so explicitly.
    """
    target = row.overlap_meaning
    if src == target or not _no_overlap(native, target, chunk, rate) or _no_overlap(value, src, chunk, rate):
        return
    least = _LEAST_OVERLAP.get(target)
    last = _LAST_OVERLAPPING_FRACTION.get(target)
    options = []
    if last is not None:
        if src == "ratio":
            options.append(f"a ratio of at least {math.ceil((1 - last) * 10000) / 10000}")
        elif src == "seconds" and chunk:
            options.append(f"at most {math.floor(last * chunk / rate * 10000) / 10000} seconds")
        elif src == "divisor":
            options.append(f"a divisor of at least {math.ceil(1 / last)}")
    explicit = _NO_OVERLAP.get(src)
    where = "--overlap" if provenance == "user" else "recommended_settings.overlap in the registry"
    hint = f"use {' or '.join(options) or 'a value with more overlap'} in {where}"
    if least is not None:
        hint += f" ({row.runtime}'s least overlap is {target} {least})"
    hint += (f", or {src} {explicit} to mean no overlap" if explicit is not None else "")
    if least is not None:
        hint += f"; or pass {row.runtime}'s own value: --overlap {least} or more"
    raise OverlapLostError(
        f"overlap {value} ({src}) would become {target} {_plain(native)} on {row.runtime}: no overlap at all",
        why=f"{row.runtime} reads overlap as a {target} ({row.source}); {value} as a {src} is a hop of "
        f"{hop_fraction(value, src, chunk, rate):.4g} of the chunk, and the nearest {target} steps by the whole "
        "chunk, so chunks would no longer overlap", hint=hint)


@dataclass(frozen=True)
class RangeProblem:
    """A native value the runtime would refuse or silently change, with the nearest valid values."""

    name: str  # registry name: overlap, segment_size, batch_size, shifts
    param: Optional[str]  # the native parameter (settings without one are never checked)
    value: Any
    provenance: str
    message: str
    why: str
    hint: str


def _fit_native_ranges(row: SettingsRule, resolved: dict[str, ResolvedSetting], chunk: Optional[int],
                       rate: int) -> tuple[dict[str, ResolvedSetting], tuple[RangeProblem, ...]]:
    """Integers written as floats (4.0) become ints, with a note; values outside what the runtime accepts
    become problems. Nothing else changes: a value is never clamped silently."""
    out = dict(resolved)
    problems = []
    for name, item in resolved.items():
        accepts = row.accepts.get(name)
        if accepts is None or item.param is None or item.value is None:
            continue
        if accepts.integer and type(item.value) is float and item.value.is_integer():
            note = f"{item.value} is the integer {int(item.value)}: passed as an int"
            item = out[name] = replace(item, value=int(item.value), note=f"{item.note}; {note}" if item.note else note)
        problem = _range_problem(row, item, accepts, chunk, rate)
        if problem is not None:
            problems.append(problem)
    return out, tuple(problems)


def _range_problem(row: SettingsRule, item: ResolvedSetting, accepts: NativeRange, chunk: Optional[int],
                   rate: int) -> Optional[RangeProblem]:
    value = item.value
    nearest: list[Any] = []
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        broken = "it is not a number"
    elif accepts.low is not None and (value < accepts.low or (accepts.low_open and value == accepts.low)):
        broken, nearest = "it is too small", [_inside(accepts, accepts.low, accepts.low_open, +1)]
    elif accepts.high is not None and (value > accepts.high or (accepts.high_open and value == accepts.high)):
        broken, nearest = "it is too large", [_inside(accepts, accepts.high, accepts.high_open, -1)]
    elif accepts.integer and not isinstance(value, int):
        broken, nearest = "it is not an integer", sorted({math.floor(value), math.ceil(value)})
    elif accepts.hop and chunk and item.meaning and _hop_samples(value, item.meaning, chunk, rate) < 1:
        broken = (f"it leaves a hop of {_hop_samples(value, item.meaning, chunk, rate)} samples in the model's "
                  f"chunk of {chunk}")
        nearest = [_least_hop_value(item.meaning, chunk, rate)]
    else:
        return None
    flag = f"--{item.name.replace('_', '-')}"
    where = flag if item.provenance == "user" else f"recommended_settings.{item.name} in the registry"
    translated = (f" (translated from {item.source_value} {item.source_meaning})"
                  if item.source_meaning and item.source_meaning != item.meaning else "")
    if nearest:
        hint = (f"the nearest valid {item.meaning or 'value'}: {' or '.join(_plain(n) for n in nearest)}; "
                f"use it in {where}" + (f", or pass {flag} {_plain(nearest[0])}" if item.provenance != "user" else ""))
    else:
        hint = f"give {accepts.describe()} in {where}"
    return RangeProblem(item.name, item.param, value, item.provenance,
                        f"{item.name} {_plain(value)}{translated} is not a value {row.runtime} accepts for "
                        f"{item.param}", why=f"{item.param} must be {accepts.describe()}, and {broken} ({accepts.source})", hint=hint)


def _inside(accepts: NativeRange, bound: float, is_open: bool, direction: int) -> float:
    """The valid value nearest an exceeded bound: the bound itself, or the next integer / 4-decimal step inside."""
    if accepts.integer:
        return int(bound) + (direction if is_open else 0)
    return round(bound + direction * 0.0001, 4) if is_open else bound


def _hop_samples(value: float, meaning: str, chunk: int, rate: int) -> int:
    """The hop in samples, computed as the runtimes compute it."""
    if meaning == "divisor":
        return int(chunk // value)
    if meaning == "ratio":
        return int((1 - value) * chunk)
    if meaning == "seconds":
        return int(value * rate)
    raise ValueError(f"overlap meaning {meaning!r} has no hop")


def _least_hop_value(meaning: str, chunk: int, rate: int) -> float:
    """The valid value with the most overlap: a hop of one sample."""
    if meaning == "divisor":
        return chunk
    if meaning == "ratio":
        return math.floor((1 - 1 / chunk) * 10000) / 10000
    return math.ceil(10000 / rate) / 10000
