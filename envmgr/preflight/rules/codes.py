"""Finding codes (each with its topic, fatality and exit code) and the Finding a rule returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional


from registry.errors import ExitCode, StemSepError


MODES = ("strict", "soft", "report")


@dataclass(frozen=True)
class Code:
    code: str
    topic: str  # input | model | settings | artifacts | env | manual_steps | phase_fix | recipe | enforcement
    summary: str
    fatal: bool = False
    exit_code: ExitCode = ExitCode.PREFLIGHT_BLOCKED


_CODES = (
    # inputs
    Code("E_NO_INPUT", "input", "no input file was given", True, ExitCode.INPUT),
    Code("E_INPUT_NOT_FOUND", "input", "the input path does not exist", True, ExitCode.INPUT),
    Code("E_INPUT_IS_DIR", "input", "the input is a directory", True, ExitCode.INPUT),
    Code("E_INPUT_NOT_FILE", "input", "the input is not a regular file (pipe, device)", True, ExitCode.INPUT),
    Code("E_INPUT_UNREADABLE", "input", "the input cannot be opened (permissions, I/O error)", True, ExitCode.INPUT),
    Code("E_INPUT_EMPTY", "input", "the input has 0 bytes, or a header and 0 audio frames", True, ExitCode.INPUT),
    Code("E_INPUT_UNDECODABLE", "input", "libsndfile cannot decode the input (hint names ffmpeg for formats "
         "that need it)", True, ExitCode.INPUT),
    Code("E_INPUT_CHANNELS", "input", "the input has more than two channels", True, ExitCode.INPUT),
    Code("E_MONO_UNSUPPORTED", "input", "mono input, a stereo-only model, and a runtime that does not upmix"),
    Code("E_STEREO_UNSUPPORTED", "input", "stereo input, a mono-only model, and a runtime that does not downmix"),
    Code("W_UPMIX", "input", "mono input to a stereo-only model: the runtime duplicates the channel"),
    Code("W_DOWNMIX", "input", "stereo input to a mono-only model: the runtime averages the channels"),
    Code("W_RESAMPLE", "input", "the input's sample rate is not the model's: every runtime resamples it (stemsep-legacy streams it through soxr) and the stems come out at the model's rate"),
    Code("W_INPUTS_SKIPPED", "input", "some inputs are blocked; the job runs the others"),
    Code("W_MEMORY_PEAK", "input", "the runtime loads whole files, and the input is long enough that its estimated "
         "peak memory exceeds what is available now (estimate given)"),
    # model and runtime
    Code("E_UNKNOWN_MODEL", "model", "no model has this id (nearest ids suggested)", True, ExitCode.USAGE),
    Code("E_NO_DEFAULT_MODEL", "model", "no -m given and the registry names no default model", True, ExitCode.USAGE),
    Code("E_UNKNOWN_RUNTIME", "model", "--runtime names no canonical runtime", True, ExitCode.USAGE),
    Code("E_NO_RUNTIME", "model", "the model allows no runtime (catalog only)", True),
    Code("E_REGISTRY_INVALID", "model", "the model's registry entry contradicts itself (preferred not in allowed)",
         True, ExitCode.INVALID),
    Code("E_RUNTIME_NOT_ALLOWED", "model", "the requested runtime is not in runtime.allowed (quotes blocking_reason)"),
    Code("E_RUNTIME_CANNOT_RUN", "model", "the runtime's capability facts exclude the model (architecture, model "
         "type, file format, a mono network), from its entry or its config file", True),
    Code("E_CONFIG_KEY_MISSING", "model", "the model's config file lacks a key the runtime reads without a default",
         True),
    Code("W_CONFIG_ADAPTED", "model", "the runtime needs a config key the model's config lacks: it gets a derived "
         "copy with the key added (the original file is unchanged)"),
    Code("E_UVR_PARAMS_MISSING", "model", "an MDX-Net/VR model on a runtime that finds its parameters by file hash, without UVR's parameters in its entry", True),
    # settings
    Code("E_SETTINGS", "settings", "a recommended or given setting cannot be translated for the runtime", True),
    Code("E_SETTING_RANGE", "settings", "a translated setting is outside what the runtime accepts (nearest valid "
         "values given)", True),
    Code("W_SETTING_OVERRIDDEN", "settings", "your value replaces the registry's recommended one"),
    Code("W_SETTING_IGNORED", "settings", "the runtime has no such parameter for this model; your value is unused"),
    # artifacts
    Code("W_ARTIFACT_DOWNLOAD", "artifacts", "not in the model store yet; downloaded before the job starts"),
    Code("E_ARTIFACT_NOT_LOCAL", "artifacts", "not in the model store and --no-download was given", True,
         ExitCode.ARTIFACT),
    Code("E_ARTIFACT_MISSING", "artifacts", "not in the model store and the registry gives no URL", True,
         ExitCode.ARTIFACT),
    Code("W_ARTIFACT_HASH_MISMATCH", "artifacts", "the stored file differs from the pinned sha256/size; it is "
         "downloaded again"),
    Code("E_ARTIFACT_HASH_MISMATCH", "artifacts", "the stored file differs from the pinned sha256/size and cannot "
         "be replaced", True, ExitCode.ARTIFACT),
    Code("E_ARTIFACT_UNSAFE", "artifacts", "a symlink or non-file sits where the artifact belongs, or a bad name",
         True, ExitCode.ARTIFACT),
    Code("W_ARTIFACT_UNPINNED", "artifacts", "the registry pins no sha256 for the artifact"),
    Code("E_ARTIFACT_UNPINNED", "artifacts", "no sha256 pinned and --require-hashes was given"),
    Code("E_UNSAFE_PICKLE", "artifacts", "the checkpoint loads only by full unpickling (registry flag), which can "
         "run code from the file, and you have not allowed it", True),
    Code("W_UNSAFE_PICKLE", "artifacts", "the checkpoint is loaded by full unpickling because you allowed it: code "
         "in the file runs in the worker"),
    Code("W_UNSAFE_PICKLE_IGNORED", "artifacts", "--allow-unsafe-pickle given, but the registry marks no checkpoint "
         "of the model unsafe_pickle: it changes nothing"),
    Code("W_CODE_USER_TRUSTED", "artifacts", "a code artifact runs because you trusted it (not pinned by the registry)"),
    Code("E_CODE_UNTRUSTED", "artifacts", "a code artifact is neither sha256-pinned nor trusted by you", True),
    Code("E_REQUIREMENT_UNTRUSTED", "artifacts", "a pip requirement installs from a direct URL or path that pins no "
         "sha256 (`#sha256=`), and you have not trusted it", True),
    Code("W_REQUIREMENT_USER_TRUSTED", "artifacts", "a pip requirement installs from a direct URL or path without a "
         "pinned sha256 because you trusted it"),
    # env and requirements
    Code("W_ENV_NEEDS_BUILD", "env", "the model's env does not exist yet; it is built before the job starts"),
    Code("W_ENV_BROKEN", "env", "the model's env is broken (half-built, interpreter gone: rebuilt; files it "
         "imports changed or deleted: repaired)"),
    Code("W_ENV_CHANGED", "env", "the adopted env changed since `stemsep env adopt` recorded it (what changed is "
         "named)"),
    Code("E_ENV_UNRESOLVABLE", "env", "the model's requirements conflict", True, ExitCode.UNRESOLVABLE),
    Code("E_NO_INTERPRETER", "env", "no Python satisfies the env's range", True, ExitCode.NO_INTERPRETER),
    Code("E_ENV_RESOLVE", "env", "the env's requirements could not be resolved (index unreachable...)", True,
         ExitCode.ENV_BUILD),
    Code("E_ENV_REQUEST", "env", "the env request cannot be formed (bad requirement in the registry)", True,
         ExitCode.INVALID),
    Code("E_STORE", "env", "a state dir cannot be written: read-only, full, not a directory", True, ExitCode.STORE),
    Code("E_PYTHON_MISMATCH", "env", "the env's Python is outside the model's range"),
    Code("E_TORCH_MISMATCH", "env", "the env's torch is outside the model's range"),
    Code("E_TORCH_VARIANT", "env", "torch build (cpu/cuda/rocm) differs from the request or the model's builds"),
    Code("W_TORCH_NO_GPU", "env", "a GPU torch build is requested but this machine has no such GPU"),
    Code("W_TORCH_GPU_UNUSED", "env", "this machine has an NVIDIA GPU but the env gets a CPU torch"),
    Code("W_TORCH_OVERRIDE", "env", "the runtime library's own torch cap is overridden in this env"),
    Code("E_TORCHVISION_MISMATCH", "env", "the model's architecture imports torchvision, and the env's torchvision "
         "is built for another torch than the env's", True),
    Code("E_TORCHAUDIO_MISMATCH", "env", "the model's architecture imports torchaudio, and the env's torchaudio "
         "is built for another torch than the env's", True),
    Code("E_SYSTEM_LIBRARY_MISSING", "env", "the runtime loads a system library for this model (no wheel ships it) "
         "and this machine has none", True),
    Code("E_PIP_MISSING", "env", "a pip requirement of the model is not installed in its (existing) env"),
    Code("E_PIP_VERSION", "env", "a pip requirement is installed in the env at a version outside its range"),
    # manual steps
    Code("E_MANUAL_STEPS", "manual_steps", "manual steps are neither automated nor confirmed"),
    Code("W_MANUAL_STEPS_CONFIRMED", "manual_steps", "manual steps you confirmed (a reminder)"),
    # phase fix
    Code("E_PHASE_FIX_REFERENCE", "phase_fix", "the Phase Fix reference is unknown or not a valid reference"),
    Code("E_PHASE_FIX_PARAMS", "phase_fix", "Phase Fix parameters out of range (0 < lowHz <= highHz <= 24000, "
         "weight 0..4)"),
    Code("W_PHASE_FIX_OVERRIDE", "phase_fix", "your Phase Fix parameter replaces the reference's recommended one"),
    # recipes (the graph; each `separate` step is checked as a one-model job, with the codes above)
    Code("E_RECIPE_CYCLE", "recipe", "the recipe's steps read each other's stems in a cycle: no order can run them",
         True),
    Code("E_RECIPE_UNKNOWN_STEP", "recipe", "a reference names a step the recipe does not have", True),
    Code("E_RECIPE_UNKNOWN_STEM", "recipe", "a reference names a stem its step does not make (a model's "
         "`capabilities.stems`; an op's one stem)", True),
    Code("E_RECIPE_ROLE_INPUT", "recipe", "a processing model is fed a stem its role cannot take (a de-reverb "
         "model fed anything but vocals)"),
    Code("E_RECIPE_ENSEMBLE_STEMS", "recipe", "an ensemble combines stems of different names (vocals with an "
         "instrumental)"),
    Code("E_RECIPE_CHANNELS", "recipe", "an op combines stems of different channel counts (a mono model's "
         "downmixed stem with stereo ones)", True),
    Code("W_RECIPE_UNUSED_STEP", "recipe", "no output and no other step reads the step's stems: it runs for "
         "nothing"),
    # enforcement
    Code("W_DEV_OVERRIDE", "enforcement", "soft mode + --dev-override: the job proceeds despite errors"),
    Code("W_NOT_ENFORCED", "enforcement", "report mode: errors are reported, not enforced"),
    Code("W_DEV_OVERRIDE_IGNORED", "enforcement", "--dev-override has effect only with --enforcement soft"),
)
CODES: dict[str, Code] = {c.code: c for c in _CODES}


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    why: str = ""
    hint: str = ""
    subject: Optional[str] = None  # the artifact, package, setting or step it is about
    input: Optional[str] = None  # the input path it concerns; None: the whole job

    @property
    def severity(self) -> str:
        return "error" if self.code.startswith("E_") else "warning"

    @property
    def fatal(self) -> bool:
        return CODES[self.code].fatal

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "severity": self.severity, "fatal": self.fatal}


def from_error(err: StemSepError, code: Optional[str] = None, **kw: Any) -> Finding:
    return Finding(code or err.code, err.message, err.why, err.hint, **kw)
