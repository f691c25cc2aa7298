"""Adapter of the `audio-separator` runtime (python-audio-separator, version pinned by the env).

Offline by construction: audio-separator finds a model through `download_checks.json` in its
`model_file_dir` (normally fetched from GitHub) and downloads missing files. Per model we lay out a
private model dir holding links to the model's verified artifacts and our own `download_checks.json`
that lists exactly them (the library's documented way for custom models), and the library's download
function is replaced on our instance by one that refuses: a file it would fetch is an error that names
it, never a network request.

MDX-Net and VR models have no config file: the library looks their parameters up by a hash of the
model file in UVR's model data. We write that data ourselves: the registry's `uvr_model_data` under the
hash of the file on disk (uvr_data.py), so they load offline and under any file name.

Demucs v4 models load from a bag YAML (`models: [signature, ...]`) beside their `SIG-CHECKSUM.th` packages: the
adapter lists the entry's bag first, never the MSST config beside it (msst's), and maps the sources the library
writes under its own names (Drums, Bass, ...) through the entry's declared stems.

ffmpeg (the library checks for it at start and pydub needs it) comes from the env's `imageio-ffmpeg`
wheel: a link named `ffmpeg` in a per-worker temp dir is put first on PATH.

Output: the input is decoded by the worker and handed over as a float32 WAV, so the library (told to
write with soundfile) writes float32 stems; normalization only lowers stems whose peak exceeds full
scale (threshold 1.0, the library's most transparent setting). The library returns bare file names
in its output dir (our staging dir); they become absolute stem paths. A FLAC job gets the float WAVs
converted by the worker.

Settings arrive native (`mdxc_params.overlap` is a divisor in 0.47, seconds before) and are merged over
the library's defaults. The segment size is always passed explicitly: without it the library silently
switches to 256 frames for inputs under 10 s.

Checkpoints load weights-only (TORCH_FORCE_WEIGHTS_ONLY_LOAD during load) unless the registry marks the
checkpoint `unsafe_pickle` and the host passes the user's consent (`allow_unsafe_pickle` in the settings). When the
library gives up on a checkpoint with `sys.exit(1)`, the error it logged (missing/unexpected keys) is
turned into a model-load error.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from runtimes import protocol as p
from runtimes.adapter import Adapter, Job, JobContext, RuntimeInfo, StemArray, StemFile
from runtimes.audio_separator.uvr_data import write_model_data
from runtimes.errors import JobError
from runtimes.stem_names import declared_stems, registry_spelling
from runtimes.tqdm_bridge import TqdmBridge

# The registry's `architecture` -> the list of download_checks.json audio-separator looks it up in.
# (runtimes never import the registry; these are the registry's architecture names.)
ARCH_LISTS = {"BS-Roformer": "roformer_download_list", "Mel-Roformer": "roformer_download_list",
              "MDX23C": "mdx23c_download_list", "MDX-Net": "mdx_download_list", "VR": "vr_download_list",
              "Demucs": "demucs_download_list"}
# Every list audio-separator 0.47 reads from download_checks.json (a missing one is a KeyError there).
ALL_LISTS = ("vr_download_list", "mdx_download_list", "mdx_download_vip_list", "demucs_download_list",
             "mdx23c_download_list", "mdx23c_download_vip_list", "roformer_download_list")
ARCH_PARAMS = ("mdx_params", "vr_params", "demucs_params", "mdxc_params")
# Config keys audio-separator 0.47 reads without a default (ml_collections ConfigDict: a missing key raises,
# "Failed to instantiate Roformer model: 'target_instrument'") that MSST configs may leave out, and the value
# that means what their absence means to msst (None: every instrument is a target). The registry's capability
# facts say the same (registry/capabilities.py `adapted_keys`; a test keeps the two equal).
ADAPTED_KEYS: dict[str, Any] = {"training.target_instrument": None}


class OfflineRefusal(Exception):
    """Raised instead of a download (not a RuntimeError: the library catches those to try another URL)."""


class AudioSeparatorAdapter(Adapter):
    runtime = "audio-separator"

    def __init__(self) -> None:
        self.device = "cpu"
        self.bridge = TqdmBridge()
        self.tmp = Path(tempfile.mkdtemp(prefix="stemsep-audio-separator-"))
        self._key: str | None = None
        self._separator: Any = None
        self._notes: list[str] = []  # warnings about the loaded model, repeated for each of its jobs

    def load(self) -> RuntimeInfo:
        os.environ.pop("AUDIO_SEPARATOR_MODEL_DIR", None)  # it would override our model dir
        ffmpeg = self._provide_ffmpeg()
        import audio_separator.separator  # noqa: F401 - heavy imports (torch, onnxruntime, librosa) before `ready`
        import torch
        from importlib.metadata import version

        if torch.cuda.is_available():
            self.device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            self.device = "mps"
        return RuntimeInfo(versions={"audio-separator": version("audio-separator"), "torch": torch.__version__,
                                     "onnxruntime": version("onnxruntime"), "ffmpeg": ffmpeg},
                           device=self.device)

    def separate(self, ctx: JobContext) -> list[StemArray | StemFile]:
        job = ctx.job
        separator = self._load(ctx)
        for note in self._notes:
            ctx.warn(note)
        mix, rate = ctx.read_input()
        import soundfile as sf

        source = self.tmp / "input" / f"{job.id}.wav"  # float32: the library's soundfile writer keeps the subtype
        source.parent.mkdir(exist_ok=True)
        sf.write(str(source), mix, rate, subtype="FLOAT")
        if rate != separator.sample_rate:
            ctx.warn(f"{job.input.name} is {rate} Hz; audio-separator resamples it to {separator.sample_rate} Hz")
        names = _output_tokens(separator.model_instance, declared_stems(job.model))
        separator.output_dir = separator.model_instance.output_dir = str(ctx.staging_dir)
        self.bridge.patch("audio_separator.")
        try:
            with self.bridge.job(ctx):
                written = separator.separate(str(source), custom_output_names=names)
        except JobError:
            raise
        except Exception as exc:
            raise JobError(p.E_INFERENCE, f"audio-separator failed on {job.input.name}: {type(exc).__name__}: {exc}") from exc
        finally:
            source.unlink(missing_ok=True)
        return _stems(written, names, ctx)

    def close(self) -> None:
        self._separator = self._key = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- setup ------------------------------------------------------------------------------------
    def _provide_ffmpeg(self) -> str:
        """`ffmpeg` on PATH from the env's imageio-ffmpeg wheel (nothing from the system needed)."""
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        bin_dir = self.tmp / "bin"
        bin_dir.mkdir(exist_ok=True)
        link = bin_dir / "ffmpeg"
        if not link.exists():
            link.symlink_to(exe)
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        version = re.search(r"-v?(\d+(?:\.\d+)+)", Path(exe).name)  # ffmpeg-linux-x86_64-v9.0.2
        return f"{version.group(1) if version else Path(exe).name} (imageio-ffmpeg {imageio_ffmpeg.__version__})"

    def _load(self, ctx: JobContext) -> Any:
        job = ctx.job
        key = json.dumps([job.model, job.artifacts, job.settings, ctx.device], sort_keys=True, default=str)
        if key == self._key:
            return self._separator
        self._separator = self._key = None  # free the previous model first
        self._notes = []
        from audio_separator.separator import Separator

        primary, model_dir = self._model_dir(job)
        config = _read_yaml(model_dir, job)
        kwargs = {name: _merged(Separator, name, job.settings.get(name)) for name in ARCH_PARAMS}
        _fix_segment(kwargs["mdxc_params"], job.settings.get("mdxc_params") or {}, config)
        separator = Separator(log_level=logging.INFO, model_file_dir=str(model_dir), output_dir=str(self.tmp / "out"),
                              output_format="WAV", use_soundfile=True, normalization_threshold=1.0,
                              amplification_threshold=0.0,
                              sample_rate=int((config.get("audio") or {}).get("sample_rate") or 44100), **kwargs)
        if ctx.device == "cpu" and separator.torch_device_cpu is not None:  # the host asked for the CPU
            separator.torch_device = separator.torch_device_cpu
            separator.onnx_execution_provider = ["CPUExecutionProvider"]
        separator.download_file_if_not_exists = _refuse_download  # offline: a missing file is an error
        with _captured_errors() as logged, _weights_only(job):
            try:
                separator.load_model(model_filename=primary)
            except SystemExit as exc:  # the library's answer to a checkpoint it cannot load
                raise JobError(p.E_MODEL_LOAD, _load_failure(job, primary, logged),
                               hint="the checkpoint does not fit the config (another model's file, or a variant "
                                    "that needs its own code); check both artifacts of this model") from exc
            except OfflineRefusal as exc:
                raise JobError(p.E_ARTIFACT_MISSING, f"audio-separator wanted to download {exc} for {job.model_id}; "
                               "StemSep runs it offline with the registry's artifacts only",
                               hint="add that file to the model's artifacts in the registry") from None
            except ValueError as exc:
                if "not found in supported model files" in str(exc):
                    raise JobError(p.E_MODEL_TYPE_UNKNOWN, f"audio-separator does not know model file {primary}",
                                   hint="this is a bug in the adapter's download_checks.json layout") from exc
                raise JobError(p.E_MODEL_LOAD, f"audio-separator cannot load {job.model_id}: {exc}") from exc
            except Exception as exc:
                raise JobError(p.E_MODEL_LOAD, _load_exception(job, primary, exc)) from exc
        self._separator, self._key = separator, key
        return separator

    def _model_dir(self, job: Job) -> tuple[str, Path]:
        """A private model_file_dir: links to the artifacts and a download_checks.json listing them."""
        arts = job.model.get("artifacts") or {}
        primary, config = arts.get("primary") or {}, arts.get("config") or {}
        arch = str(job.model.get("architecture") or "")
        listing = ARCH_LISTS.get(arch)
        if listing is None:
            raise JobError(p.E_MODEL_TYPE_UNKNOWN,
                           f"audio-separator has no model list for {job.model_id}'s architecture {arch or '(none)'}",
                           hint=f"it runs {', '.join(sorted(ARCH_LISTS))}; pick another runtime with --runtime")
        if not primary.get("filename"):
            raise JobError(p.E_MODEL_LOAD, f"model {job.model_id} has no primary artifact (the model file)")
        model_dir = self.tmp / "models" / re.sub(r"[^A-Za-z0-9_.-]", "_", job.model_id)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        model_dir.mkdir(parents=True)
        for name, path in job.artifacts.items():
            (model_dir / name).symlink_to(job.artifact(name))
        name, yaml_name = primary["filename"], config.get("filename")
        checks: dict[str, Any] = {key: {} for key in ALL_LISTS}
        friendly = f"StemSep model {job.model_id}"
        if listing in ("roformer_download_list", "mdx23c_download_list"):
            if not yaml_name:
                raise JobError(p.E_MODEL_LOAD, f"{job.model_id} ({arch}) has no config artifact; audio-separator "
                               "needs the model's YAML", hint="declare artifacts.config in its registry entry")
            checks[listing][friendly] = {name: yaml_name}
            self._notes += _derive_config(model_dir, yaml_name, job)
        elif listing == "demucs_download_list":
            name = _demucs_bag(job, yaml_name)
            # the library takes the first YAML it lists as the model: the bag, never msst's config beside it
            checks[listing][f"Demucs v4: {job.model_id}"] = {n: n for n in [name, *(n for n in job.artifacts
                                                                                    if n != name)]}
        else:  # MDX-Net, VR: parameters by the file's hash, which we write (uvr_data.py)
            checks[listing][friendly] = name
            self._notes = write_model_data(model_dir, job.model, job.model_id, job.artifact(name))
        (model_dir / "download_checks.json").write_text(json.dumps(checks))
        return name, model_dir


def _merged(separator_cls: Any, name: str, ours: dict[str, Any] | None) -> dict[str, Any]:
    """The library's default dict for one architecture, updated with our native settings."""
    default = inspect.signature(separator_cls.__init__).parameters[name].default
    return {**dict(default), **(ours or {})}


def _demucs_bag(job: Job, msst_config: str | None) -> str:
    """The Demucs bag file (`models: [signature, ...]`) audio-separator loads: the entry's YAML artifact besides
    the MSST config msst reads (htdemucs.yaml beside config_musdb18_htdemucs.yaml), or the config when it is the
    only one."""
    yamls = [n for n in job.artifacts if n.endswith(".yaml")]  # the library's bag repo reads *.yaml only
    bags = [n for n in yamls if n != msst_config] or yamls
    if len(bags) != 1:
        raise JobError(p.E_MODEL_LOAD, f"{job.model_id} (Demucs) needs one bag YAML naming its .th parts for "
                       f"audio-separator; its artifacts have {', '.join(bags) or 'none'}",
                       hint="declare the Demucs bag file (e.g. htdemucs.yaml, `models: [signature]`) as an "
                            "additional artifact of the entry, beside the MSST config")
    return bags[0]


def _fix_segment(mdxc: dict[str, Any], given: dict[str, Any], config: dict[str, Any]) -> None:
    """Roformer/MDX23C: the model's own segment, stated explicitly, unless the host set one."""
    if "segment_size" in given:
        return
    # (a Demucs entry's MSST config names its model as a string: `model: htdemucs`)
    model, audio, inference = (part if isinstance(part := config.get(k), dict) else {}
                               for k in ("model", "audio", "inference"))
    hop = model.get("stft_hop_length") or audio.get("hop_length")
    chunk = inference.get("chunk_size") or audio.get("chunk_size")
    if hop and chunk and chunk % hop == 0:
        frames = chunk // hop + 1  # chunk = hop * (frames - 1): the same chunk msst uses
    else:
        frames = inference.get("dim_t") or audio.get("dim_t")
    if frames:
        mdxc["segment_size"], mdxc["override_model_segment_size"] = int(frames), True


def _read_yaml(model_dir: Path, job: Job) -> dict[str, Any]:
    config = ((job.model.get("artifacts") or {}).get("config") or {}).get("filename")
    if not config or not str(config).lower().endswith((".yaml", ".yml")):
        return {}
    return _load_yaml(model_dir / config, job)


def _load_yaml(path: Path, job: Job) -> dict[str, Any]:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("tag:yaml.org,2002:python/tuple", lambda loader, node: tuple(loader.construct_sequence(node)))
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)
    except (OSError, yaml.YAMLError) as exc:
        raise JobError(p.E_MODEL_LOAD, f"cannot read {path.name} of {job.model_id}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _derive_config(model_dir: Path, name: str, job: Job) -> list[str]:
    """Where the model's config lacks a key the library reads without a default (ADAPTED_KEYS), the model dir
    gets a derived copy with it added in place of the link to the original, which is never written."""
    link = model_dir / name
    data = _load_yaml(link, job)
    added = {}
    for dotted, value in ADAPTED_KEYS.items():
        section, key = dotted.split(".", 1)
        part = data.get(section)
        if isinstance(part, dict) and key not in part:
            part[key] = value
            added[dotted] = value
    if not added:
        return []
    import yaml

    derived = model_dir / f".{name}.derived"
    derived.write_text(yaml.dump(data, Dumper=yaml.Dumper, sort_keys=False), encoding="utf-8")  # tuples kept
    link.unlink()  # the link only: the original stays as it is in the model store
    os.replace(derived, link)
    return [f"audio-separator got a copy of {name} with " + ", ".join(f"{k}: {v!r}" for k, v in added.items())
            + " added (it reads the key without a default; the original file is unchanged)"]


def _refuse_download(url: str, output_path: str) -> None:
    if os.path.isfile(output_path):
        return
    raise OfflineRefusal(f"{os.path.basename(output_path)} ({url})")


def _output_tokens(instance: Any, declared: list[str]) -> dict[str, str]:
    """custom_output_names: every stem the model may write -> a token we can map back to the stem. A Demucs model
    writes its sources under audio-separator's names by position (Drums, Bass, ...), which only the entry declares."""
    names = [instance.primary_stem_name, instance.secondary_stem_name]
    training = (getattr(instance, "model_data", None) or {}).get("training") or {}
    names += list(training.get("instruments") or []) + declared
    tokens: dict[str, str] = {}
    for name in names:
        if name and name.lower() not in {k.lower() for k in tokens}:
            tokens[name] = f"stemsep-stem-{len(tokens)}"
    return tokens


def _stems(written: list[str], tokens: dict[str, str], ctx: JobContext) -> list[StemArray | StemFile]:
    """Bare names the library returned -> absolute paths in the staging dir, named by stem."""
    by_token = {token: name for name, token in tokens.items()}
    declared = declared_stems(ctx.job.model)
    stems: list[StemArray | StemFile] = []
    for name in written:
        path = Path(ctx.staging_dir) / name  # the library returns names relative to its output dir
        stem = by_token.get(path.stem)
        if stem is None or not path.is_file():
            raise JobError(p.E_OUTPUT_WRITE, f"audio-separator wrote {name!r}, which is not a stem it was asked for")
        stem = registry_spelling(stem, declared)
        if ctx.job.output_format == "wav":
            stems.append(StemFile(stem, str(path.resolve())))
        else:  # FLAC: the worker writes it (24-bit, with its clipping warning) from the float data
            import soundfile as sf

            audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
            stems.append(StemArray(stem, audio, rate))
    return stems


@contextmanager
def _captured_errors() -> Iterator[list[str]]:
    """The library logs why it gives up (then calls sys.exit): keep those messages."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(level=logging.ERROR)
    logger = logging.getLogger("audio_separator")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@contextmanager
def _weights_only(job: Job) -> Iterator[None]:
    primary = (job.model.get("artifacts") or {}).get("primary") or {}
    consented = bool(primary.get("unsafe_pickle")) and job.settings.get("allow_unsafe_pickle") is True
    if consented:
        yield
        return
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"  # read by torch.load on every call
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = before


def _load_failure(job: Job, primary: str, logged: list[str]) -> str:
    """The library's logged error, reduced to what the user needs: which keys did not fit."""
    text = "\n".join(logged)
    parts = []
    for kind, label in (("Missing", "missing"), ("Unexpected", "unexpected")):
        match = re.search(rf"{kind} key\(s\) in state_dict: (.*?)(?:\.\s*\n|\.\s*$|\.\s*(?:Unexpected|size))", text, re.S)
        if match:
            keys = re.findall(r'"([^"]+)"', match.group(1))
            parts.append(f"{len(keys)} {label} keys ({', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''})")
    shapes = re.findall(r"size mismatch for ([\w.]+)", text)
    if shapes:
        parts.append(f"{len(set(shapes))} keys of another shape ({', '.join(sorted(set(shapes))[:6])})")
    if not parts:
        first = next((line for line in logged if line.strip()), "no reason was logged")
        parts.append(first.strip()[:500])
    return (f"audio-separator could not load checkpoint {primary} of {job.model_id} with its config "
            f"(the library exited): " + "; ".join(parts))


def _load_exception(job: Job, primary: str, exc: BaseException) -> str:
    text = str(exc)
    if "Weights only load failed" in text or type(exc).__name__ == "UnpicklingError":
        found = re.search(r"GLOBAL ([\w.]+)", text)
        return (f"checkpoint {primary} of {job.model_id} holds pickled Python objects"
                + (f" ({found.group(1)})" if found else "")
                + "; StemSep loads weights only, so it was refused (loading it could run code from the file)")
    return f"audio-separator cannot load {job.model_id}: {type(exc).__name__}: {text.strip()[:500]}"
