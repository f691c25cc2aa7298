"""MSST YAML configs of BS-Roformer and Mel-Band-Roformer, read into typed, validated settings.

Facts from msst 0.1.0 (read, not copied): the config has `audio`, `model`, `training` and `inference`
sections; `model` holds the constructor arguments of the architecture (msst passes them all as
keyword arguments, so an unknown key fails there); YAML tuples are tagged `!!python/tuple`. The
chunk is `inference.chunk_size`, else `audio.chunk_size`; the output stems are
`[training.target_instrument]` when set, else `training.instruments`.

We read the YAML with a safe loader that knows the tuple tag and nothing else of Python's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from runtimes.legacy.roformer.errors import ConfigError

BS_ROFORMER = "bs_roformer"
MEL_BAND_ROFORMER = "mel_band_roformer"
# BS-Roformers with mask estimators of their own (unwa's published code; hyperace.py, fno.py).
BS_HYPERACE = "bs_roformer_hyperace"
BS_HYPERACE_V2 = "bs_roformer_hyperace_v2"
BS_FNO = "bs_roformer_fno"
MODEL_TYPES = (BS_ROFORMER, MEL_BAND_ROFORMER, BS_HYPERACE, BS_HYPERACE_V2, BS_FNO)
# The mask head each model type has: per-band MLPs, MLPs plus a HyperACE segm branch, or per-band FNOs.
MASK_HEADS = {BS_ROFORMER: "mlp", MEL_BAND_ROFORMER: "mlp", BS_HYPERACE: "hyperace_v1", BS_HYPERACE_V2: "hyperace_v2",
              BS_FNO: "fno"}

# msst's BSRoformer default band split (62 bands over 1025 bins of a 2048-point STFT).
DEFAULT_FREQS_PER_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)

# Constructor arguments that only matter for training or pick an attention kernel: accepted, ignored.
_IGNORED_MODEL_KEYS = frozenset({
    "attn_dropout", "ff_dropout", "flash_attn", "dim_freqs_in", "use_torch_checkpoint",
    "multi_stft_resolution_loss_weight", "multi_stft_resolutions_window_sizes", "multi_stft_hop_size",
    "multi_stft_normalized", "multi_stft_window_fn",
})
_COMMON_MODEL_KEYS = frozenset({
    "dim", "depth", "stereo", "num_stems", "time_transformer_depth", "freq_transformer_depth",
    "linear_transformer_depth", "dim_head", "heads", "stft_n_fft", "stft_hop_length", "stft_win_length",
    "stft_normalized", "zero_dc", "mask_estimator_depth", "mlp_expansion_factor", "skip_connection", "use_pope",
})
_FAMILY_MODEL_KEYS = {
    BS_ROFORMER: frozenset({"freqs_per_bands"}),
    MEL_BAND_ROFORMER: frozenset({"num_bands", "sample_rate", "match_input_audio_length"}),
    BS_FNO: frozenset({"freqs_per_bands"}),
}
# The published HyperACE BSRoformer's constructor (v1 and v2 alike): no zero_dc or use_pope (it never zeroes
# the DC bin); it takes linear_transformer_depth and skip_connection but never uses them; sage_attention only
# picks an attention kernel.
_HYPERACE_MODEL_KEYS = (_COMMON_MODEL_KEYS - {"zero_dc", "use_pope"}) | {"freqs_per_bands", "sage_attention"}


@dataclass(frozen=True)
class ArchConfig:
    """The architecture: everything that shapes the weights or the computation."""

    model_type: str
    dim: int
    depth: int
    stereo: bool = False
    num_stems: int = 1
    time_transformer_depth: int = 2
    freq_transformer_depth: int = 2
    linear_transformer_depth: int = 0
    dim_head: int = 64
    heads: int = 8
    stft_n_fft: int = 2048
    stft_hop_length: int = 512
    stft_win_length: int = 2048
    stft_normalized: bool = False
    zero_dc: bool = True
    mask_estimator_depth: int = 2
    mlp_expansion_factor: int = 4
    skip_connection: bool = False
    freqs_per_bands: tuple[int, ...] = DEFAULT_FREQS_PER_BANDS  # bs_roformer
    num_bands: int = 60  # mel_band_roformer
    mel_sample_rate: int = 44100  # mel_band_roformer: the mel filter bank's sample rate
    match_input_audio_length: bool = False  # mel_band_roformer

    @property
    def channels(self) -> int:
        return 2 if self.stereo else 1

    @property
    def n_freqs(self) -> int:
        return self.stft_n_fft // 2 + 1

    @property
    def is_mel(self) -> bool:
        return self.model_type == MEL_BAND_ROFORMER

    @property
    def mask_head(self) -> str:
        """mlp | hyperace_v1 | hyperace_v2 | fno (MASK_HEADS)."""
        return MASK_HEADS[self.model_type]


@dataclass(frozen=True)
class InferenceConfig:
    """How to run the model over a track (msst's demix settings) and what its outputs are called."""

    sample_rate: int
    chunk_size: int
    num_overlap: int
    batch_size: int
    instruments: tuple[str, ...]
    target_instrument: str | None = None
    use_amp: bool = True
    normalize: bool = False
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def stems(self) -> tuple[str, ...]:
        """The stems the model outputs, in order."""
        return (self.target_instrument,) if self.target_instrument else self.instruments

    @property
    def step(self) -> int:
        return self.chunk_size // self.num_overlap


@dataclass(frozen=True)
class RoformerConfig:
    arch: ArchConfig
    inference: InferenceConfig
    path: str = ""

    def head_indices(self) -> tuple[int, ...]:
        """Which mask-estimator heads produce `inference.stems` (msst runs only the target's head)."""
        inf, n = self.inference, self.arch.num_stems
        if inf.target_instrument:
            if n == len(inf.instruments):
                return (inf.instruments.index(inf.target_instrument),)
            if n == 1:
                return (0,)
        elif n == len(inf.instruments):
            return tuple(range(n))
        raise ConfigError(
            f"{self.path}: model.num_stems is {n}, but the config names {len(inf.instruments)} instruments "
            f"{list(inf.instruments)}" + (f" with target_instrument {inf.target_instrument!r}" if inf.target_instrument else ""),
            hint="num_stems must equal the number of instruments, or be 1 with a training.target_instrument; "
                 "use the config published with the checkpoint")

    def with_overrides(self, **values: Any) -> "RoformerConfig":
        """Native settings from the job (chunk_size, num_overlap, batch_size, use_amp), validated like the YAML."""
        given = {k: v for k, v in values.items() if v is not None}
        if not given:
            return self
        for key in ("chunk_size", "num_overlap", "batch_size"):
            if key in given:
                given[key] = _positive_int(given[key], f"setting {key}", self.path)
        if "use_amp" in given:
            given["use_amp"] = _bool(given["use_amp"], "setting use_amp", self.path)
        inference = replace(self.inference, **given)
        _check_overlap(inference, self.path)
        return replace(self, inference=inference)


class _TupleSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader plus MSST's `!!python/tuple`; every other Python tag stays refused."""


_TupleSafeLoader.add_constructor("tag:yaml.org,2002:python/tuple",
                                 lambda loader, node: tuple(loader.construct_sequence(node)))


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config {path} does not exist", hint="check the path, or run `stemsep preflight` to fetch it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}", hint="the file must be a UTF-8 YAML text file") from None
    try:
        data = yaml.load(text, Loader=_TupleSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"config {path} uses a YAML tag we do not load: {exc.problem}",
                          hint="MSST configs need no Python objects besides !!python/tuple; remove the tag") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}", hint="fix the YAML syntax at the position shown") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} is not a YAML mapping (got {type(data).__name__})",
                          hint="an MSST config has top-level sections audio, model, training, inference")
    return data


def load_config(path: str | Path, model_type: str | None = None) -> RoformerConfig:
    """Read an MSST config of a BS-/Mel-Roformer; `model_type` (from the registry) wins over guessing."""
    data = read_yaml(path)
    src = str(path)
    model = _section(data, "model", src, required=True)
    training = _section(data, "training", src, required=True)
    audio = _section(data, "audio", src)
    inference = _section(data, "inference", src)

    declared = training.get("model_type")
    model_type = model_type or declared or _guess_model_type(model, src)
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"{src}: model type {model_type!r} is not one of the Roformers stemsep-legacy implements",
                          hint=f"stemsep-legacy implements {', '.join(MODEL_TYPES)}; run other types with the msst runtime")
    return RoformerConfig(arch=_arch(model, model_type, src), inference=_inference(audio, training, inference, src), path=src)


def _guess_model_type(model: Mapping[str, Any], src: str) -> str:
    if "num_bands" in model or "sample_rate" in model:
        return MEL_BAND_ROFORMER
    if "freqs_per_bands" in model:
        return BS_ROFORMER
    raise ConfigError(f"{src}: cannot tell whether this is a BS-Roformer or a Mel-Band-Roformer config",
                      hint="pass the model type (bs_roformer or mel_band_roformer), e.g. the registry's runtime.model_type")


def _section(data: Mapping[str, Any], name: str, src: str, required: bool = False) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None:
        if required:
            raise ConfigError(f"{src} has no `{name}` section", hint="an MSST config has sections audio, model, training, inference; "
                              "use the config published with the checkpoint")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{src}: `{name}` must be a mapping, got {type(value).__name__}")
    return value


def _arch(model: Mapping[str, Any], model_type: str, src: str) -> ArchConfig:
    hyperace = MASK_HEADS[model_type].startswith("hyperace")
    if hyperace:
        allowed = _HYPERACE_MODEL_KEYS | _IGNORED_MODEL_KEYS
    else:
        allowed = _COMMON_MODEL_KEYS | _FAMILY_MODEL_KEYS[model_type] | _IGNORED_MODEL_KEYS
    unknown = sorted(set(model) - allowed)
    if unknown:
        owner = "the published HyperACE code's" if hyperace else "msst 0.1.0's"
        raise ConfigError(f"{src}: model options {unknown} are not part of {owner} {model_type}",
                          hint="this checkpoint needs a modified architecture; run it with the msst runtime and the model's own code")
    if model.get("use_pope"):
        raise ConfigError(f"{src}: use_pope (polar positional embeddings) is not implemented by stemsep-legacy",
                          hint="run this model with the msst runtime")
    for key in ("dim", "depth"):
        if key not in model:
            raise ConfigError(f"{src}: model.{key} is missing", hint="use the config published with the checkpoint")

    def integer(key: str, default: int, minimum: int = 1) -> int:
        return _positive_int(model.get(key, default), f"model.{key}", src, minimum)

    def boolean(key: str, default: bool) -> bool:
        return _bool(model.get(key, default), f"model.{key}", src)

    mel = model_type == MEL_BAND_ROFORMER
    arch = ArchConfig(
        model_type=model_type, dim=integer("dim", 0), depth=integer("depth", 0), stereo=boolean("stereo", False),
        num_stems=integer("num_stems", 1), time_transformer_depth=integer("time_transformer_depth", 2),
        freq_transformer_depth=integer("freq_transformer_depth", 2),
        linear_transformer_depth=integer("linear_transformer_depth", 0, minimum=0),
        dim_head=integer("dim_head", 64), heads=integer("heads", 8), stft_n_fft=integer("stft_n_fft", 2048),
        stft_hop_length=integer("stft_hop_length", 512), stft_win_length=integer("stft_win_length", 2048),
        stft_normalized=boolean("stft_normalized", False),
        # msst's BSRoformer zeroes the DC bin by default; the variants' published code predates that option.
        zero_dc=boolean("zero_dc", model_type in (BS_ROFORMER, MEL_BAND_ROFORMER)),
        mask_estimator_depth=integer("mask_estimator_depth", 1 if mel else 2),
        mlp_expansion_factor=integer("mlp_expansion_factor", 4), skip_connection=boolean("skip_connection", False),
        num_bands=integer("num_bands", 60), mel_sample_rate=integer("sample_rate", 44100),
        match_input_audio_length=boolean("match_input_audio_length", False),
    )
    if arch.dim_head % 2:
        raise ConfigError(f"{src}: model.dim_head must be even for rotary embeddings, got {arch.dim_head}")
    if arch.stft_win_length > arch.stft_n_fft:
        raise ConfigError(f"{src}: stft_win_length {arch.stft_win_length} exceeds stft_n_fft {arch.stft_n_fft}")
    if not mel:
        bands = model.get("freqs_per_bands", DEFAULT_FREQS_PER_BANDS)
        if not isinstance(bands, (list, tuple)) or len(bands) < 2:
            raise ConfigError(f"{src}: model.freqs_per_bands must be a list of at least two band widths")
        bands = tuple(_positive_int(b, "model.freqs_per_bands[]", src) for b in bands)
        if sum(bands) != arch.n_freqs:
            raise ConfigError(f"{src}: model.freqs_per_bands sums to {sum(bands)}, but a {arch.stft_n_fft}-point STFT has "
                              f"{arch.n_freqs} bins", hint="the band widths must cover every STFT bin exactly once")
        arch = replace(arch, freqs_per_bands=bands)
    if hyperace:
        arch = replace(arch, linear_transformer_depth=0, skip_connection=False)  # the published forward skips both
        if not arch.stereo:
            raise ConfigError(f"{src}: {model_type} with stereo: false: the published HyperACE code's segm branch "
                              "only fits stereo models (4 output channels: 2 audio channels x re/im)",
                              hint="use the config published with the checkpoint (stereo: true)")
    return arch


def _inference(audio: Mapping[str, Any], training: Mapping[str, Any], inference: Mapping[str, Any], src: str) -> InferenceConfig:
    instruments = training.get("instruments")
    if not instruments:
        raise ConfigError(f"{src}: training.instruments is missing or empty, so the model's stems have no names",
                          hint="add the stem names the checkpoint was trained on, e.g. `instruments: [vocals, other]`; "
                               "better, use the config published with the checkpoint")
    if not isinstance(instruments, (list, tuple)) or not all(isinstance(i, str) and i for i in instruments):
        raise ConfigError(f"{src}: training.instruments must be a list of stem names, got {instruments!r}")
    if len(set(instruments)) != len(instruments):
        raise ConfigError(f"{src}: training.instruments has duplicate names: {list(instruments)}")
    target = training.get("target_instrument") or None
    if target is not None and target not in instruments:
        raise ConfigError(f"{src}: training.target_instrument {target!r} is not one of training.instruments {list(instruments)}")
    chunk = inference.get("chunk_size", audio.get("chunk_size"))
    if chunk is None:
        raise ConfigError(f"{src}: neither inference.chunk_size nor audio.chunk_size is set",
                          hint="set the chunk length in samples, e.g. `audio: {chunk_size: 352800}`")
    warnings = []
    overlap = inference.get("num_overlap")
    if overlap is None:
        overlap = 4
        warnings.append(f"{src} sets no inference.num_overlap; using 4 (step = chunk_size // 4)")
    result = InferenceConfig(
        sample_rate=_positive_int(audio.get("sample_rate", 44100), "audio.sample_rate", src),
        chunk_size=_positive_int(chunk, "chunk_size", src),
        num_overlap=_positive_int(overlap, "inference.num_overlap", src),
        batch_size=_positive_int(inference.get("batch_size", 1), "inference.batch_size", src),
        instruments=tuple(instruments), target_instrument=target,
        use_amp=_bool(training.get("use_amp", True), "training.use_amp", src),
        normalize=_bool(inference.get("normalize", False), "inference.normalize", src),
        warnings=tuple(warnings),
    )
    _check_overlap(result, src)
    return result


def _check_overlap(inference: InferenceConfig, src: str) -> None:
    if inference.num_overlap > inference.chunk_size:
        raise ConfigError(f"{src}: num_overlap {inference.num_overlap} exceeds chunk_size {inference.chunk_size}, "
                          "which makes the step zero", hint="num_overlap is a divisor: step = chunk_size // num_overlap; use 2-8")


def _positive_int(value: Any, what: str, src: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{src}: {what} must be an integer >= {minimum}, got {value!r}",
                          hint="fix that value (the published config of the checkpoint has it right)")
    return value


def _bool(value: Any, what: str, src: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{src}: {what} must be true or false, got {value!r}", hint="write true or false")
    return value
