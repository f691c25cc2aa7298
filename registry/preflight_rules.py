"""Preflight's rules (seed §4.1): pure functions from gathered facts to findings, and the decision.

No I/O and no envmgr imports: envmgr/preflight.py gathers the facts (audio headers, env state,
artifact state, confirmations, the machine's GPUs) and calls these. Every finding carries a stable
code from CODES; docs/preflight.md lists them all (a test keeps the two in step).

Codes starting with E_ are errors, W_ warnings. A *fatal* error means the job cannot run at all (no
such file, no such model, a file nobody can fetch, untrusted code): it stops the job in every
enforcement mode. The other errors are policy: `strict` blocks on them, `soft` blocks unless
`--dev-override`, `report` only reports them. An error about one input blocks that input only; the
job proceeds with the others (a batch goes on past a bad file), unless no input is left.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from registry.errors import ExitCode, StemSepError
from registry.routing import RuntimeChoice, RuntimeNotAllowedError, choose_runtime
from registry.vocab import PHASE_FIX_MAX_HZ as MAX_HZ
from registry.settings import DEFAULT_SAMPLE_RATE, ResolvedSettings, family_of, is_torch_requirement, resolve_settings

MODES = ("strict", "soft", "report")


@dataclass(frozen=True)
class Code:
    code: str
    topic: str  # input | model | settings | artifacts | env | manual_steps | phase_fix | enforcement
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
    Code("W_RESAMPLE", "input", "the input's sample rate is not the model's: the runtime resamples it"),
    Code("W_INPUTS_SKIPPED", "input", "some inputs are blocked; the job runs the others"),
    # model and runtime
    Code("E_UNKNOWN_MODEL", "model", "no model has this id (nearest ids suggested)", True, ExitCode.USAGE),
    Code("E_NO_DEFAULT_MODEL", "model", "no -m given and the registry names no default model", True, ExitCode.USAGE),
    Code("E_UNKNOWN_RUNTIME", "model", "--runtime names no canonical runtime", True, ExitCode.USAGE),
    Code("E_NO_RUNTIME", "model", "the model allows no runtime (catalog only)", True),
    Code("E_REGISTRY_INVALID", "model", "the model's registry entry contradicts itself (preferred not in allowed)",
         True, ExitCode.INVALID),
    Code("E_RUNTIME_NOT_ALLOWED", "model", "the requested runtime is not in runtime.allowed (quotes blocking_reason)"),
    # settings
    Code("E_SETTINGS", "settings", "a recommended or given setting cannot be translated for the runtime", True),
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
    # env and requirements
    Code("W_ENV_NEEDS_BUILD", "env", "the model's env does not exist yet; it is built before the job starts"),
    Code("W_ENV_BROKEN", "env", "the model's env is broken (half-built, interpreter gone); it is rebuilt"),
    Code("E_ENV_UNRESOLVABLE", "env", "the model's requirements conflict", True, ExitCode.UNRESOLVABLE),
    Code("E_NO_INTERPRETER", "env", "no Python satisfies the env's range", True, ExitCode.NO_INTERPRETER),
    Code("E_ENV_RESOLVE", "env", "the env's requirements could not be resolved (index unreachable...)", True,
         ExitCode.ENV_BUILD),
    Code("E_ENV_REQUEST", "env", "the env request cannot be formed (bad requirement in the registry)", True,
         ExitCode.INVALID),
    Code("E_PYTHON_MISMATCH", "env", "the env's Python is outside the model's range"),
    Code("E_TORCH_MISMATCH", "env", "the env's torch is outside the model's range"),
    Code("E_TORCH_VARIANT", "env", "torch build (cpu/cuda/rocm) differs from the request or the model's builds"),
    Code("W_TORCH_NO_GPU", "env", "a GPU torch build is requested but this machine has no such GPU"),
    Code("W_TORCH_GPU_UNUSED", "env", "this machine has an NVIDIA GPU but the env gets a CPU torch"),
    Code("W_TORCH_OVERRIDE", "env", "the runtime library's own torch cap is overridden in this env"),
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


# ---- input audio -------------------------------------------------------------------------------

# Containers libsndfile cannot read; ffmpeg converts them (a hint, not a guess: the decode failed).
FFMPEG_FORMATS = frozenset({".m4a", ".aac", ".mp4", ".m4b", ".alac", ".wma", ".webm", ".mka", ".mkv", ".ac3",
                            ".eac3", ".dts", ".ape", ".wv", ".amr", ".3gp", ".mov", ".ra", ".tta"})

# How each runtime's pipeline treats channel counts a model does not take (read in the libraries' code):
# audio-separator 0.47.1 common_separator.py prepare_mix: a mono mix becomes [mix, mix];
# msst 0.1.0 _inference.py: mono -> repeat to 2 channels for stereo models, mean for mono models.
UPMIXES_MONO = frozenset({"audio-separator", "msst"})
DOWNMIXES_TO_MONO = frozenset({"msst"})


@dataclass(frozen=True)
class AudioFacts:
    """What the orchestrator found about one input file."""

    path: str
    exists: bool = True
    is_dir: bool = False
    is_file: bool = True
    read_error: Optional[str] = None
    size: Optional[int] = None
    decode_error: Optional[str] = None
    format: Optional[str] = None  # libsndfile's major format: WAV, FLAC, OGG, MP3...
    subtype: Optional[str] = None  # PCM_16, FLOAT, VORBIS...
    sample_rate: Optional[int] = None
    channels: Optional[int] = None
    frames: Optional[int] = None

    @property
    def suffix(self) -> str:
        name = self.path.rsplit("/", 1)[-1]
        return ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("path", "format", "subtype", "sample_rate", "channels", "frames")}
        out["duration_s"] = round(self.frames / self.sample_rate, 3) if self.frames and self.sample_rate else None
        return out


def check_input(a: AudioFacts) -> list[Finding]:
    """Exists, is a file, readable, decodable, holds audio, at most two channels (the first problem only)."""
    def bad(code: str, message: str, why: str = "", hint: str = "") -> list[Finding]:
        return [Finding(code, message, why, hint, input=a.path)]

    if not a.exists:
        return bad("E_INPUT_NOT_FOUND", f"input {a.path} does not exist", hint="check the path (quote names with spaces)")
    if a.is_dir:
        return bad("E_INPUT_IS_DIR", f"input {a.path} is a directory",
                   hint=f"pass the audio files in it, e.g. {a.path.rstrip('/')}/*.flac")
    if not a.is_file:
        return bad("E_INPUT_NOT_FILE", f"input {a.path} is not a regular file",
                   hint="pass an audio file (pipes and devices cannot be read twice)")
    if a.read_error is not None:
        return bad("E_INPUT_UNREADABLE", f"cannot read input {a.path}", a.read_error, "check the file's permissions")
    if a.size == 0:
        return bad("E_INPUT_EMPTY", f"input {a.path} is empty (0 bytes)", hint="the file holds no data; export or "
                   "copy it again")
    if a.decode_error is not None:
        if a.suffix in FFMPEG_FORMATS:
            hint = (f"{a.suffix} files need ffmpeg: convert it first, e.g. "
                    f"`ffmpeg -i '{a.path}' -c:a flac '{a.path.rsplit('.', 1)[0]}.flac'`, then separate the .flac")
        else:
            hint = ("check that it is an audio file (WAV, FLAC, OGG, MP3, AIFF...) and not damaged; "
                    "convert it with ffmpeg if it is another format")
        return bad("E_INPUT_UNDECODABLE", f"cannot decode input {a.path}", a.decode_error, hint)
    if not a.frames:
        return bad("E_INPUT_EMPTY", f"input {a.path} decodes but holds no audio (0 frames)",
                   hint="export the file again; it has a header and no samples")
    if a.channels is not None and a.channels > 2:
        return bad("E_INPUT_CHANNELS", f"input {a.path} has {a.channels} channels; separation models take mono or "
                   "stereo", hint=f"downmix it first, e.g. `ffmpeg -i '{a.path}' -ac 2 stereo.flac`")
    return []


def check_channels(a: AudioFacts, entry: Any, runtime: Optional[str]) -> list[Finding]:
    """Mono/stereo input against `capabilities.supports_mono/stereo` and what the runtime does about it."""
    caps = entry.capabilities
    if a.channels == 1 and caps.supports_mono is False:
        if runtime in UPMIXES_MONO:
            return [Finding("W_UPMIX", f"{a.path} is mono and {entry.id} takes stereo only: {runtime} duplicates "
                            "the channel", hint="the stems come out as dual mono", input=a.path)]
        return [Finding("E_MONO_UNSUPPORTED", f"{a.path} is mono and {entry.id} takes stereo only",
                        why=f"{runtime} does not upmix mono input", input=a.path,
                        hint=f"make it stereo first (`ffmpeg -i '{a.path}' -ac 2 stereo.flac`) or pick a runtime "
                        f"that upmixes ({', '.join(sorted(UPMIXES_MONO & set(entry.runtime.allowed))) or 'none allowed'})")]
    if a.channels == 2 and caps.supports_stereo is False:
        if runtime in DOWNMIXES_TO_MONO:
            return [Finding("W_DOWNMIX", f"{a.path} is stereo and {entry.id} is a mono model: {runtime} averages the "
                            "two channels", hint="for a stereo result, split the channels "
                            "(`ffmpeg -i in.flac -filter_complex channelsplit out_L.flac out_R.flac`) and run each",
                            input=a.path)]
        return [Finding("E_STEREO_UNSUPPORTED", f"{a.path} is stereo and {entry.id} is a mono model",
                        why=f"{runtime} does not downmix stereo input", input=a.path,
                        hint="split the channels and separate each, or downmix to mono first (`ffmpeg -ac 1`)")]
    return []


def model_sample_rate(entry: Any) -> Optional[int]:
    """The rate the model works at: DSP models take any rate; every trained model in the registry is 44.1 kHz."""
    return None if family_of(entry) == "dsp" else DEFAULT_SAMPLE_RATE


def check_sample_rate(a: AudioFacts, entry: Any) -> list[Finding]:
    rate = model_sample_rate(entry)
    if rate is None or not a.sample_rate or a.sample_rate == rate:
        return []
    return [Finding("W_RESAMPLE", f"{a.path} is {a.sample_rate} Hz; {entry.id} works at {rate} Hz, so the input is "
                    "resampled", why="resampling costs time and, done twice (in and out), softens the top octave",
                    hint=f"for full control, resample it yourself first (e.g. sox or `ffmpeg -af "
                    f"aresample=resampler=soxr -ar {rate}`)", input=a.path)]


# ---- model and runtime -------------------------------------------------------------------------

@dataclass(frozen=True)
class RuntimeResolution:
    runtime: Optional[str]  # what the job would run on (None: nothing can run it)
    reason: Optional[str]  # user | preferred | first_allowed
    allowed: tuple[str, ...]
    blocking_reason: Optional[str]
    in_allowed: bool

    def to_dict(self) -> dict[str, Any]:
        why = RuntimeChoice(self.runtime or "", self.reason).explain() if self.reason else None  # type: ignore[arg-type]
        if self.runtime and not self.in_allowed:
            why = "you asked for it, although the registry does not allow it (not enforced)"
        return {"id": self.runtime, "reason": self.reason, "why": why, "allowed": list(self.allowed),
                "blocking_reason": self.blocking_reason, "in_allowed": self.in_allowed}


def route(entry: Any, requested: Optional[str]) -> tuple[RuntimeResolution, list[Finding]]:
    """Routing by registry data only (registry.routing); a disallowed request stays the runtime a
    non-enforcing mode would run, with E_RUNTIME_NOT_ALLOWED quoting blocking_reason."""
    allowed = tuple(entry.runtime.allowed)
    reason_text = entry.runtime.blocking_reason
    try:
        choice = choose_runtime(entry, requested)
    except RuntimeNotAllowedError as err:
        runtime = requested if err.code == "E_RUNTIME_NOT_ALLOWED" else None
        return (RuntimeResolution(runtime, "user" if runtime else None, allowed, reason_text, False),
                [from_error(err, subject=requested)])
    except StemSepError as err:
        return RuntimeResolution(None, None, allowed, reason_text, False), [from_error(err, subject=requested)]
    return RuntimeResolution(choice.runtime, choice.reason, allowed, reason_text, True), []


def resolve_job_settings(entry: Any, runtime: str, user: Mapping[str, Any]) -> tuple[Optional[ResolvedSettings],
                                                                                      list[Finding]]:
    """Recommended settings translated to the runtime's native values; user values win and are shown."""
    from registry.settings import SettingsError

    try:
        resolved = resolve_settings(entry, runtime, user=user)
    except SettingsError as err:
        return None, [from_error(err, "E_SETTINGS")]
    findings = []
    for name in user:
        item = resolved.settings.get(name)
        if item is None or item.provenance != "user" or item.param is None or item.value is None:
            findings.append(Finding("W_SETTING_IGNORED", f"--{name.replace('_', '-')} {user[name]} is not used",
                                    why=(item.note if item else "") or f"{runtime} has no {name} parameter for "
                                    f"{entry.id}", hint="leave it out", subject=name))
            continue
        recommended = getattr(entry.recommended_settings, name, None)
        if recommended == user[name]:
            continue  # the same value: nothing is overridden (the table still shows provenance `user`)
        if recommended is not None:
            message = f"{name}: your {user[name]} replaces the registry's recommended {recommended}"
        else:
            message = f"{name}: your {user[name]} replaces {runtime}'s default"
        findings.append(Finding("W_SETTING_OVERRIDDEN", message, why=item.note, subject=name,
                                hint=f"leave --{name.replace('_', '-')} out to use the recommendation"))
    return resolved, findings


# ---- artifacts ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArtifactFacts:
    """One artifact's state in the model store (envmgr.artifacts states) plus what the registry says."""

    filename: str
    kind: str
    state: str  # present | partial | missing | downloadable | hash_mismatch | unsafe
    expected_sha256: Optional[str] = None
    sha256: Optional[str] = None  # of the stored file
    size: Optional[int] = None
    expected_size: Optional[int] = None
    sources: tuple[str, ...] = ()
    path: Optional[str] = None
    detail: str = ""
    unsafe_pickle: bool = False
    trusted_sha256: Optional[str] = None  # code artifacts: the sha256 you recorded trust for
    # unsafe_pickle checkpoints: how you allowed full unpickling: "flag" (--allow-unsafe-pickle on this run),
    # "recorded" (an earlier consent for this very content), None (not allowed)
    pickle_consent: Optional[str] = None
    pickle_consent_note: str = ""  # e.g. why the flag's consent could not be remembered


def human_size(n: Optional[int]) -> str:
    """`639.3 MiB`; empty when unknown."""
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def check_artifacts(model_id: str, artifacts: Sequence[ArtifactFacts], *, require_hashes: bool,
                    download: bool, allow_unsafe_pickle: bool = False) -> tuple[list[Finding], list[dict[str, Any]]]:
    findings: list[Finding] = []
    if allow_unsafe_pickle and not any(a.unsafe_pickle for a in artifacts):
        findings.append(Finding("W_UNSAFE_PICKLE_IGNORED", f"--allow-unsafe-pickle has no effect on {model_id}: the "
                                "registry marks none of its checkpoints unsafe_pickle",
                                "checkpoints load weights-only unless the registry says they cannot",
                                "to load a checkpoint that needs full unpickling, mark its artifact "
                                "`unsafe_pickle: true` in your registry overlay (only for a file you trust)",
                                subject=model_id))
    rows = []
    for a in artifacts:
        pinned = a.expected_sha256 is not None
        action = "none"

        def add(code: str, message: str, why: str = "", hint: str = "") -> None:
            findings.append(Finding(code, message, why, hint, subject=a.filename))

        if a.state == "unsafe":
            add("E_ARTIFACT_UNSAFE", f"{model_id}: refusing {a.path or a.filename}", a.detail,
                "remove it from the model store, then run again")
        elif a.state in ("downloadable", "partial") or (a.state == "hash_mismatch" and a.sources and download):
            action = "replace" if a.state == "hash_mismatch" else ("resume" if a.state == "partial" else "download")
            if not download:
                add("E_ARTIFACT_NOT_LOCAL", f"{model_id}: {a.filename} is not in the model store and downloads are off",
                    "--no-download was given", f"run `stemsep models download {model_id}`, or drop --no-download")
            elif a.state == "hash_mismatch":
                add("W_ARTIFACT_HASH_MISMATCH", f"{model_id}: the stored {a.filename} is not the pinned file; it is "
                    "downloaded again", a.detail)
            else:
                verb = "resumed" if a.state == "partial" else "downloaded"
                size = f" ({human_size(a.expected_size)})" if a.expected_size is not None else ""
                add("W_ARTIFACT_DOWNLOAD", f"{model_id}: {a.filename}{size} is {verb} before the job starts", f"from {a.sources[0]}" if a.sources else "",
                    f"to fetch it ahead of time: `stemsep models download {model_id}`")
        elif a.state == "hash_mismatch":
            action = "import"
            add("E_ARTIFACT_HASH_MISMATCH", f"{model_id}: the stored {a.filename} is not the pinned file", a.detail,
                f"import the right file (`stemsep models import {model_id}`)" if not a.sources else
                f"run `stemsep models download {model_id}` to replace it")
        elif a.state == "missing":
            action = "import"
            add("E_ARTIFACT_MISSING", f"{model_id}: {a.filename} is not in the model store and the registry gives "
                "no URL for it", "some files are published only on pages that need a browser",
                f"get the file from the model's homepage (`stemsep models show {model_id}`) and run "
                f"`stemsep models import {model_id}`")
        if not pinned:
            if require_hashes:
                add("E_ARTIFACT_UNPINNED", f"{model_id}: the registry pins no sha256 for {a.filename}",
                    "--require-hashes refuses files whose content the registry does not pin",
                    "add its sha256 in a registry overlay, or drop --require-hashes")
            elif a.kind != "code":  # code artifacts: the trust check below says it louder
                add("W_ARTIFACT_UNPINNED", f"{model_id}: the registry pins no sha256 for {a.filename}",
                    "its content cannot be verified; the downloaded file's sha256 is recorded",
                    "pin the sha256 in a registry overlay, or use --require-hashes to refuse unpinned files")
        if a.unsafe_pickle:
            _pickle_consent(model_id, a, add)
        trust = _code_trust(model_id, a, add) if a.kind == "code" else None
        rows.append({"filename": a.filename, "kind": a.kind, "state": a.state, "action": action, "pinned": pinned,
                     "sha256": a.sha256, "expected_sha256": a.expected_sha256, "size": a.size,
                     "expected_size": a.expected_size, "source": a.sources[0] if a.sources else None,
                     "path": a.path, "trust": trust, "unsafe_pickle": a.unsafe_pickle,
                     "unsafe_pickle_consent": (a.pickle_consent or "missing") if a.unsafe_pickle else None})
    return findings, rows


def _pickle_consent(model_id: str, a: ArtifactFacts, add: Any) -> None:
    """Full unpickling runs whatever code the file carries: only with your consent, never by default."""
    source = f" ({a.sources[0]})" if a.sources else ""
    if a.pickle_consent is None:
        add("E_UNSAFE_PICKLE", f"{model_id}: {a.filename} loads only by full unpickling, which can run any code the "
            "file carries; refused without your consent",
            "the registry marks it unsafe_pickle: torch's safe loader (weights only) cannot read it",
            f"if you trust its source{source}, run again with --allow-unsafe-pickle (remembered for this file's "
            f"content) or `stemsep models trust {model_id} {a.filename}`; otherwise pick another model")
        return
    how = ("--allow-unsafe-pickle on this run" if a.pickle_consent == "flag"
           else "your recorded consent for this file's content")
    add("W_UNSAFE_PICKLE", f"{model_id}: {a.filename} is loaded by full unpickling: any code the file carries runs "
        "in the worker with your permissions", f"allowed by {how}" + (f"; {a.pickle_consent_note}"
                                                                      if a.pickle_consent_note else ""),
        f"take it back with `stemsep models trust {model_id} {a.filename} --revoke`")


def _code_trust(model_id: str, a: ArtifactFacts, add: Any) -> str:
    """Code runs in the worker only when its sha256 is pinned by the registry or trusted by you."""
    if a.expected_sha256:
        return "pinned"
    trusted = (a.trusted_sha256 or "").lower() or None
    if trusted and (a.sha256 is None or a.sha256.lower() == trusted):
        add("W_CODE_USER_TRUSTED", f"{model_id}: {a.filename} is code you trusted (sha256 {trusted[:12]}...); the "
            "registry does not pin it", "it runs inside the worker with your permissions",
            "pin its sha256 in a registry overlay to make the trust part of the model's data")
        return "user_trusted"
    why = ("its sha256 is not pinned by the registry and you have not trusted it" if not trusted else
           f"it changed since you trusted it (trusted {trusted[:12]}..., now {str(a.sha256)[:12]}...)")
    add("E_CODE_UNTRUSTED", f"{model_id}: refusing to run the model code {a.filename}", why,
        "read the file, then trust it (`stemsep models trust` records its sha256) or pin its sha256 in a "
        "registry overlay")
    return "untrusted"


# ---- requirements and env ----------------------------------------------------------------------

@dataclass(frozen=True)
class PipFacts:
    requirement: str
    installed: Optional[str] = None  # version found (env) or locked (lock)
    seen_in: Optional[str] = None  # env: probed with the env's interpreter | lock: would be installed | None


@dataclass(frozen=True)
class EnvFacts:
    state: str  # ready | needs_build | broken | unresolvable | no_interpreter | unknown | invalid | not_checked
    env_id: Optional[str] = None
    path: Optional[str] = None
    problem: Optional[str] = None
    error: Optional[StemSepError] = None  # what stopped the request or the resolution
    python_spec: Optional[str] = None  # the env request's range (runtime's and model's)
    python: Optional[str] = None  # the env's Python, or the interpreter it would get
    python_seen_in: Optional[str] = None  # env | interpreter
    torch_spec: Optional[str] = None  # None: this env has no torch
    torch: Optional[str] = None  # the env's torch version, or the lock's
    torch_seen_in: Optional[str] = None  # env | lock
    torch_build: Optional[Mapping[str, Any]] = None  # {"cuda", "hip"} of a built env
    torch_variant_problems: tuple[str, ...] = ()  # envmgr.torch_variant's verdict on a built env
    torch_backend: str = "auto"
    overrides: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    torch_cap_lifted: Optional[str] = None
    pip: tuple[PipFacts, ...] = ()
    nvidia: bool = False
    rocm: bool = False


def check_env(entry: Any, runtime: str, env: EnvFacts) -> tuple[list[Finding], dict[str, Any]]:
    findings: list[Finding] = []
    if env.state == "needs_build":
        findings.append(Finding("W_ENV_NEEDS_BUILD", f"the {runtime} env for {entry.id} does not exist yet; it is "
                                "built before the job starts", f"env {env.env_id}",
                                "build it ahead of time with `stemsep setup`", subject=env.env_id))
    elif env.state == "broken":
        findings.append(Finding("W_ENV_BROKEN", f"the {runtime} env {env.env_id} is broken; it is rebuilt before "
                                "the job starts", env.problem or "", "nothing to do; `stemsep env list` shows envs",
                                subject=env.env_id))
    elif env.state in ("unresolvable", "no_interpreter", "unknown", "invalid") and env.error is not None:
        code = {"unresolvable": "E_ENV_UNRESOLVABLE", "no_interpreter": "E_NO_INTERPRETER",
                "unknown": "E_ENV_RESOLVE", "invalid": "E_ENV_REQUEST"}[env.state]
        findings.append(from_error(env.error, code, subject=env.env_id))
    findings += _check_python(entry, env) + _check_torch(entry, runtime, env)
    pip_rows, pip_findings = _check_pip(entry, env)
    findings += pip_findings
    status = {
        "env": {"id": env.env_id, "state": env.state, "path": env.path, "problem": env.problem},
        "python": {"required": env.python_spec, "version": env.python, "seen_in": env.python_seen_in},
        "torch": None if env.torch_spec is None else {
            "required": env.torch_spec, "version": env.torch, "seen_in": env.torch_seen_in,
            "build": dict(env.torch_build) if env.torch_build else None, "backend": env.torch_backend,
            "variant": torch_variant(env), "overrides": [o for o in env.overrides if is_torch_requirement(o)],
            "notes": list(env.notes)},
        "pip": pip_rows,
    }
    return findings, status


def _contains(spec: str, version: Optional[str]) -> Optional[bool]:
    if not version or not spec:
        return None
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return None


def _check_python(entry: Any, env: EnvFacts) -> list[Finding]:
    if env.python_spec and _contains(env.python_spec, env.python) is False:
        where = "the env has" if env.python_seen_in == "env" else "the interpreter found is"
        return [Finding("E_PYTHON_MISMATCH", f"{entry.id} needs Python {env.python_spec}; {where} {env.python}",
                        hint="install a matching Python (uv python install) or set STEMSEP_PYTHON", subject="python")]
    return []


def torch_variant(env: EnvFacts) -> Optional[str]:
    """cpu | cuda | rocm for a built env (from torch's version file), else what the backend asks for."""
    if env.torch_build:
        if env.torch_build.get("hip"):
            return "rocm"
        return "cuda" if env.torch_build.get("cuda") else "cpu"
    local = None
    if env.torch:
        try:
            local = Version(env.torch).local
        except InvalidVersion:
            pass
    if local == "cpu" or env.torch_backend == "cpu":
        return "cpu"
    if (local or "").startswith("cu") or env.torch_backend.startswith("cu"):
        return "cuda"
    if (local or "").startswith("rocm") or env.torch_backend.startswith("rocm"):
        return "rocm"
    return None  # auto/none without a local label: decided at install time


def _check_torch(entry: Any, runtime: str, env: EnvFacts) -> list[Finding]:
    if env.torch_spec is None:
        return []
    findings = []
    model_spec = env.torch_spec[len("torch"):] if env.torch_spec.startswith("torch") else ""
    if model_spec and _contains(model_spec, env.torch) is False:
        findings.append(Finding("E_TORCH_MISMATCH", f"{entry.id} needs {env.torch_spec}; the env "
                                f"{'has' if env.torch_seen_in == 'env' else 'would get'} torch {env.torch}",
                                hint="change the machine's torch override (STEMSEP_OVERRIDES) or pick another model",
                                subject="torch"))
    for problem in env.torch_variant_problems:
        findings.append(Finding("E_TORCH_VARIANT", f"the {runtime} env's torch is not the requested build",
                                problem, "remove the env (`stemsep env rm`) so it is rebuilt with the configured "
                                "torch_backend/overrides", subject="torch"))
    torch_req = entry.requirements.torch
    backend = env.torch_backend
    for prefix, builds in (("cu", torch_req.cuda), ("rocm", torch_req.rocm)):
        if builds and backend.startswith(prefix) and backend not in builds:
            findings.append(Finding("E_TORCH_VARIANT", f"{entry.id} supports torch builds {', '.join(builds)}; "
                                    f"torch_backend is {backend}", hint=f"set STEMSEP_TORCH_BACKEND to one of "
                                    f"{', '.join(builds)}", subject="torch"))
    variant = torch_variant(env)
    if variant == "cuda" and not env.nvidia:
        findings.append(Finding("W_TORCH_NO_GPU", "the env gets a CUDA torch but this machine has no NVIDIA driver",
                                "the job runs on the CPU, much slower", "set STEMSEP_TORCH_BACKEND=cpu for a "
                                "smaller env", subject="torch"))
    elif variant == "rocm" and not env.rocm:
        findings.append(Finding("W_TORCH_NO_GPU", "the env gets a ROCm torch but this machine has no ROCm device",
                                "the job runs on the CPU, much slower", "set STEMSEP_TORCH_BACKEND=cpu",
                                subject="torch"))
    elif variant == "cpu" and env.nvidia:
        findings.append(Finding("W_TORCH_GPU_UNUSED", "this machine has an NVIDIA GPU but the env gets a CPU torch",
                                f"torch_backend is {backend}", "set STEMSEP_TORCH_BACKEND=auto (or cuXXX) to use "
                                "the GPU", subject="torch"))
    if env.torch_cap_lifted:
        findings.append(Finding("W_TORCH_OVERRIDE", f"{runtime}'s own torch cap is overridden in this env "
                                f"(torch {env.torch or 'from the override'})", env.torch_cap_lifted,
                                "if the job fails inside torch, report it with the versions shown", subject="torch"))
    return findings


def _check_pip(entry: Any, env: EnvFacts) -> tuple[list[dict[str, Any]], list[Finding]]:
    rows, findings = [], []
    if not env.pip:
        return rows, findings
    from packaging.requirements import Requirement  # here: only models with pip pins parse one

    for p in env.pip:
        spec = str(Requirement(p.requirement).specifier)
        if p.seen_in == "env":
            if p.installed is None:
                state = "missing"
                findings.append(Finding("E_PIP_MISSING", f"{p.requirement} is not installed in the env {env.env_id}",
                                        "probed with the env's own interpreter", "remove the env (`stemsep env rm "
                                        f"{env.env_id}`) so it is rebuilt", subject=p.requirement))
            elif spec and _contains(spec, p.installed) is False:
                state = "wrong_version"
                findings.append(Finding("E_PIP_VERSION", f"the env {env.env_id} has {p.installed} of {p.requirement}",
                                        "probed with the env's own interpreter", f"remove the env (`stemsep env rm "
                                        f"{env.env_id}`) so it is rebuilt", subject=p.requirement))
            else:
                state = "satisfied"
        else:
            state = "to_install"
        rows.append({"requirement": p.requirement, "state": state, "version": p.installed, "seen_in": p.seen_in})
    return rows, findings


# ---- manual steps ------------------------------------------------------------------------------

def step_text(step: Any) -> str:
    return step if isinstance(step, str) else step.text


def check_manual_steps(entry: Any, confirmed: Iterable[str], artifact_rows: Sequence[Mapping[str, Any]]
                       ) -> tuple[list[Finding], list[dict[str, Any]]]:
    """A step is automated when it names one of the model's code artifacts; else it needs your confirmation."""
    code_files = {r["filename"]: r for r in artifact_rows if r["kind"] == "code"}
    confirmed = set(confirmed)
    rows, waiting, done = [], [], []
    for step in entry.requirements.manual_steps:
        text = step_text(step)
        by = None if isinstance(step, str) else step.automated_by
        if by in code_files:
            rows.append({"text": text, "state": "automated", "automated_by": by, "trust": code_files[by]["trust"]})
        elif text in confirmed:
            rows.append({"text": text, "state": "confirmed", "automated_by": None, "trust": None})
            done.append(text)
        else:
            rows.append({"text": text, "state": "unconfirmed", "automated_by": None, "trust": None})
            waiting.append(text)
    findings = []
    if waiting:
        findings.append(Finding("E_MANUAL_STEPS", f"{entry.id} needs {len(waiting)} manual step(s) done by you: "
                                + " | ".join(waiting), "StemSep cannot do or check these for you",
                                "do them, then confirm with --confirm-manual-steps (remembered for this model)",
                                subject=entry.id))
    if done:
        findings.append(Finding("W_MANUAL_STEPS_CONFIRMED", f"{entry.id}: you confirmed {len(done)} manual step(s): "
                                + " | ".join(done), "a reminder: StemSep cannot check them", subject=entry.id))
    return findings, rows


# ---- Phase Fix ---------------------------------------------------------------------------------

PHASE_FIX_PARAMS = ("lowHz", "highHz", "highFreqWeight")


def check_phase_fix(reference_id: str, reference: Any, valid_references: Sequence[str],
                    user: Mapping[str, float]) -> tuple[list[Finding], Optional[dict[str, Any]]]:
    """A requested reference must be a valid one; its recommended params apply unless you give your own."""
    listing = ", ".join(valid_references) or "none in this registry"
    if reference is None or reference.phase_fix.is_valid_reference is not True:
        what = "is not a model in the registry" if reference is None else "is not a valid Phase Fix reference"
        return [Finding("E_PHASE_FIX_REFERENCE", f"{reference_id} {what}",
                        "Phase Fix takes its phase from the reference; the guide names which models work as one",
                        f"use one of: {listing}", subject=reference_id)], None
    findings = []
    params = {}
    recommended = reference.phase_fix.recommended_params
    for name in PHASE_FIX_PARAMS:
        rec = getattr(recommended, name)
        if name in user:
            params[name] = {"value": user[name], "provenance": "user", "recommended": rec}
            if rec is not None and user[name] != rec:
                findings.append(Finding("W_PHASE_FIX_OVERRIDE", f"Phase Fix {name}: your {user[name]} replaces "
                                        f"{reference_id}'s recommended {rec}", subject=name))
        else:
            params[name] = {"value": rec, "provenance": "registry" if rec is not None else "runtime_default",
                            "recommended": rec}
    low, high, weight = (params[n]["value"] for n in PHASE_FIX_PARAMS)
    problems = []
    for name, value in (("lowHz", low), ("highHz", high)):
        if value is not None and not 0 < value <= MAX_HZ:
            problems.append(f"{name} {value} is outside (0, {MAX_HZ}]")
    if low is not None and high is not None and low > high:
        problems.append(f"lowHz {low} is above highHz {high}")
    if weight is not None and not 0 <= weight <= 4:
        problems.append(f"highFreqWeight {weight} is outside 0..4")
    if problems:
        findings.append(Finding("E_PHASE_FIX_PARAMS", "Phase Fix parameters are out of range", "; ".join(problems),
                                "give 0 < lowHz <= highHz <= 24000 and a weight in 0..4 (the guide's UVR "
                                "defaults: 500 / 5000)", subject=reference_id))
    return findings, {"reference": reference_id, "params": params}


# ---- the decision ------------------------------------------------------------------------------

@dataclass
class Decision:
    can_proceed: bool
    mode: str
    dev_override: bool
    blocking: list[Finding] = field(default_factory=list)  # errors that stop the job or their input
    overridden: list[Finding] = field(default_factory=list)  # errors the mode lets through
    runnable_inputs: list[str] = field(default_factory=list)
    blocked_inputs: list[str] = field(default_factory=list)

    def exit_code(self) -> ExitCode:
        """The blocking errors' own exit code when they agree (a bad file: 12), else PREFLIGHT_BLOCKED."""
        job = [f for f in self.blocking if f.input is None] or self.blocking
        codes = {CODES[f.code].exit_code for f in job}
        return codes.pop() if len(codes) == 1 else ExitCode.PREFLIGHT_BLOCKED


def decide(findings: Sequence[Finding], inputs: Sequence[str], mode: str, dev_override: bool
           ) -> tuple[Decision, list[Finding]]:
    """Apply the enforcement mode; returns the decision and the enforcement warnings to add to the report."""
    if mode not in MODES:
        raise ValueError(f"enforcement mode {mode!r}")
    decision = Decision(False, mode, dev_override)
    lenient = mode == "report" or (mode == "soft" and dev_override)
    for f in findings:
        if f.severity != "error":
            continue
        (decision.overridden if lenient and not f.fatal else decision.blocking).append(f)
    blocked = {f.input for f in decision.blocking if f.input is not None}
    decision.blocked_inputs = [i for i in inputs if i in blocked]
    decision.runnable_inputs = [i for i in inputs if i not in blocked]
    job_blocked = any(f.input is None for f in decision.blocking)
    decision.can_proceed = not job_blocked and bool(decision.runnable_inputs)
    extra = []
    codes = ", ".join(sorted({f.code for f in decision.overridden}))
    if decision.overridden and mode == "soft":
        extra.append(Finding("W_DEV_OVERRIDE", f"DEV OVERRIDE: proceeding despite {len(decision.overridden)} "
                             f"error(s) ({codes})", "--dev-override in soft enforcement lets policy errors through",
                             "do not use this for real work; fix the errors instead"))
    elif decision.overridden:
        extra.append(Finding("W_NOT_ENFORCED", f"enforcement is report: {len(decision.overridden)} error(s) are not "
                             f"enforced ({codes})", "the job may fail later or give wrong results",
                             "switch to --enforcement strict once these are fixed"))
    if dev_override and mode != "soft":
        extra.append(Finding("W_DEV_OVERRIDE_IGNORED", f"--dev-override has no effect in {mode} enforcement",
                             "only soft enforcement can be overridden", "add --enforcement soft (or set "
                             "STEMSEP_ENFORCEMENT=soft) if you really mean to override"))
    if decision.can_proceed and decision.blocked_inputs:
        extra.append(Finding("W_INPUTS_SKIPPED", f"{len(decision.blocked_inputs)} of {len(inputs)} inputs are "
                             "skipped: " + ", ".join(decision.blocked_inputs), "their errors are listed above",
                             "fix them and run them again"))
    return decision, extra
