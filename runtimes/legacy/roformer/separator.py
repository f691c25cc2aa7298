"""A loaded Roformer with its settings: audio in, named stems out.

`RoformerSeparator.load(config, checkpoint, ...)` builds the model from an MSST config and
checkpoint; `separate(mix)` runs the chunked inference of chunking.py over a (frames, channels)
array and returns {stem: (frames, channels) float32}; `separate_stream` does the same reading and
writing block by block (`separate_file`: file to file). `RoformerModelType` wraps it in the
stemsep-legacy adapter's streaming model-type interface (`load(job, device)`,
`separate_to_files(audio, ctx)`).

Channels (as msst): a stereo model given mono runs on the channel twice and returns mono stems; a
mono model runs each channel on its own; a stereo model refuses more than two channels.
`inference.normalize` (config) standardises the input by the mono mix's mean and deviation and
undoes it on every stem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from runtimes.legacy.roformer import chunking
from runtimes.legacy.roformer.bands import band_layout
from runtimes.legacy.roformer.checkpoint import check_against, read_state_dict
from runtimes.legacy.roformer.config import RoformerConfig, load_config
from runtimes import protocol as p
from runtimes.legacy.roformer.errors import CheckpointError, InputError, RoformerError
from runtimes.legacy.roformer.model import Roformer

STATS_BLOCK = 1 << 20  # frames per read of the normalisation pass


def pick_device(requested: str | None) -> torch.device:
    """cpu | cuda[:n] | mps | auto (None): cuda, else mps, else cpu. A clear error if unavailable."""
    name = (requested or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RoformerError(f"unknown device {requested!r}", hint="use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RoformerError(f"device {requested!r} asked for, but this torch ({torch.__version__}) sees no CUDA GPU",
                            hint="use --device cpu, or build the env with a CUDA torch (machine config torch backend)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RoformerError("device 'mps' asked for, but Apple's Metal backend is not available here", hint="use --device cpu")
    return device


@dataclass
class RoformerSeparator:
    config: RoformerConfig
    model: Roformer
    device: torch.device
    warnings: list[str]

    @classmethod
    def load(cls, config_path: str | Path, checkpoint_path: str | Path, *, model_type: str | None = None,
             overrides: Mapping[str, Any] | None = None, device: str | None = None, allow_unsafe: bool = False,
             warn: Callable[[str], None] | None = None) -> "RoformerSeparator":
        warnings: list[str] = []

        def note(message: str) -> None:
            warnings.append(message)
            if warn:
                warn(message)

        config = load_config(config_path, model_type).with_overrides(**dict(overrides or {}))
        for message in config.inference.warnings:
            note(message)
        heads = config.head_indices()
        bands = band_layout(config.arch)
        state = read_state_dict(checkpoint_path, allow_unsafe=allow_unsafe, warn=note)
        check_against(state, config.arch, bands, checkpoint_path)
        try:
            model = Roformer(config.arch, bands, state, heads)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {Path(checkpoint_path).name}: {exc}") from None
        del state
        target = pick_device(device)
        amp = target.type == "cuda" and config.inference.use_amp
        model.to(target, torch.float16 if amp else torch.float32)
        return cls(config=config, model=model, device=target, warnings=warnings)

    @property
    def stems(self) -> tuple[str, ...]:
        return self.config.inference.stems

    def separate(self, mix: np.ndarray, sample_rate: int | None = None, *,
                 progress: Callable[[int, int], None] | None = None,
                 check_cancelled: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
        """mix: float32 (frames, channels) at the model's rate -> {stem: float32 (frames, channels)}."""
        if mix.ndim != 2 or mix.shape[0] == 0:
            raise InputError(f"expected audio as (frames, channels) with at least one frame, got shape {mix.shape}")
        track = torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))  # read chunk by chunk, never copied whole
        outputs = [np.zeros(mix.shape, dtype=np.float32) for _ in self.stems]
        views = [torch.from_numpy(o) for o in outputs]

        def write(start: int, data: torch.Tensor) -> None:
            for view, stem in zip(views, data):
                view[start:start + stem.shape[-1]] = stem.t()

        stats = _mono_stats(mix) if self.config.inference.normalize else None
        self._run(lambda lo, hi: track[lo:hi], track.shape[0], track.shape[1], sample_rate, write, stats,
                  progress, check_cancelled)
        return dict(zip(self.stems, outputs))

    def separate_stream(self, read: Callable[[int, int], np.ndarray], frames: int, channels: int, sample_rate: int,
                        write: Callable[[int, dict[str, np.ndarray]], Any], *,
                        progress: Callable[[int, int], None] | None = None,
                        check_cancelled: Callable[[], None] | None = None) -> None:
        """Audio read block by block (`read(start, stop)` -> float32 (n, channels)), stems handed on in order
        (`write(start, {stem: float32 (n, channels)})`, from frame 0 to the end): memory stays flat whatever
        the track's length. Gives the same stems as `separate`."""
        self._check_input(channels, sample_rate)  # before the statistics pass reads the whole track
        stats = None
        if self.config.inference.normalize:  # one pass for the mix's statistics, block by block
            stats = _mono_stats_blocks((read(lo, min(lo + STATS_BLOCK, frames)) for lo in range(0, frames, STATS_BLOCK)),
                                       frames)

        def sink(start: int, data: torch.Tensor) -> None:
            write(start, {stem: block.t().numpy() for stem, block in zip(self.stems, data)})

        self._run(lambda lo, hi: torch.from_numpy(read(lo, hi)), frames, channels, sample_rate, sink, stats,
                  progress, check_cancelled)

    def separate_file(self, input_path: str | Path, outputs: Mapping[str, str | Path], *,
                      progress: Callable[[int, int], None] | None = None,
                      check_cancelled: Callable[[], None] | None = None) -> None:
        """Audio file in, one float WAV per stem out, streamed (the command line's --stream)."""
        import soundfile as sf

        with sf.SoundFile(str(input_path)) as src:
            if src.frames == 0:
                raise InputError(f"{input_path} holds no audio (0 frames)")

            def read(lo: int, hi: int) -> np.ndarray:
                src.seek(lo)
                return src.read(hi - lo, dtype="float32", always_2d=True)

            sinks = {stem: sf.SoundFile(str(outputs[stem]), "w", samplerate=src.samplerate, channels=src.channels,
                                        subtype="FLOAT") for stem in self.stems}
            try:
                self.separate_stream(read, src.frames, src.channels, src.samplerate,
                                     lambda start, blocks: [sinks[stem].write(b) for stem, b in blocks.items()],
                                     progress=progress, check_cancelled=check_cancelled)
            finally:
                for sink in sinks.values():
                    sink.close()

    def _run(self, read: Callable[[int, int], torch.Tensor], frames: int, channels: int, sample_rate: int | None,
             write: Callable[[int, torch.Tensor], Any], stats: tuple[float, float] | None,
             progress: Callable[[int, int], None] | None, check_cancelled: Callable[[], None] | None) -> None:
        self._check_input(channels, sample_rate)
        inf = self.config.inference
        plan = chunking.plan_chunks(frames, inf.chunk_size, inf.num_overlap, inf.batch_size)
        shift, scale = stats or (0.0, 1.0)

        def source(start: int, stop: int) -> torch.Tensor:  # padded positions -> (channels, n), normalised
            lo, hi = start - plan.pad, stop - plan.pad
            if lo >= 0 and hi <= frames:
                audio = read(lo, hi)
            else:  # reflect at the edges, without repeating the edge sample
                idx = torch.arange(lo, hi).abs()
                idx = torch.where(idx >= frames, 2 * (frames - 1) - idx, idx)
                first = int(idx.min())
                audio = read(first, int(idx.max()) + 1)[idx - first]
            audio = audio.t()
            return audio if stats is None else (audio - shift) / scale

        def sink(start: int, data: torch.Tensor) -> None:
            write(start, data if stats is None else data * scale + shift)

        chunking.run(plan, self._forward(channels), source, sink, stems=len(self.stems), channels=channels,
                     batch_size=inf.batch_size, device=self.device, progress=progress, check_cancelled=check_cancelled)

    def _check_input(self, channels: int, sample_rate: int | None) -> None:
        rate = self.config.inference.sample_rate
        if sample_rate is not None and sample_rate != rate:
            raise InputError(f"the input is {sample_rate} Hz, but this model runs at {rate} Hz",
                             hint=f"resample it first, e.g. `ffmpeg -i in.flac -ar {rate} out.flac`",
                             code=p.E_INPUT_SAMPLE_RATE)
        if self.config.arch.channels == 2 and channels > 2:
            raise InputError(f"the input has {channels} channels; this model takes mono or stereo",
                             hint="downmix to stereo first, e.g. `ffmpeg -i in.wav -ac 2 out.wav`")

    def _forward(self, channels: int) -> Callable[[torch.Tensor], torch.Tensor]:
        model, model_channels = self.model, self.config.arch.channels
        if channels == model_channels:
            return model
        if model_channels == 2:  # mono into a stereo model: duplicate, keep the first channel (msst)
            return lambda batch: model(batch.expand(-1, 2, -1))[:, :, :1]

        def per_channel(batch: torch.Tensor) -> torch.Tensor:  # mono model: every channel on its own
            b, c, n = batch.shape
            out = model(batch.reshape(b * c, 1, n))  # (b*c, stems, 1, n)
            return out.view(b, c, -1, n).transpose(1, 2)
        return per_channel


def _mono_stats(mix: np.ndarray) -> tuple[float, float]:
    """msst's normalisation statistics: mean and std of the mono mix (float32); std 1 for silence."""
    mono = mix.mean(axis=1, dtype=np.float32)
    return _usable(mono.mean(), mono.std())


def _mono_stats_blocks(blocks: Any, frames: int) -> tuple[float, float]:
    total = total_sq = 0.0
    for block in blocks:
        mono = block.mean(axis=1, dtype=np.float64)
        total += float(mono.sum())
        total_sq += float(np.dot(mono, mono))
    mean = total / frames
    return _usable(np.float32(mean), np.float32(max(total_sq / frames - mean * mean, 0.0) ** 0.5))


def _usable(mean: Any, std: Any) -> tuple[float, float]:
    if not np.isfinite(std) or std <= np.finfo(np.float32).eps:
        std = np.float32(1.0)
    return mean, std


class RoformerModelType:
    """The `bs_roformer` / `mel_band_roformer` model types of the stemsep-legacy adapter.

    From the job: the checkpoint and config are the model's `artifacts.primary` and `artifacts.config`
    files; settings are msst's native ones (`inference.{chunk_size,num_overlap,batch_size}`, flat
    names accepted too) plus `use_amp`; full unpickling needs the artifact's registry flag
    `unsafe_pickle` AND the user's consent in `settings.allow_unsafe_pickle`. A one-stem model whose
    registry entry declares one more stem gets it as the residual, mix minus the model's stem (what
    msst's `extract_instrumental` and audio-separator do). The input streams from its file into the stem
    files, so a 10-minute track needs no more memory than a 1-minute one.
    """

    def __init__(self, separator: RoformerSeparator) -> None:
        self.separator = separator

    @classmethod
    def load(cls, job: Any, device: str) -> "RoformerModelType":
        artifacts = job.model.get("artifacts") or {}
        primary, config = artifacts.get("primary") or {}, artifacts.get("config") or {}
        if not primary.get("filename") or not config.get("filename"):
            raise RoformerError(f"model {job.model_id} names no checkpoint and config (artifacts.primary, artifacts.config)",
                                hint="a Roformer needs both files; add them to the model's registry entry")
        settings = dict(job.settings)
        inference = settings.get("inference")
        native = inference if isinstance(inference, dict) else {}
        overrides = {k: native.get(k, settings.get(k)) for k in ("chunk_size", "num_overlap", "batch_size")}
        overrides["use_amp"] = settings.get("use_amp")
        allow_unsafe = bool(primary.get("unsafe_pickle")) and settings.get("allow_unsafe_pickle") is True
        return cls(RoformerSeparator.load(job.artifact(config["filename"]), job.artifact(primary["filename"]),
                                          model_type=job.model_type, overrides=overrides, device=device,
                                          allow_unsafe=allow_unsafe))

    @property
    def sample_rate(self) -> int:
        """The rate the model runs at: the adapter resamples other inputs to it."""
        return int(self.separator.config.inference.sample_rate)

    def separate_to_files(self, audio: Any, ctx: Any) -> list[Any]:
        """Stream the job's input (`ctx.open_input()`) into stem files in the staging dir (`ctx.stem_writer`):
        memory stays flat whatever the track's length. Returns the StemFiles for the worker to move into place."""
        from contextlib import ExitStack

        from runtimes.adapter import StemFile
        from runtimes.stem_names import declared_stems, residual_stem

        for message in self.separator.warnings:
            ctx.warn(message)
        stems = list(self.separator.stems)
        residual = residual_stem(stems, declared_stems(ctx.job.model))
        with ExitStack() as files:
            writers = {name: files.enter_context(ctx.stem_writer(name, audio.sample_rate, audio.channels))
                       for name in stems + ([residual] if residual else [])}

            def write(start: int, blocks: dict[str, np.ndarray]) -> None:
                for name, block in blocks.items():
                    writers[name].write(block)
                if residual:  # the rest of the mix: mix - the model's one stem
                    (only,) = blocks.values()
                    writers[residual].write(audio.read(start, start + len(only)) - only)

            self.separator.separate_stream(audio.read, audio.frames, audio.channels, audio.sample_rate, write,
                                           progress=lambda done, total: ctx.progress("separate", done, total),
                                           check_cancelled=ctx.check_cancelled)
        return [StemFile(name, writer.path.name) for name, writer in writers.items()]
