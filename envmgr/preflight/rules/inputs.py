"""Input audio: readable, decodable, channels and sample rate the model and runtime can take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional


from registry.capabilities import CAPABILITIES, capable_runtimes, splits_channels
from registry.settings import DEFAULT_SAMPLE_RATE, family_of
from envmgr.preflight.rules.codes import Finding
from envmgr.sizes import human

if TYPE_CHECKING:
    from registry.view import ModelView


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


def check_channels(a: AudioFacts, entry: ModelView, runtime: Optional[str]) -> list[Finding]:
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
        if splits_channels(entry, runtime):  # each channel separated on its own: stereo stems, nothing lost
            return []
        if runtime in DOWNMIXES_TO_MONO:
            return [Finding("W_DOWNMIX", f"{a.path} is stereo and {entry.id} is a mono model: {runtime} averages the "
                            "two channels", hint="for a stereo result, split the channels "
                            "(`ffmpeg -i in.flac -filter_complex channelsplit out_L.flac out_R.flac`) and run each",
                            input=a.path)]
        return [Finding("E_STEREO_UNSUPPORTED", f"{a.path} is stereo and {entry.id} is a mono model",
                        why=f"{runtime} does not downmix stereo input", input=a.path,
                        hint="split the channels and separate each, or downmix to mono first (`ffmpeg -ac 1`)")]
    return []


def model_sample_rate(entry: ModelView) -> Optional[int]:
    """The rate the model works at: DSP models take any rate; every trained model in the registry is 44.1 kHz."""
    return None if family_of(entry) == "dsp" else DEFAULT_SAMPLE_RATE


def check_sample_rate(a: AudioFacts, entry: ModelView) -> list[Finding]:
    rate = model_sample_rate(entry)
    if rate is None or not a.sample_rate or a.sample_rate == rate:
        return []
    return [Finding("W_RESAMPLE", f"{a.path} is {a.sample_rate} Hz; {entry.id} works at {rate} Hz, so the input is "
                    f"resampled (the stems come out at {rate} Hz)", why="resampling costs time and, done twice (in and out), softens the top octave",
                    hint=f"for full control, resample it yourself first (e.g. sox or `ffmpeg -af "
                    f"aresample=resampler=soxr -ar {rate}`)", input=a.path)]


def check_memory(a: AudioFacts, entry: ModelView, runtime: Optional[str], available_mib: Optional[float],
                 weights_mib: float = 0.0) -> list[Finding]:
    """A runtime that loads whole files (its MemoryGrowth in registry/capabilities.py) on an input whose
    estimated peak exceeds the memory available now (`available_mib`; None: unknown, nothing said)."""
    caps = CAPABILITIES.get(runtime or "")
    growth = caps.memory if caps is not None else None
    if growth is None or available_mib is None or not a.frames or not a.sample_rate:
        return []
    minutes = a.frames / a.sample_rate / 60
    peak = growth.peak_mib(minutes, weights_mib)
    if peak <= available_mib:
        return []
    streaming = [r for r in capable_runtimes(entry, entry.runtime.allowed)
                 if r in CAPABILITIES and CAPABILITIES[r].memory is None]
    hint = (f"run it with `--runtime {streaming[0]}`, which streams the file block by block; or " if streaming
            else "") + ("split the file (e.g. `ffmpeg -i in.flac -f segment -segment_time 600 -c copy part%03d.flac`) "
                        "or free memory first")
    mib = 2**20
    return [Finding("W_MEMORY_PEAK", f"{a.path} is {minutes:.0f} min long: {runtime} would need about "
                    f"{human(peak * mib)}, more than the {human(available_mib * mib)} available now",
                    why=f"{runtime} loads the whole file and holds every stem in memory: about "
                    f"{human(growth.mib_per_minute * mib)} per minute of audio, on top of {human(growth.base_mib * mib)} "
                    f"and the model's {human(weights_mib * mib)} of weights; the worker may be killed when memory "
                    "runs out",
                    hint=hint, input=a.path)]
