"""What each runtime version can really run: architectures, model types, file formats, channel layouts,
config keys. Data read in the libraries' code (audio-separator 0.47.1, msst 0.1.0) and ours.

One table, read by the validator (an entry may not allow a runtime these facts exclude: registry/rules/
runtime_capabilities.py), by routing and `models show` (to say why a runtime cannot run a model), by
preflight (the same facts against the model's actual config file once it is in the model store, and the
env's torch/torchvision pair where an architecture needs it) and by envmgr's runtime definitions.
Looked up by the entry's declared `architecture`, `runtime.model_type`, `capabilities` and artifacts:
never by a model's id or name. Works on typed and frozen entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

from registry.vocab import ARCHITECTURE_FAMILIES

# Checkpoint files torch.load reads (the suffix says nothing to it); ONNX files need onnxruntime/onnx2torch.
TORCH_FILES = (".ckpt", ".pth", ".pt", ".th", ".chpt", ".bin")
ONNX_FILES = (".onnx",)
# Needs an architecture may put on the env (preflight checks them against the env's installed packages).
NEEDS_TORCHVISION_FOR_TORCH = "torchvision-built-for-env-torch"
NEEDS_TORCHAUDIO_FOR_TORCH = "torchaudio-built-for-env-torch"


@dataclass(frozen=True)
class SystemLibrary:
    """A shared library a runtime loads from the system (no wheel ships it): preflight looks for it."""

    name: str  # as ctypes.util.find_library takes it
    why: str
    install: str  # how to get it, in plain words
    multi_band_only: bool = False  # needed only by VR param sets of more than one band

    def applies(self, entry: Any) -> bool:
        return not self.multi_band_only or _vr_bands(entry) > 1


def _vr_bands(entry: Any) -> int:
    """Bands of the entry's VR param set, from its name as UVR writes it (`4band_v3`, `1band_sr44100_hl1024`)."""
    param = str(getattr(getattr(entry, "uvr_model_data", None), "vr_model_param", None) or "")
    count = param.split("band", 1)[0] if "band" in param else ""
    return int(count) if count.isdigit() else 0


# audio-separator 0.47.1's VR separator resamples each band of a multi-band param set with librosa's sinc
# resamplers, i.e. the `samplerate` package, whose 0.1.0 binding dlopens the system's libsamplerate
# ("OSError: libsamplerate not found" without it). One-band param sets never resample.
LIBSAMPLERATE = SystemLibrary(
    "samplerate", "audio-separator's VR separator resamples each band of a multi-band model with the `samplerate` "
    "package, which loads the system's libsamplerate",
    "install libsamplerate (Debian/Ubuntu: apt-get install libsamplerate0; Fedora: dnf install libsamplerate; "
    "macOS: brew install libsamplerate), or pick a one-band VR model", multi_band_only=True)


@dataclass(frozen=True)
class ArchCapability:
    """How one runtime version runs one architecture (a registry `architecture` value)."""

    files: tuple[str, ...]  # model-file suffixes its loader reads
    mono_models: bool  # runs a model whose network takes one channel (Roformer `model.stereo: false`)
    mono_why: str = ""  # why not, in plain words (shown by routing, `models show`, preflight)
    splits_channels: bool = False  # a mono model given stereo runs each channel on its own (stereo stems)
    model_types: tuple[str, ...] = ()  # MSST model types its own code builds; empty: it does not read model_type
    config_keys: tuple[str, ...] = ()  # dotted keys of the model's config it reads without a default
    # Keys it needs that a model's config may lack, with the value the adapter writes into a derived copy
    # of the config (the original file is never modified); preflight reports the adaptation.
    adapted_keys: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # env needs (NEEDS_*), checked by preflight against the env
    system_libraries: tuple[SystemLibrary, ...] = ()  # checked by preflight against the machine
    needs_config: bool = False  # its loader builds the network from the model's config file (artifacts.config)


@dataclass(frozen=True)
class MemoryGrowth:
    """How a runtime's worker grows with the input's length: the library loads the whole file and holds every
    stem whole. Measured by scripts/bench/memory_bench.py (figures and how in docs/runtimes.md)."""

    base_mib: float  # peak RSS of a worker with the bench's tiny model on a short input: imports, library, buffers
    mib_per_minute: float  # growth per minute of input (both libraries work on 44.1 kHz stereo, whatever the file)

    def peak_mib(self, minutes: float, weights_mib: float = 0.0) -> float:
        """Estimated peak RSS for `minutes` of input and a model of `weights_mib` (its checkpoint's size)."""
        return self.base_mib + weights_mib + self.mib_per_minute * minutes


@dataclass(frozen=True)
class RuntimeCapabilities:
    runtime: str
    label: str  # the runtime and the library version these facts were read in, e.g. "msst 0.1.0"
    architectures: Mapping[str, ArchCapability]
    memory: Optional[MemoryGrowth] = None  # None: it streams, memory does not grow with the input

    def arch(self, architecture: str) -> Optional[ArchCapability]:
        return self.architectures.get(architecture)


# msst 0.1.0 utils/settings.py build_model_from_config.
MSST_MODEL_TYPES = (
    "mdx23c", "htdemucs", "segm_models", "torchseg", "mel_band_roformer", "mel_band_conformer",
    "mel_band_roformer_experimental", "bs_roformer", "bs_conformer", "bs_roformer_experimental", "bs_mamba2",
    "swin_upernet", "bandit", "bandit_v2", "scnet_unofficial", "scnet", "scnet_tran", "apollo",
    "experimental_mdx23c_stht", "scnet_masked", "conformer", "moises_light",
)
_MSST_MONO_WHY = ("its demix always feeds two channels (utils/model_utils.py repeats a mono mix), which a "
                  "one-channel Roformer refuses")
_AS_MONO_WHY = ("it makes every mix stereo (common_separator.prepare_mix), and a one-channel Roformer refuses "
                "two channels")
# Its TFC_TDF_net (uvr_lib_v5/tfc_tdf_v3.py) sizes the first convolution by audio.num_channels, and its STFT
# inverse always shapes two channels, so even a one-channel mix would come back wrong.
_AS_MDX23C_MONO_WHY = ("it makes every mix stereo (common_separator.prepare_mix), and a one-channel MDX23C's first "
                       "convolution refuses two channels (its STFT inverse also assumes two)")
# audio-separator 0.47.1 reads training.target_instrument with ml_collections' ConfigDict, which raises on a
# missing key ("Failed to instantiate Roformer model: 'target_instrument'"); null means "every instrument".
def _as_mdxc(files: tuple[str, ...], mono: bool, why: str = "") -> ArchCapability:
    return ArchCapability(files, mono, why, config_keys=("training.instruments",),
                          adapted_keys={"training.target_instrument": None}, needs_config=True)


def _msst(*model_types: str) -> ArchCapability:
    return ArchCapability(TORCH_FILES, False, _MSST_MONO_WHY, model_types=model_types or MSST_MODEL_TYPES,
                          needs_config=True)


CAPABILITIES: dict[str, RuntimeCapabilities] = {c.runtime: c for c in (
    RuntimeCapabilities("audio-separator", "audio-separator 0.47.1", {
        "BS-Roformer": _as_mdxc(TORCH_FILES, False, _AS_MONO_WHY),
        "Mel-Roformer": _as_mdxc(TORCH_FILES, False, _AS_MONO_WHY),
        "MDX23C": _as_mdxc(TORCH_FILES, False, _AS_MDX23C_MONO_WHY),
        # mdx_separator imports onnx2torch, which imports torchvision: a torchvision built for another torch
        # fails to load ("operator torchvision::nms does not exist").
        "MDX-Net": ArchCapability(ONNX_FILES, True, needs=(NEEDS_TORCHVISION_FOR_TORCH,)),
        "VR": ArchCapability((".pth",), True, system_libraries=(LIBSAMPLERATE,)),
        "Demucs": ArchCapability(TORCH_FILES, True),
    }, memory=MemoryGrowth(base_mib=704, mib_per_minute=140)),
    RuntimeCapabilities("msst", "msst 0.1.0", {
        "BS-Roformer": _msst(), "Mel-Roformer": _msst(), "MDX23C": _msst(),
        # models/demucs4ht.py imports openunmix, whose package imports torchaudio: a torchaudio built for another
        # torch fails to load its native library ("Could not load this library: .../_torchaudio.so").
        "Demucs": replace(_msst(), needs=(NEEDS_TORCHAUDIO_FOR_TORCH,)),
        "SCNet": _msst(),
        # models/bandit/core/__init__.py imports torchaudio (its band specs and STFT use torchaudio.functional):
        # a torchaudio built for another torch fails to load its native library, as for Demucs.
        "BandIt": replace(_msst(), needs=(NEEDS_TORCHAUDIO_FOR_TORCH,)),
        "Apollo": _msst(),
    }, memory=MemoryGrowth(base_mib=625, mib_per_minute=273)),
    # Our own code (runtimes/legacy): standard BS-/Mel-Roformer from MSST checkpoints and configs, and the DSP
    # models. A one-channel Roformer runs each input channel on its own (runtimes/legacy/roformer/separator.py).
    # Every model type streams the input file into the stem files: no MemoryGrowth.
    RuntimeCapabilities("stemsep-legacy", "stemsep-legacy", {
        # unwa's HyperACE v1/v2 and Inst-FNO variants too (runtimes/legacy/roformer/hyperace.py, fno.py).
        "BS-Roformer": ArchCapability(TORCH_FILES, True, model_types=(
            "bs_roformer", "bs_roformer_hyperace", "bs_roformer_hyperace_v2", "bs_roformer_fno"),
            splits_channels=True, needs_config=True),
        "Mel-Roformer": ArchCapability(TORCH_FILES, True, model_types=("mel_band_roformer",), splits_channels=True,
                                       needs_config=True),
        "DSP": ArchCapability((), True, model_types=("dsp_center_split",)),
    }),
)}


def is_mono_model(entry: Any) -> bool:
    """The registry says the model's network takes one channel (`supports_stereo: false`)."""
    return getattr(getattr(entry, "capabilities", None), "supports_stereo", None) is False


def cannot_run(entry: Any, runtime: str, *, mono: Optional[bool] = None) -> tuple[str, ...]:
    """Why `runtime`'s capability facts exclude `entry` (empty: nothing known against it). `mono` overrides
    the registry's channel layout with what the model's config file says, once preflight has read it."""
    caps = CAPABILITIES.get(runtime)
    if caps is None:
        return ()
    arch_name = str(getattr(entry, "architecture", "") or "")
    if arch_name not in ARCHITECTURE_FAMILIES or arch_name == "Other":
        return ()  # unknown: the rule architecture-known's finding; "Other" declares nothing to judge by
    arch = caps.arch(arch_name)
    if arch is None:
        return (f"{caps.label} has no code for {arch_name or 'this'} models",)
    reasons = []
    model_type = getattr(getattr(entry, "runtime", None), "model_type", None)
    if arch.model_types and model_type and model_type not in arch.model_types and not _ships_code(entry, model_type):
        reasons.append(f"{caps.label} does not build model type {model_type} (it builds {', '.join(arch.model_types)})")
    suffix = _model_file_suffix(entry)
    if arch.files and suffix is not None and suffix not in arch.files:
        reasons.append(f"{caps.label} cannot read {suffix} files for {arch_name} models "
                       f"(it reads {', '.join(arch.files)})")
    artifacts = getattr(entry, "artifacts", None)
    if arch.needs_config and artifacts is not None and getattr(artifacts, "config", None) is None:
        reasons.append(f"{caps.label} builds {arch_name} models from their config file, and the entry declares "
                       "none (artifacts.config)")
    if (is_mono_model(entry) if mono is None else mono) and not arch.mono_models:
        reasons.append(f"{caps.label} cannot run mono {arch_name} models: {arch.mono_why}")
    return tuple(reasons)


def arch_of(entry: Any, runtime: Optional[str]) -> Optional[ArchCapability]:
    """How `runtime` runs the entry's architecture (None: unknown runtime or no code for it)."""
    caps = CAPABILITIES.get(runtime or "")
    return caps.arch(str(getattr(entry, "architecture", "") or "")) if caps else None


def splits_channels(entry: Any, runtime: Optional[str]) -> bool:
    """`runtime` runs this mono model on each channel of a stereo input (the stems stay stereo)."""
    arch = arch_of(entry, runtime)
    return arch is not None and arch.splits_channels


def needs(entry: Any, runtime: Optional[str], need: str) -> bool:
    """`runtime` puts `need` (NEEDS_*) on the env to run this entry's architecture."""
    arch = arch_of(entry, runtime)
    return arch is not None and need in arch.needs


def system_libraries(entry: Any, runtime: Optional[str]) -> tuple[SystemLibrary, ...]:
    """The system libraries `runtime` loads to run `entry` (empty: none)."""
    arch = arch_of(entry, runtime)
    return tuple(lib for lib in arch.system_libraries if lib.applies(entry)) if arch else ()


def capable_runtimes(entry: Any, runtimes: Any) -> list[str]:
    return [r for r in runtimes if not cannot_run(entry, r)]


def _ships_code(entry: Any, model_type: str) -> bool:
    return any(getattr(a, "kind", None) == "code" and getattr(a, "model_type", None) == model_type
               for a in entry.artifacts.all())


def _model_file_suffix(entry: Any) -> Optional[str]:
    primary = getattr(getattr(entry, "artifacts", None), "primary", None)
    name = str(getattr(primary, "filename", "") or "")
    return ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else None
