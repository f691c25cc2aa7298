"""Adapter of the `msst` runtime: models built from MSST configs, separated by msst's own code.

Per job: the model's config (`artifacts.config`) is read with msst's `load_config`, the host's native
settings (`inference.num_overlap`, `inference.chunk_size`, `inference.batch_size`, `use_tta`) are
applied to it, the model is built by msst's `build_model_from_config` -- or, when the model ships its
own code, by the class of that code artifact (runtimes/code_artifacts.py) -- and its checkpoint is read
safely (weights only, non-tensor entries dropped) and loaded strictly. Audio goes through msst's own
`separate_audio` (its `demix` chunking, TTA, normalisation), float32 in and out. The model stays loaded
across the jobs of a batch.

Input at another sample rate is resampled to the config's rate, as msst's own CLI does (librosa), and
the stems come out at the model's rate. A one-stem model (`training.target_instrument`) whose registry
entry declares one more stem gets it as the rest of the mix, like msst's `extract_instrumental`.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from runtimes import protocol as p
from runtimes.adapter import Adapter, Job, JobContext, RuntimeInfo, StemArray
from runtimes.errors import JobError
from runtimes.stem_names import declared_stems, registry_spelling, residual_stem
from runtimes.tqdm_bridge import TqdmBridge

# Repo-layout imports in model code written for an MSST checkout, and where they live in the package.
MSST_ALIASES = {"models": "msst.models", "utils": "msst.utils"}
# Harmless callables some checkpoints reference in metadata: neuraloperator stores its activation
# (torch._C._nn.gelu) in `_metadata`; allowed so the weights-only loader can read the file.
SAFE_CHECKPOINT_GLOBALS = ("gelu",)


class MsstAdapter(Adapter):
    runtime = "msst"

    def __init__(self) -> None:
        self.device = "cpu"
        self.bridge = TqdmBridge()
        self._key: str | None = None
        self._loaded: Any = None  # (model, config, model_type, device)

    def load(self) -> RuntimeInfo:
        import msst
        import numpy
        import torch
        from msst.utils import model_utils, settings  # noqa: F401 - the heavy imports happen here, before `ready`

        self.bridge.patch("msst.")
        if torch.cuda.is_available():
            self.device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            self.device = "mps"
        warnings = []
        torch_major_minor = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
        if torch_major_minor >= (2, 12):
            warnings.append(f"msst {msst.__version__} declares torch<2.12; running on torch {torch.__version__} "
                            "(the env overrides the cap)")
        return RuntimeInfo(versions={"msst": msst.__version__, "torch": torch.__version__, "numpy": numpy.__version__},
                           device=self.device, warnings=warnings)

    def separate(self, ctx: JobContext) -> list[StemArray]:
        model, config, model_type, device = self._model(ctx)
        mix, rate = ctx.read_input()
        target_rate = int(getattr(config.audio, "sample_rate", 0) or 44100)
        if rate != target_rate:
            mix = _resample(mix, rate, target_rate)
            ctx.warn(f"{ctx.job.input.name} is {rate} Hz; resampled to the model's {target_rate} Hz as msst does "
                     f"(stems are {target_rate} Hz)")
        from msst._inference import separate_audio

        args = SimpleNamespace(model_type=model_type, use_tta=bool(ctx.settings.get("use_tta", False)), bigshifts=1,
                               disable_detailed_pbar=False, extract_instrumental=False)
        try:
            with self.bridge.job(ctx):
                out = separate_audio(model, args, config, device, mix.T)
        except JobError:
            raise
        except Exception as exc:
            raise JobError(p.E_INFERENCE, f"msst failed on {ctx.job.input.name}: {type(exc).__name__}: {exc}") from exc
        declared = declared_stems(ctx.job.model)
        stems = {registry_spelling(name, declared): _frames_first(audio) for name, audio in out.items()}
        _add_residual(stems, declared, mix)
        return [StemArray(name, audio, target_rate) for name, audio in stems.items()]

    def close(self) -> None:
        self._loaded = self._key = None

    # -- model ----------------------------------------------------------------------------------
    def _model(self, ctx: JobContext) -> Any:
        job = ctx.job
        key = json.dumps([job.model_id, job.model, job.artifacts, job.settings, ctx.device], sort_keys=True, default=str)
        if key != self._key:
            self._loaded = self._key = None  # free the previous model first
            self._loaded = self._load(job, ctx)
            self._key = key
        return self._loaded

    def _load(self, job: Job, ctx: JobContext) -> Any:
        import torch
        from msst.utils.settings import build_model_from_config, load_config

        from runtimes.code_artifacts import code_artifact_for, load_model_class
        from runtimes.legacy.roformer.separator import pick_device

        arts = job.model.get("artifacts") or {}
        config_art, ckpt_art = arts.get("config") or {}, arts.get("primary") or {}
        if not config_art.get("filename") or not ckpt_art.get("filename"):
            raise JobError(p.E_MODEL_LOAD, f"model {job.model_id} has no config or checkpoint artifact; msst needs both",
                           hint="declare artifacts.primary (checkpoint) and artifacts.config (MSST YAML) in its entry")
        config_path, ckpt_path = job.artifact(config_art["filename"]), job.artifact(ckpt_art["filename"])
        model_type = job.model_type
        try:
            config = load_config(model_type or "", str(config_path))
        except Exception as exc:
            raise JobError(p.E_MODEL_LOAD, f"cannot read the config {config_path.name} of {job.model_id}: {exc}") from exc
        model_type = model_type or getattr(config.training, "model_type", None)
        if not model_type:
            raise JobError(p.E_MODEL_LOAD, f"model {job.model_id} names no model type",
                           hint="set runtime.model_type in its registry entry (e.g. bs_roformer)")
        _apply_settings(config, job.settings)
        code = code_artifact_for(job, model_type)
        try:
            if code is not None:
                cls = load_model_class(job, code, MSST_ALIASES)
                model = cls(**dict(config.model))
            else:
                model = build_model_from_config(model_type, config)
        except JobError:
            raise
        except Exception as exc:
            if code is None and "Unknown model type" in str(exc):
                raise JobError(p.E_MODEL_TYPE_UNKNOWN, f"msst has no model type {model_type!r}, and {job.model_id} "
                               "ships no code that provides it",
                               hint=f"declare the model's own code as a code artifact (kind `code`, model_type "
                                    f"{model_type!r}, class_name) in its registry entry") from None
            how = f"the class {code.get('class_name')} of {code.get('filename')}" if code else f"msst's {model_type!r}"
            raise JobError(p.E_MODEL_LOAD, f"cannot build {job.model_id} with {how} from {config_path.name}: "
                                           f"{type(exc).__name__}: {exc}",
                           hint="check that the config's `model` section fits the model type") from exc
        consented = bool(ckpt_art.get("unsafe_pickle")) and job.settings.get("allow_unsafe_pickle") is True
        state = _read_checkpoint(ckpt_path, ctx, allow_unsafe=consented)
        problems = _load_state(model, state)
        if problems:
            raise JobError(p.E_MODEL_LOAD,
                           f"checkpoint {ckpt_path.name} does not fit {job.model_id}'s {model_type} built from "
                           f"{config_path.name}: {'; '.join(problems)}",
                           hint="the checkpoint and config belong to different models, or the model needs its own code "
                                "(a code artifact declaring its model_type)")
        device = pick_device(ctx.device)
        model = model.to(device).eval()
        torch.set_grad_enabled(False)
        return model, config, model_type, device


def _apply_settings(config: Any, settings: dict[str, Any]) -> None:
    """Native msst settings from the host, e.g. {"inference": {"num_overlap": 4}}, into the config."""
    for section, values in settings.items():
        if isinstance(values, dict):
            target = getattr(config, section, None)
            if target is None:
                config[section] = {}
                target = config[section]
            for name, value in values.items():
                target[name] = value


def _read_checkpoint(path: Any, ctx: JobContext, *, allow_unsafe: bool) -> dict[str, Any]:
    """Weights only (full unpickling only for a checkpoint the registry marks `unsafe_pickle` and the
    user consented to: the host sets `allow_unsafe_pickle: true` in the job's settings)."""
    import torch

    from runtimes.legacy.roformer.checkpoint import read_state_dict

    allowed = [getattr(torch._C._nn, name) for name in SAFE_CHECKPOINT_GLOBALS]
    with torch.serialization.safe_globals(allowed):
        return read_state_dict(path, allow_unsafe=allow_unsafe, warn=ctx.warn)


def _load_state(model: Any, state: dict[str, Any]) -> list[str]:
    """Load strictly (every tensor key and shape must match); the problems, named, instead of raising."""
    own = {k: v for k, v in model.state_dict().items() if hasattr(v, "shape")}  # tensors only: no metadata
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
                 if tuple(state[k].shape) != tuple(own[k].shape)]
    problems = [_keys(kind, names) for kind, names in (("missing", missing), ("unexpected", unexpected),
                                                      ("misshaped", misshaped)) if names]
    if not problems:
        model.load_state_dict(state, strict=False)  # every tensor matched above; strict would trip on metadata keys
    return problems


def _keys(kind: str, names: list[str], show: int = 6) -> str:
    more = f" and {len(names) - show} more" if len(names) > show else ""
    return f"{len(names)} {kind} keys ({', '.join(names[:show])}{more})"


def _add_residual(stems: dict[str, Any], declared: list[str], mix: Any) -> None:
    """A one-stem model whose registry entry declares one more stem gets it as the rest of the mix (what
    msst's extract_instrumental, audio-separator's secondary stem and stemsep-legacy give)."""
    residual = residual_stem(list(stems), declared)
    if residual is None:
        return
    (only,) = stems.values()
    base = mix if mix.shape == only.shape else mix.mean(axis=1, keepdims=True)  # a mono model ran on the downmix
    if base.shape == only.shape:
        stems[residual] = base - only


def _frames_first(audio: Any) -> Any:
    import numpy as np

    data = np.asarray(audio, dtype=np.float32)
    return data[:, None] if data.ndim == 1 else data.T


def _resample(mix: Any, rate: int, target: int) -> Any:
    import librosa
    import numpy as np

    return np.ascontiguousarray(librosa.resample(mix.T, orig_sr=rate, target_sr=target).T, dtype=np.float32)
