"""BS-Roformer (arXiv:2309.02612) and Mel-Band-Roformer (arXiv:2310.01809), for inference only.

The network, per chunk of audio:
1. STFT per channel; the complex bins of all channels are grouped into frequency bands (contiguous
   for BS, overlapping mel bands for Mel); each band is RMS-normalised and projected to `dim`.
2. `depth` layers of axial transformers over the (frame, band) grid: attention along time (each band
   is a sequence of frames), then along frequency (each frame is a sequence of bands); rotary
   position embeddings, per-head sigmoid gates on the attention output, RMSNorm pre-norm, GELU
   feed-forward; optionally a linear-attention transformer first and skip connections between layers.
3. Per stem and band, an MLP (Tanh, then GLU) estimates a complex mask; the mixture's STFT is
   multiplied by it (overlapping mel bands average their masks) and inverted. unwa's variants change
   this head: HyperACE v1/v2 add a segmentation CNN's output to the MLP masks (hyperace.py), the FNO
   model replaces each MLP with a Fourier neural operator over frames (fno.py).

It computes what msst 0.1.0's modules compute (parity is tested to 1e-4), arranged for speed:
- every RMSNorm scale is folded into the Linear that follows it, so a norm is one fused `rms_norm`;
- q, k, v and the gates come from one matmul; rotary embedding is one complex multiply of q and k
  together; attention is torch's scaled_dot_product_attention on strided views (no copies);
- residual adds happen inside the output matmuls (`addmm_`), GELU and Tanh run in place;
- on the CPU, large intermediates live in a workspace reused across layers and chunks, so a run
  does not allocate (and page-fault) hundreds of MB per layer;
- the band split is one normalisation pass for all bands plus one matmul per band written straight
  into the time-major layout; layouts change only where the attention axis changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from runtimes.legacy.roformer import layout
from runtimes.legacy.roformer.bands import BandLayout
from runtimes.legacy.roformer.config import ArchConfig
from runtimes.legacy.roformer.fno import FNOMasks

_NORM_FLOOR = 1e-24  # msst's F.normalize clamps the norm at 1e-12, i.e. the squared norm at 1e-24
_LINEAR_ATTN_SCALE = 8.0  # msst's LinearAttention attends with a fixed scale of 8
_ROTARY_THETA = 10000.0


class Workspace:
    """Scratch buffers by name, grown on demand and reused; disabled (fresh tensors) off the CPU."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._buffers: dict[str, Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        dtype = dtype or like.dtype
        numel = math.prod(shape)
        if not self.enabled:
            return torch.empty(shape, dtype=dtype, device=like.device)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != dtype or buf.device != like.device:
            self._buffers.pop(name, None)  # free the old one before allocating the larger one
            buf = self._buffers[name] = torch.empty(numel, dtype=dtype, device=like.device)
        return buf[:numel].view(shape)

    def clear(self) -> None:
        self._buffers.clear()


def _unit_rms(x: Tensor) -> Tensor:
    """x / ||x|| * sqrt(d): msst's RMSNorm without its learned scale (which we fold into the next Linear)."""
    d = x.shape[-1]
    return F.rms_norm(x, (d,), eps=_NORM_FLOOR / d)


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor | None) -> Tensor:
    if out is None or not out.device.type == "cpu":
        return F.linear(x, weight, bias)
    if bias is None:
        return torch.mm(x, weight.t(), out=out)
    return torch.addmm(bias, x, weight.t(), out=out)


def _into(target: Tensor, value: Tensor) -> None:
    """Make `target` hold `value` (a no-op where `value` was computed into it with out=)."""
    if value.data_ptr() != target.data_ptr():
        target.copy_(value)


@dataclass
class _Weights:
    """A group of tensors that moves between devices and precisions together."""

    def apply(self, fn: Callable[[Tensor], Tensor]) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                setattr(self, f.name, fn(value))


@dataclass
class Attention(_Weights):
    w_in: Tensor  # (3 * inner + heads, dim): q, k, v and gate projections, pre-norm scale folded in
    b_in: Tensor  # zeros for q, k, v; the gate bias
    w_out: Tensor  # (dim, inner)
    rotary: Tensor  # (dim_head // 2,) rotary frequencies


@dataclass
class LinearAttention(_Weights):
    w_qkv: Tensor  # (3 * inner, dim), pre-norm scale folded in
    temperature: Tensor  # (heads, 1, 1), already exponentiated
    w_out: Tensor  # (dim, inner)


@dataclass
class FeedForward(_Weights):
    w1: Tensor  # (4 * dim, dim), pre-norm scale folded in
    b1: Tensor
    w2: Tensor
    b2: Tensor


@dataclass
class Transformer:
    blocks: list[tuple[Attention | LinearAttention, FeedForward]]
    norm: Tensor | None  # Mel-Roformer's output RMSNorm scale

    def apply(self, fn: Callable[[Tensor], Tensor]) -> None:
        for attn, ff in self.blocks:
            attn.apply(fn)
            ff.apply(fn)
        if self.norm is not None:
            self.norm = fn(self.norm)


class Roformer:
    """One loaded BS- or Mel-Band-Roformer: `model(audio (B, C, L)) -> (B, heads, C, L)`."""

    def __init__(self, arch: ArchConfig, bands: BandLayout, state: Mapping[str, Tensor], heads: tuple[int, ...]) -> None:
        self.arch, self.bands, self.heads = arch, bands, heads
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.workspace = Workspace(enabled=True)
        self._rotary_cache: dict[tuple[int, int], Tensor] = {}
        self._build(state)

    # --- weights -------------------------------------------------------------------------------
    def _build(self, sd: Mapping[str, Tensor]) -> None:
        arch, bands = self.arch, self.bands
        d = arch.dim
        default_rotary = 1.0 / (_ROTARY_THETA ** (torch.arange(0, arch.dim_head, 2)[: arch.dim_head // 2].float() / arch.dim_head))

        def scaled(weight: Tensor, gamma: Tensor) -> Tensor:
            return (weight * gamma[None, :]).contiguous()

        def transformer(spec: layout.TransformerSpec) -> Transformer:
            blocks = []
            rotary = sd.get(f"{spec.prefix}.layers.0.0{layout.ROTARY_SUFFIX}", default_rotary)
            for j in range(spec.depth):
                a, f = f"{spec.prefix}.layers.{j}.0", f"{spec.prefix}.layers.{j}.1"
                gamma = sd[f"{a}.norm.gamma"]
                if spec.linear:
                    attn: Attention | LinearAttention = LinearAttention(
                        w_qkv=scaled(sd[f"{a}.to_qkv.0.weight"], gamma), temperature=sd[f"{a}.temperature"].exp(),
                        w_out=sd[f"{a}.to_out.1.weight"].contiguous())
                else:
                    # msst shares one RotaryEmbedding per transformer; a checkpoint stores a copy per block.
                    block_rotary = sd.get(f"{a}{layout.ROTARY_SUFFIX}", rotary)
                    if not torch.equal(block_rotary, rotary):
                        raise ValueError(f"{a}: rotary frequencies differ between blocks of one transformer")
                    w_in = torch.cat([sd[f"{a}.to_qkv.weight"], sd[f"{a}.to_gates.weight"]], dim=0)
                    b_in = torch.cat([torch.zeros(sd[f"{a}.to_qkv.weight"].shape[0]), sd[f"{a}.to_gates.bias"]])
                    attn = Attention(w_in=scaled(w_in, gamma), b_in=b_in, w_out=sd[f"{a}.to_out.0.weight"].contiguous(),
                                     rotary=rotary.float())
                ff = FeedForward(w1=scaled(sd[f"{f}.net.1.weight"], sd[f"{f}.net.0.gamma"]), b1=sd[f"{f}.net.1.bias"],
                                 w2=sd[f"{f}.net.4.weight"].contiguous(), b2=sd[f"{f}.net.4.bias"])
                blocks.append((attn, ff))
            return Transformer(blocks=blocks, norm=sd.get(f"{spec.prefix}.norm.gamma") if arch.is_mel else None)

        self.layers = [[transformer(spec) for spec in layer] for layer in layout.transformers(arch)]
        self.has_linear = bool(arch.linear_transformer_depth)

        # Band split: normalise each band (x / ||x||), then Linear with sqrt(width) * gamma folded in.
        self.split_w, self.split_b = [], []
        for b, width in enumerate(bands.widths):
            gamma = sd[f"band_split.to_features.{b}.0.gamma"] * math.sqrt(width)
            self.split_w.append(scaled(sd[f"band_split.to_features.{b}.1.weight"], gamma))
            self.split_b.append(sd[f"band_split.to_features.{b}.1.bias"])
        edges = np.cumsum((0,) + bands.widths)
        self.band_edges = [(int(edges[b]), int(edges[b + 1])) for b in range(bands.num_bands)]
        band_of_feature = np.repeat(np.arange(bands.num_bands), bands.widths)
        self.band_of_feature = torch.from_numpy(band_of_feature).long()
        indicator = torch.zeros(bands.total, bands.num_bands)
        indicator[torch.arange(bands.total), self.band_of_feature] = 1.0
        self.band_indicator = indicator
        self.gather = None if bands.gather is None else torch.from_numpy(bands.gather)
        self.cover = None if bands.cover is None else torch.from_numpy(bands.cover)

        # Mask estimators of the heads we run; BS's final RMSNorm scale folds into each MLP's first Linear.
        final_gamma = sd.get("final_norm.gamma")
        self.final_gamma = final_gamma  # the variants' own heads take the normed features with their scale
        self.masks: list[list[list[tuple[Tensor, Tensor]]]] = []
        self.segms: list[torch.nn.Module] = []  # HyperACE: one segm branch per head we run
        self.fnos: list[FNOMasks] = []  # FNO: the operators replace the MLPs
        for n in self.heads:
            if arch.mask_head == "fno":
                self.fnos.append(FNOMasks(sd, f"mask_estimators.{n}.to_freqs", bands.widths))
                continue
            if arch.mask_head.startswith("hyperace"):
                self.segms.append(self._segm(sd, n))
            per_band = []
            for b, width in enumerate(bands.widths):
                linears = []
                for li in range(len(layout.mlp_dims(arch, width))):
                    key = f"mask_estimators.{n}.to_freqs.{b}.0.{2 * li}"
                    w = sd[f"{key}.weight"]
                    w = scaled(w, final_gamma) if (li == 0 and final_gamma is not None) else w.contiguous()
                    linears.append((w, sd[f"{key}.bias"]))
                per_band.append(linears)
            self.masks.append(per_band)
        self.window = torch.hann_window(arch.stft_win_length)
        self.d = d

    def _segm(self, sd: Mapping[str, Tensor], n: int) -> torch.nn.Module:
        from runtimes.legacy.roformer import hyperace

        branch = hyperace.build(self.arch.mask_head.split("_")[1], self.arch.dim, self.bands.widths)
        prefix = f"mask_estimators.{n}.segm."
        branch.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, strict=True)
        return branch.eval().requires_grad_(False)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "Roformer":
        """Move to a device; `dtype` float16/bfloat16 runs the transformers in half precision (GPU amp)."""
        device = torch.device(device)
        weight = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        for layer in self.layers:
            for tr in layer:
                tr.apply(weight)
        for blk in self.layers:
            for tr in blk:
                for attn, _ in tr.blocks:
                    if isinstance(attn, Attention):
                        attn.rotary = attn.rotary.to(device=device, dtype=torch.float32)
        self.split_w = [weight(t) for t in self.split_w]
        self.split_b = [weight(t) for t in self.split_b]
        self.masks = [[[(weight(w), weight(b)) for w, b in band] for band in head] for head in self.masks]
        # The variants' heads stay float32 (the FNO's published code turns autocast off around it).
        self.segms = [branch.to(device) for branch in self.segms]
        for fno in self.fnos:
            fno.to(device)
        if self.final_gamma is not None:
            self.final_gamma = self.final_gamma.to(device)
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        self.band_of_feature, self.band_indicator = move(self.band_of_feature), move(self.band_indicator)
        self.gather, self.cover, self.window = move(self.gather), move(self.cover), move(self.window)
        self.device, self.dtype = device, dtype
        self.workspace = Workspace(enabled=device.type == "cpu")
        self._rotary_cache.clear()
        return self

    # --- forward -------------------------------------------------------------------------------
    @torch.inference_mode()
    def __call__(self, audio: Tensor) -> Tensor:
        arch = self.arch
        B, C, L = audio.shape
        spec = self._stft(audio.reshape(B * C, L))  # (B*C, F, T)
        Fq, T = spec.shape[-2], spec.shape[-1]
        S = spec.view(B, C, Fq, T).permute(0, 3, 2, 1).contiguous()  # (B, T, F, C) complex
        flat = torch.view_as_real(S).view(B * T, Fq * C * 2)  # features (bin, channel, re/im)

        x = self._band_split(flat, B, T)  # (B, bands, T, dim)
        x = self._transformers(x, B, T)  # (B, T, bands, dim)
        if not arch.is_mel:
            x = _unit_rms(x)  # final_norm; its scale is folded into the mask MLPs
        out = audio.new_empty((B, len(self.heads), C, L))
        for h in range(len(self.heads)):
            mask = self._mask(x, h, B, T)  # (B*T, F*C*2), float32
            masked = torch.view_as_complex(mask.view(B, T, Fq, C, 2)).mul_(S)
            if arch.zero_dc:
                masked[:, :, 0, :] = 0
            out[:, h] = self._istft(masked.permute(0, 3, 2, 1).reshape(B * C, Fq, T), L).view(B, C, L)
        return out

    def _stft(self, audio: Tensor) -> Tensor:
        arch = self.arch
        on_cpu = self.device.type == "mps"  # MPS has no complex STFT: run it on the CPU
        x, window = (audio.cpu(), self.window.cpu()) if on_cpu else (audio, self.window)
        spec = torch.stft(x, n_fft=arch.stft_n_fft, hop_length=arch.stft_hop_length, win_length=arch.stft_win_length,
                          window=window, normalized=arch.stft_normalized, center=True, return_complex=True)
        return spec.to(self.device) if on_cpu else spec

    def _istft(self, spec: Tensor, length: int) -> Tensor:
        arch = self.arch
        on_cpu = self.device.type == "mps"
        x, window = (spec.cpu(), self.window.cpu()) if on_cpu else (spec, self.window)
        wave = torch.istft(x, n_fft=arch.stft_n_fft, hop_length=arch.stft_hop_length, win_length=arch.stft_win_length,
                           window=window, normalized=arch.stft_normalized, center=True, length=length)
        return wave.to(self.device) if on_cpu else wave

    def _band_split(self, flat: Tensor, B: int, T: int) -> Tensor:
        ws, nb, d = self.workspace, self.bands.num_bands, self.d
        feats = flat if self.gather is None else flat.index_select(1, self.gather)
        squares = torch.mul(feats, feats, out=ws.take("split_sq", tuple(feats.shape), feats))
        inv = torch.mm(squares, self.band_indicator).clamp_min_(_NORM_FLOOR).rsqrt_()  # 1 / ||band||
        normed = torch.mul(feats, inv.index_select(1, self.band_of_feature), out=squares).to(self.dtype)
        by_band = ws.take("split_out", (nb, B * T, d), normed)
        for b, (lo, hi) in enumerate(self.band_edges):
            _into(by_band[b], _linear(normed[:, lo:hi], self.split_w[b], self.split_b[b], out=by_band[b]))
        x = ws.take("time", (B, nb, T, d), normed)
        x.copy_(by_band.view(nb, B, T, d).permute(1, 0, 2, 3))
        return x

    def _transformers(self, x: Tensor, B: int, T: int) -> Tensor:
        """x (B, bands, T, dim) in; (B, T, bands, dim) out."""
        ws, nb, d = self.workspace, self.bands.num_bands, self.d
        stored: list[Tensor] = []
        time_major = True
        for i, layer in enumerate(self.layers):
            k = 0
            if self.has_linear:  # attends over all (frame, band) tokens of a batch item: layout-agnostic
                x = self._transformer(layer[0], x.view(B, nb * T, d)).view(x.shape)
                k = 1
            if self.arch.skip_connection and stored:
                for earlier in stored:
                    x.add_(earlier)
            if not time_major:
                x = ws.take("time", (B, nb, T, d), x).copy_(x.permute(0, 2, 1, 3))
            x = self._transformer(layer[k], x.view(B * nb, T, d)).view(B, nb, T, d)
            x = ws.take("freq", (B, T, nb, d), x).copy_(x.permute(0, 2, 1, 3))
            x = self._transformer(layer[k + 1], x.view(B * T, nb, d)).view(B, T, nb, d)
            time_major = False
            if self.arch.skip_connection:
                stored.append(x.clone())
        return x

    def _transformer(self, tr: Transformer, x: Tensor) -> Tensor:
        for attn, ff in tr.blocks:
            if isinstance(attn, Attention):
                self._attention(attn, x)
            else:
                self._linear_attention(attn, x)
            self._feed_forward(ff, x)
        if tr.norm is not None:
            x = F.rms_norm(x, (x.shape[-1],), weight=tr.norm, eps=_NORM_FLOOR / x.shape[-1])
        return x

    def _attention(self, w: Attention, x: Tensor) -> None:
        """x (S, N, dim), updated in place: x += to_out(gates * attention(rotary(q), rotary(k), v))."""
        arch, ws = self.arch, self.workspace
        S, N, d = x.shape
        H, Dh = arch.heads, arch.dim_head
        inner = H * Dh
        qkvg = _linear(_unit_rms(x).view(S * N, d), w.w_in, w.b_in, out=ws.take("qkvg", (S * N, w.w_in.shape[0]), x))
        qk = self._rotate(qkvg, w.rotary, S, N)  # (S, N, 2, H, Dh)
        q, k = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2)
        v = qkvg[:, 2 * inner:3 * inner].view(S, N, H, Dh).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)  # (S, N, H, Dh)
        gates = qkvg[:, 3 * inner:].view(S, N, H, 1).sigmoid()
        o = o.mul_(gates) if o.is_contiguous() else o * gates
        x.view(S * N, d).addmm_(o.reshape(S * N, inner), w.w_out.t())

    def _rotate(self, qkvg: Tensor, freqs: Tensor, S: int, N: int) -> Tensor:
        """Rotary embedding of q and k at once: adjacent pairs are complex numbers, rotated by e^(i*pos*freq)."""
        H, Dh = self.arch.heads, self.arch.dim_head
        rot = self._rotary_cache.get((N, id(freqs)))
        if rot is None:
            angles = torch.arange(N, device=freqs.device, dtype=torch.float32)[:, None] * freqs[None, :]
            rot = torch.polar(torch.ones_like(angles), angles).view(N, 1, 1, Dh // 2)
            self._rotary_cache[(N, id(freqs))] = rot
        pairs = qkvg[:, : 2 * H * Dh].view(S, N, 2, H, Dh // 2, 2)
        if pairs.dtype != torch.float32 or qkvg.stride(0) % 2:  # complex views need float32 and even strides
            pairs = pairs.float().contiguous()
        out = torch.view_as_complex(self.workspace.take("rot", (S, N, 2, H, Dh // 2, 2), pairs))
        torch.mul(torch.view_as_complex(pairs), rot, out=out)
        return torch.view_as_real(out).view(S, N, 2, H, Dh).to(self.dtype)

    def _linear_attention(self, w: LinearAttention, x: Tensor) -> None:
        """x (B, tokens, dim), in place. Attention between feature channels over all tokens (El-Nouby et al.)."""
        arch = self.arch
        B, N, d = x.shape
        H, Dh = arch.heads, arch.dim_head
        qkv = F.linear(_unit_rms(x), w.w_qkv).view(B, N, 3, H, Dh).permute(2, 0, 3, 4, 1)  # (3, B, H, Dh, N)
        q, k, v = F.normalize(qkv[0], dim=-1), F.normalize(qkv[1], dim=-1), qkv[2]
        q = q * w.temperature
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * _LINEAR_ATTN_SCALE, dim=-1)
        out = torch.matmul(attn, v).permute(0, 3, 1, 2).reshape(B * N, H * Dh)  # (B*N, inner)
        x.view(B * N, d).addmm_(out, w.w_out.t())

    def _feed_forward(self, w: FeedForward, x: Tensor) -> None:
        ws = self.workspace
        d = x.shape[-1]
        rows = x.numel() // d
        hidden = _linear(_unit_rms(x).view(rows, d), w.w1, w.b1, out=ws.take("ff", (rows, w.w1.shape[0]), x))
        hidden = F.gelu(hidden) if not ws.enabled else torch.ops.aten.gelu_(hidden)
        x.view(rows, d).addmm_(hidden, w.w2.t()).add_(w.b2)

    def _mask(self, x: Tensor, head: int, B: int, T: int) -> Tensor:
        """The complex mask of one stem as float32 (B*T, F*C*2) in the STFT feature layout."""
        ws, nb, d = self.workspace, self.bands.num_bands, self.d
        rows = B * T
        by_band = x.reshape(rows, nb, d)
        mask = ws.take("mask", (rows, self.bands.total), x, torch.float32)
        if self.fnos:
            self.fnos[head](x.view(B, T, nb, d).float() * self.final_gamma, mask)
            return mask
        for b, linears in enumerate(self.masks[head]):
            h = by_band[:, b]
            for li, (weight, bias) in enumerate(linears[:-1]):
                h = _linear(h, weight, bias, out=ws.take(f"mlp{li % 2}", (rows, weight.shape[0]), x)).tanh_()
            weight, bias = linears[-1]
            o = _linear(h, weight, bias, out=ws.take("glu", (rows, weight.shape[0]), x))
            half = weight.shape[0] // 2
            lo, hi = self.band_edges[b]
            _into(mask[:, lo:hi], torch.mul(o[:, :half], o[:, half:].sigmoid_(), out=mask[:, lo:hi] if ws.enabled else None))  # GLU
        if self.segms:  # HyperACE: + the segm branch over the (frame, band) grid, 4 channels per bin = (stereo, re/im)
            feats = (x.view(B, T, nb, d).float() * self.final_gamma).permute(0, 3, 1, 2)
            mask.add_(self.segms[head](feats).permute(0, 2, 3, 1).reshape(rows, -1))
        if self.gather is None:
            return mask
        assert self.cover is not None  # set together with gather (bands.py: mel layouts)
        # Mel bands overlap: each bin's mask is the mean over the bands that cover it.
        full = ws.take("mask_full", (rows, self.cover.shape[0]), mask).zero_()
        return full.index_add_(1, self.gather, mask).div_(self.cover)
