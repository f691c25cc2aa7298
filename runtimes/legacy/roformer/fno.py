"""The FNO mask estimator of unwa's BS-Roformer-Inst-FNO, without neuraloperator.

unwa replaced each band's mask MLP with neuraloperator 1.0.2's `FNO1d(n_modes_height=64,
hidden_channels=dim, in_channels=dim, out_channels=2 * band_width, lifting_channels=dim,
projection_channels=dim, n_layers=3, separable=True)` over the band's frames, then a GLU over
channels. We own the operator instead of pinning a library whose 2.x removed FNO1d: what that call
computes is small (read from neuraloperator 1.0.2's source):

    grid     a channel with the frame position, linspace(0, 1, T + 1)[:-1], appended to the input
    lifting  1x1 conv (dim + 1 -> 2 dim), GELU, 1x1 conv (-> dim). FNO1d passes `lifting_channels`
             to FNO, which takes `lifting_channel_ratio` (default 2) instead: the given value is ignored
    3 blocks spectral: rfft over frames (norm "forward"), the first min(33, T//2 + 1) modes times a
             per-channel complex weight (separable), irfft, + bias; plus a bias-free 1x1 conv skip;
             GELU (not after the last block); then a channel MLP (dim -> dim/2 -> dim, GELU between)
             plus a soft-gating skip (per-channel scale of the block's input); GELU (not after the last)
    project  1x1 conv (dim -> 2 dim), GELU, 1x1 conv (-> 2 * band width); GLU over channels

Keys per band: `mask_estimators.N.to_freqs.B.0.{lifting,fno_blocks,projection}.*`, the spectral
weights complex64 as `fno_blocks.convs.L.weight.tensor` (tltorch's dense tensor). The checkpoints also
carry neuraloperator's `_metadata` (constructor arguments, incl. a reference to torch's gelu), which we
skip. All bands share the lifting/block shapes, so they run together as batched matmuls; only the last
projection differs per band.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

MODES = 64 // 2 + 1  # n_modes_height=64 keeps 33 rFFT modes
LAYERS = 3


def key_shapes(dim: int, width: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """One band's FNO tensors (relative names) with shape and dtype, for a band of `width` features."""
    f32, c64 = torch.float32, torch.complex64
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
        "lifting.fcs.0.weight": ((2 * dim, dim + 1, 1), f32), "lifting.fcs.0.bias": ((2 * dim,), f32),
        "lifting.fcs.1.weight": ((dim, 2 * dim, 1), f32), "lifting.fcs.1.bias": ((dim,), f32),
        "projection.fcs.0.weight": ((2 * dim, dim, 1), f32), "projection.fcs.0.bias": ((2 * dim,), f32),
        "projection.fcs.1.weight": ((2 * width, 2 * dim, 1), f32), "projection.fcs.1.bias": ((2 * width,), f32),
    }
    half = round(dim * 0.5)
    for i in range(LAYERS):
        b = f"fno_blocks"
        shapes[f"{b}.convs.{i}.weight.tensor"] = ((dim, MODES), c64)
        shapes[f"{b}.convs.{i}.bias"] = ((dim, 1), f32)
        shapes[f"{b}.fno_skips.{i}.conv.weight"] = ((dim, dim, 1), f32)
        shapes[f"{b}.channel_mlp.{i}.fcs.0.weight"] = ((half, dim, 1), f32)
        shapes[f"{b}.channel_mlp.{i}.fcs.0.bias"] = ((half,), f32)
        shapes[f"{b}.channel_mlp.{i}.fcs.1.weight"] = ((dim, half, 1), f32)
        shapes[f"{b}.channel_mlp.{i}.fcs.1.bias"] = ((dim,), f32)
        shapes[f"{b}.channel_mlp_skips.{i}.weight"] = ((1, dim, 1), f32)
    return shapes


class FNOMasks:
    """The FNO mask heads of one stem, all bands at once: features (B, T, bands, dim) -> mask (B*T, sum(widths))."""

    def __init__(self, sd: Mapping[str, Tensor], prefix: str, widths: tuple[int, ...]) -> None:
        self.widths = widths

        def stack(rel: str, squeeze: bool = True) -> Tensor:
            ts = [sd[f"{prefix}.{b}.0.{rel}"] for b in range(len(widths))]
            t = torch.stack([x.squeeze(-1) if squeeze and x.ndim == 3 else x for x in ts])
            return t.contiguous()

        self.lift0_w, self.lift0_b = stack("lifting.fcs.0.weight"), stack("lifting.fcs.0.bias")
        self.lift1_w, self.lift1_b = stack("lifting.fcs.1.weight"), stack("lifting.fcs.1.bias")
        self.proj0_w, self.proj0_b = stack("projection.fcs.0.weight"), stack("projection.fcs.0.bias")
        self.proj1 = [(sd[f"{prefix}.{b}.0.projection.fcs.1.weight"].squeeze(-1).contiguous(),
                       sd[f"{prefix}.{b}.0.projection.fcs.1.bias"]) for b in range(len(widths))]
        self.blocks = []
        for i in range(LAYERS):
            blk = "fno_blocks"
            self.blocks.append(dict(
                spectral=stack(f"{blk}.convs.{i}.weight.tensor", squeeze=False),  # (nb, dim, MODES) complex
                spectral_b=stack(f"{blk}.convs.{i}.bias", squeeze=False),  # (nb, dim, 1)
                skip=stack(f"{blk}.fno_skips.{i}.conv.weight"),
                mlp0_w=stack(f"{blk}.channel_mlp.{i}.fcs.0.weight"), mlp0_b=stack(f"{blk}.channel_mlp.{i}.fcs.0.bias"),
                mlp1_w=stack(f"{blk}.channel_mlp.{i}.fcs.1.weight"), mlp1_b=stack(f"{blk}.channel_mlp.{i}.fcs.1.bias"),
                gate=stack(f"{blk}.channel_mlp_skips.{i}.weight", squeeze=False).squeeze(1),  # (nb, dim, 1)
            ))

    def to(self, device: torch.device) -> None:
        move = lambda t: t.to(device)  # noqa: E731 - always float32/complex64: the published head runs outside autocast
        for name in ("lift0_w", "lift0_b", "lift1_w", "lift1_b", "proj0_w", "proj0_b"):
            setattr(self, name, move(getattr(self, name)))
        self.proj1 = [(move(w), move(b)) for w, b in self.proj1]
        self.blocks = [{k: move(v) for k, v in blk.items()} for blk in self.blocks]

    @staticmethod
    def _conv(w: Tensor, b: Tensor | None, x: Tensor) -> Tensor:
        """Per-band 1x1 conv: w (nb, out, in), x (nb, B, in, T) -> (nb, B, out, T)."""
        y = torch.matmul(w.unsqueeze(1), x)
        return y if b is None else y.add_(b[:, None, :, None])

    def __call__(self, feats: Tensor, out: Tensor) -> None:
        """feats (B, T, nb, dim) float32; writes the GLU'd masks into out (B*T, sum(widths))."""
        B, T, nb, d = feats.shape
        x = feats.permute(2, 0, 3, 1)  # (nb, B, dim, T)
        grid = torch.linspace(0, 1, T + 1, device=feats.device, dtype=feats.dtype)[:-1]
        x = torch.cat((x, grid.expand(nb, B, 1, T)), dim=2)
        x = self._conv(self.lift1_w, self.lift1_b, F.gelu(self._conv(self.lift0_w, self.lift0_b, x)))
        modes = min(MODES, T // 2 + 1)
        for i, blk in enumerate(self.blocks):
            last = i == LAYERS - 1
            spec = torch.fft.rfft(x, norm="forward")
            low = spec[..., :modes] * blk["spectral"][:, None, :, :modes]
            spec = torch.zeros_like(spec)
            spec[..., :modes] = low
            h = torch.fft.irfft(spec, n=T, norm="forward").add_(blk["spectral_b"][:, None])
            h = h.add_(self._conv(blk["skip"], None, x))
            if not last:
                h = F.gelu(h)
            mlp = self._conv(blk["mlp1_w"], blk["mlp1_b"], F.gelu(self._conv(blk["mlp0_w"], blk["mlp0_b"], h)))
            h = mlp.add_(blk["gate"][:, None] * x)
            x = F.gelu(h) if not last else h
        x = F.gelu(self._conv(self.proj0_w, self.proj0_b, x))  # (nb, B, 2 dim, T)
        lo = 0
        for b, (w, bias) in enumerate(self.proj1):
            y = torch.matmul(w, x[b]).add_(bias[:, None])  # (B, 2 width, T)
            width = w.shape[0] // 2
            glu = y[:, :width] * torch.sigmoid(y[:, width:])
            out[:, lo:lo + width] = glu.transpose(1, 2).reshape(B * T, width)
            lo += width
