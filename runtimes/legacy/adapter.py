"""Adapter of the stemsep-legacy runtime: runs one of our model types on the job's input.

A model type is a class with `load(job, device) -> model` (classmethod) and either
- `model.separate_to_files(audio, ctx) -> [StemFile]`: `audio` is the checked input read block by block
  (`ctx.open_input()`), the stems are written block by block through `ctx.stem_writer` into the staging
  dir, so memory does not grow with the track's length. Every model type we ship does this (the DSP
  default, our Roformer): a long live set must not need more memory than a song. Such a model also says the
  rate it runs at (`model.sample_rate`, None: any rate); input at another rate is resampled to it first,
  block by block (runtimes/resample.py). Or
- `model.separate(mix, sample_rate, ctx) -> {stem name: (frames, channels) array}`: `mix` is the whole
  input, float32 (frames, channels); the worker writes the arrays. Memory grows with the input: kept
  for test model types (tests/worker/fault_hook.py), not for models users run.
MODEL_TYPES maps the registry's `runtime.model_type` to that class as
"module:Class", imported on first use: the DSP env has no torch, so nothing heavy may be imported here.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from typing import Any

from runtimes import protocol as p
from runtimes.adapter import Adapter, Job, JobContext, RuntimeInfo, StemArray, StemFile
from runtimes.errors import JobError

MODEL_TYPES: dict[str, str] = {
    "dsp_center_split": "runtimes.legacy.dsp:CenterSplit",
    "bs_roformer": "runtimes.legacy.roformer.separator:RoformerModelType",
    "mel_band_roformer": "runtimes.legacy.roformer.separator:RoformerModelType",
    "bs_roformer_hyperace": "runtimes.legacy.roformer.separator:RoformerModelType",
    "bs_roformer_hyperace_v2": "runtimes.legacy.roformer.separator:RoformerModelType",
    "bs_roformer_fno": "runtimes.legacy.roformer.separator:RoformerModelType",
}


class LegacyAdapter(Adapter):
    runtime = "stemsep-legacy"

    def __init__(self) -> None:
        self.device = "cpu"
        self._model_key: str | None = None
        self._model: Any = None  # the last model loaded, kept across the jobs of a batch

    def load(self) -> RuntimeInfo:
        import numpy
        import soundfile

        versions = {"numpy": numpy.__version__, "soundfile": soundfile.__version__,
                    "libsndfile": soundfile.__libsndfile_version__}
        if importlib.util.find_spec("torch") is not None:  # the torch requirement set of this runtime
            import torch

            versions["torch"] = torch.__version__
            if torch.cuda.is_available():
                self.device = "cuda"
            elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
                self.device = "mps"
        return RuntimeInfo(versions=versions, device=self.device)

    def _load_model(self, job: Job, device: str) -> Any:
        key = json.dumps([job.model_id, job.model_type, job.artifacts, job.settings, device], sort_keys=True, default=str)
        if key != self._model_key:
            target = MODEL_TYPES.get(job.model_type or "")
            if target is None:
                raise JobError(p.E_MODEL_TYPE_UNKNOWN,
                               f"model {job.model_id} has runtime.model_type {job.model_type!r}, which stemsep-legacy "
                               "does not implement", hint=f"known model types: {', '.join(sorted(MODEL_TYPES))}")
            module, _, name = target.partition(":")
            self._model = self._model_key = None  # free the previous model before loading the next
            try:
                self._model = getattr(importlib.import_module(module), name).load(job, device)
            except JobError:
                raise
            except Exception as exc:
                raise JobError(p.E_MODEL_LOAD, f"cannot load model {job.model_id}: {exc}") from exc
            self._model_key = key
        return self._model

    def separate(self, ctx: JobContext) -> list[StemArray] | list[StemFile]:
        model = self._load_model(ctx.job, ctx.device)
        try:
            if hasattr(model, "separate_to_files"):  # streams: input file -> stem files, flat memory
                from runtimes.resample import at_model_rate

                with ctx.open_input() as audio, at_model_rate(audio, model.sample_rate, ctx) as model_input:
                    return list(model.separate_to_files(model_input, ctx))
            mix, sample_rate = ctx.read_input()
            stems = model.separate(mix, sample_rate, ctx)
        except JobError:
            raise
        except Exception as exc:
            raise JobError(p.E_INFERENCE, f"model {ctx.job.model_id} failed on {ctx.job.input.name}: {exc}") from exc
        return [StemArray(name, audio, sample_rate) for name, audio in stems.items()]

    def close(self) -> None:
        self._model = self._model_key = None
