"""Chunked inference with overlap-add, streaming: memory does not grow with the track's length.

Semantics (msst 0.1.0's `demix`, generic mode, reproduced so results match it exactly):
- step = chunk_size // num_overlap (num_overlap is a divisor, docs/DESIGN.md §4); border = chunk_size - step.
  If the track is longer than 2 * border (and border > 0), it is reflect-padded by `border` on both
  sides and the padding is cut from the result.
- Chunks start at 0, step, 2*step, ... while inside the padded track. A chunk running past the end
  is completed by reflection if more than half of it is audio, else by zeros; only its audio part
  is used.
- Each chunk's output is weighted by a window with linear fades of chunk_size // 10 samples; the
  weighted sum is divided by the summed weights (0 where they sum to 0). msst decides the fades
  per *batch* of chunks: a batch that is just the first chunk has no fade-in; the last batch has no
  fade-out on any of its chunks. Since that makes the output depend on batch_size, we follow it
  literally (documented in the README).

Streaming: chunks are processed in order; once a batch is done, every position before the next
chunk's start is final, so it is normalised and handed to `sink` and the accumulator slides on. The
accumulator spans chunk_size + (batch_size - 1) * step samples, whatever the track's length.
Chunks that lie wholly in the right padding are skipped: their output would be cut anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Chunk:
    start: int  # in padded coordinates
    length: int  # audio samples in the chunk (the rest is filled)
    fade_in: bool
    fade_out: bool


@dataclass(frozen=True)
class ChunkPlan:
    length: int  # of the track
    pad: int  # reflect padding on each side
    chunk_size: int
    step: int
    fade: int
    chunks: tuple[Chunk, ...]

    @property
    def padded_length(self) -> int:
        return self.length + 2 * self.pad


def plan_chunks(length: int, chunk_size: int, num_overlap: int, batch_size: int) -> ChunkPlan:
    step = chunk_size // num_overlap
    if step < 1:
        raise ValueError(f"num_overlap {num_overlap} exceeds chunk_size {chunk_size}")
    border = chunk_size - step
    pad = border if (length > 2 * border and border > 0) else 0
    padded = length + 2 * pad
    starts = list(range(0, padded, step))
    chunks = []
    for first in range(0, len(starts), batch_size):
        group = starts[first:first + batch_size]
        alone_first = group[-1] == 0  # msst: `if i - step == 0` after the batch's last chunk
        last_batch = group[-1] + step >= padded  # msst: `elif i >= len`
        for start in group:
            chunks.append(Chunk(start=start, length=min(chunk_size, padded - start), fade_in=not alone_first,
                                fade_out=alone_first or not last_batch))
    useful = tuple(c for c in chunks if c.start < pad + length)
    return ChunkPlan(length=length, pad=pad, chunk_size=chunk_size, step=step, fade=chunk_size // 10, chunks=useful)


def chunk_window(plan: ChunkPlan, chunk: Chunk) -> Tensor:
    window = torch.ones(plan.chunk_size)
    if plan.fade > 0:
        if chunk.fade_out:
            window[-plan.fade:] = torch.linspace(1, 0, plan.fade)
        if chunk.fade_in:
            window[:plan.fade] = torch.linspace(0, 1, plan.fade)
    return window


Source = Callable[[int, int], Tensor]  # (start, stop) in padded coordinates -> (channels, stop - start)
Sink = Callable[[int, Tensor], None]  # (start in the track, (stems, channels, n)) -> None
Model = Callable[[Tensor], Tensor]  # (batch, channels, chunk) -> (batch, stems, channels, chunk)


def run(plan: ChunkPlan, model: Model, source: Source, sink: Sink, *, stems: int, channels: int, batch_size: int,
        device: torch.device, progress: Callable[[int, int], None] | None = None,
        check_cancelled: Callable[[], None] | None = None) -> None:
    """Run `model` over the plan's chunks and stream the overlap-added result into `sink`, in order."""
    span = plan.chunk_size + (batch_size - 1) * plan.step
    acc = torch.zeros((stems, channels, span))
    weight = torch.zeros(span)
    batch = torch.empty((batch_size, channels, plan.chunk_size))
    windows = {}
    origin = 0  # padded position of acc[..., 0]; everything before it has gone to the sink
    live_end = 0  # padded position up to which acc holds contributions
    end = plan.pad + plan.length
    total = len(plan.chunks)
    for first in range(0, total, batch_size):
        if check_cancelled:
            check_cancelled()
        group = plan.chunks[first:first + batch_size]
        for j, chunk in enumerate(group):
            _fill(batch[j], source(chunk.start, chunk.start + chunk.length), plan.chunk_size)
        out = model(batch[:len(group)].to(device, non_blocking=True)).float().cpu()
        for j, chunk in enumerate(group):
            key = (chunk.fade_in, chunk.fade_out)
            if key not in windows:
                windows[key] = chunk_window(plan, chunk)
            win = windows[key][:chunk.length]
            lo = chunk.start - origin
            acc[..., lo:lo + chunk.length].addcmul_(out[j, ..., :chunk.length], win)
            weight[lo:lo + chunk.length] += win
            live_end = max(live_end, chunk.start + chunk.length)
        following = plan.chunks[first + len(group)].start if first + len(group) < total else live_end
        origin = _flush(acc, weight, origin, min(following, end), live_end, plan.pad, sink)
        if progress:
            progress(min(first + len(group), total), total)


def _fill(slot: Tensor, audio: Tensor, chunk_size: int) -> None:
    """Copy `audio` into the chunk slot; complete a short chunk by reflection (> half audio) or zeros."""
    n = audio.shape[-1]
    slot[:, :n] = audio
    missing = chunk_size - n
    if not missing:
        return
    if n > chunk_size // 2:  # reflect without repeating the edge sample (torch's "reflect")
        slot[:, n:] = audio[:, n - 1 - missing:n - 1].flip(-1)
    else:
        slot[:, n:] = 0


def _flush(acc: Tensor, weight: Tensor, origin: int, upto: int, live_end: int, pad: int, sink: Sink) -> int:
    """Hand [origin, upto) to the sink (normalised, padding cut), slide the accumulator to start at `upto`."""
    n = upto - origin
    if n <= 0:
        return origin
    w = weight[:n]
    ready = torch.where(w > 0, acc[..., :n] / w, torch.zeros((), dtype=acc.dtype))
    lo, hi = max(origin, pad), upto
    if hi > lo:
        sink(lo - pad, ready[..., lo - origin:hi - origin])
    keep = max(0, live_end - upto)
    if keep:
        acc[..., :keep] = acc[..., n:n + keep].clone()
        weight[:keep] = weight[n:n + keep].clone()
    acc[..., keep:] = 0
    weight[keep:] = 0
    return upto
