"""The segmentation branch (`segm`) of unwa's HyperACE BS-Roformers, v1 and v2, for inference.

Each mask estimator of a HyperACE model adds, to the per-band MLP masks, the output of a small
encoder-decoder CNN over the (frame, band) grid of the transformer features:

    backbone   depthwise-separable conv stages, strided in time (and, in v2, in bands for the last two):
               widths 64 -> 256 -> 384 -> 512 -> 768, fixed whatever the model's dim
    HyperACE   the four stages resized to the third's grid and fused; a high-order branch of hypergraph
               blocks (soft assignment of every cell to learned, input-adapted hyperedges; message passing
               cell -> edge -> cell) beside a low-order conv branch and an untouched share of channels
    decoder    top-down with skip connections, each level gated by the HyperACE features
    head       time restored to the input frames, then the band axis upsampled 16x by channel-to-band
               shuffles (v2: each followed by two TFC-TDF blocks) and resized to the output bins;
               4 output channels = (stereo, re/im), interleaved per bin like the MLP masks

Facts (widths, strides, branch counts, layer order, InstanceNorm eps 1e-8, SiLU, bilinear resizes)
come from reading the published bs_roformer.py files (pcunwa/BS-Roformer-HyperACE: root = v1,
v2_voc/ = v2_inst/ = v2); the parameter names are the checkpoints' (`mask_estimators.N.segm.*`).
The code is ours: plain torch modules, loaded with `load_state_dict(strict=True)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-8  # every InstanceNorm of the published branch
WIDTHS = (256, 384, 512, 768)  # backbone stage widths p2..p5 (fixed in the published code)
STEM = 64


class Version:
    """What differs between HyperACE v1 and v2."""

    def __init__(self, name: str, hyperedges: int, high_order: int, low_order: int, deep_stride, tdf_head: bool):
        self.name, self.hyperedges, self.high_order, self.low_order = name, hyperedges, high_order, low_order
        self.deep_stride, self.tdf_head = deep_stride, tdf_head


V1 = Version("v1", hyperedges=16, high_order=3, low_order=2, deep_stride=(2, 1), tdf_head=False)
V2 = Version("v2", hyperedges=32, high_order=2, low_order=1, deep_stride=(2, 2), tdf_head=True)
VERSIONS = {"v1": V1, "v2": V2}


def _inorm(x: Tensor, norm: nn.InstanceNorm2d) -> Tensor:
    return F.instance_norm(x, weight=norm.weight, bias=norm.bias, eps=EPS)


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True, eps=EPS)


class Conv(nn.Module):
    """Conv (no bias) -> InstanceNorm -> SiLU."""

    def __init__(self, cin: int, cout: int, k: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, k // 2, bias=False)
        self.bn = _norm(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(_inorm(self.conv(x), self.bn))


class DSConv(nn.Module):
    """Depthwise 3x3 (optionally strided), pointwise 1x1, InstanceNorm, SiLU."""

    def __init__(self, cin: int, cout: int, stride=1) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.pwconv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = _norm(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(_inorm(self.pwconv(self.dwconv(x)), self.bn))


class Bottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dsconv1, self.dsconv2 = DSConv(c, c), DSConv(c, c)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.dsconv2(self.dsconv1(x))


class C3k(nn.Module):
    """Split into a bottleneck path and a lateral path, concatenate, fuse."""

    def __init__(self, cin: int, cout: int, n: int, e: float = 0.5) -> None:
        super().__init__()
        mid = int(cout * e)
        self.cv1, self.cv2, self.cv3 = Conv(cin, mid), Conv(cin, mid), Conv(2 * mid, cout)
        self.m = nn.Sequential(*[Bottleneck(mid) for _ in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class C3k2(nn.Module):
    def __init__(self, cin: int, cout: int, n: int) -> None:
        super().__init__()
        mid = cout // 2
        self.cv1, self.m, self.cv2 = Conv(cin, mid), C3k(mid, mid, n, e=1.0), Conv(mid, cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.cv2(self.m(self.cv1(x)))


class HyperedgeAssignment(nn.Module):
    """Soft assignment (B, cells, edges) of every cell to prototypes shifted by the input's pooled context."""

    def __init__(self, c: int, edges: int, heads: int) -> None:
        super().__init__()
        self.edges, self.heads = edges, heads
        self.global_proto = nn.Parameter(torch.zeros(edges, c))
        self.context_mapper = nn.Linear(2 * c, edges * c, bias=False)
        self.query_proj = nn.Linear(c, c, bias=False)

    def forward(self, cells: Tensor) -> Tensor:  # cells (B, N, C)
        B, N, C = cells.shape
        H = self.heads
        context = torch.cat((cells.mean(dim=1), cells.amax(dim=1)), dim=1)
        protos = self.global_proto + self.context_mapper(context).view(B, self.edges, C)
        q = self.query_proj(cells).view(B, N, H, C // H).transpose(1, 2)  # (B, H, N, Dh)
        k = protos.view(B, self.edges, H, C // H).permute(0, 2, 3, 1)  # (B, H, Dh, E)
        scores = torch.matmul(q, k).mean(dim=1) * (C // H) ** -0.5  # (B, N, E), mean over heads
        return torch.softmax(scores.transpose(1, 2), dim=-1).transpose(1, 2)  # softmax over cells, per edge


class HypergraphBlock(nn.Module):
    """The published AdaptiveHypergraphComputation: cells -> hyperedges -> cells, residual."""

    def __init__(self, c: int, edges: int, heads: int) -> None:
        super().__init__()
        self.adaptive_hyperedge_gen = HyperedgeAssignment(c, edges, heads)
        self.hypergraph_conv = nn.Module()
        self.hypergraph_conv.W_e = nn.Linear(c, c, bias=False)
        self.hypergraph_conv.W_v = nn.Linear(c, c, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        cells = x.flatten(2).transpose(1, 2)  # (B, N, C)
        assign = self.adaptive_hyperedge_gen(cells)  # (B, N, E)
        edges = F.silu(self.hypergraph_conv.W_e(torch.bmm(assign.transpose(1, 2), cells)))
        out = cells + F.silu(self.hypergraph_conv.W_v(torch.bmm(assign, edges)))
        return out.transpose(1, 2).reshape(B, C, H, W)


class C3AH(nn.Module):
    def __init__(self, c: int, edges: int, heads: int) -> None:
        super().__init__()
        self.cv1, self.cv2, self.cv3 = Conv(c, c), Conv(c, c), Conv(2 * c, c)
        self.ahc = HypergraphBlock(c, edges, heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat((self.ahc(self.cv2(x)), self.cv1(x)), dim=1))


def _resize(x: Tensor, size) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class HyperACE(nn.Module):
    def __init__(self, version: Version, heads: int = 8) -> None:
        super().__init__()
        mid = WIDTHS[2]
        self.c_h, self.c_l = mid // 2, mid // 4
        self.c_s = mid - self.c_h - self.c_l
        self.fuse_conv = Conv(sum(WIDTHS), mid)
        self.high_order_branch = nn.ModuleList(C3AH(self.c_h, version.hyperedges, heads) for _ in range(version.high_order))
        self.high_order_fuse = Conv(self.c_h * version.high_order, self.c_h)
        self.low_order_branch = nn.Sequential(*[C3k(self.c_l, self.c_l, 1, e=1.0) for _ in range(version.low_order)])
        self.final_fuse = Conv(mid, mid)

    def forward(self, feats: list[Tensor]) -> Tensor:
        grid = feats[2].shape[2:]
        fused = self.fuse_conv(torch.cat([f if i == 2 else _resize(f, grid) for i, f in enumerate(feats)], dim=1))
        high, low, rest = torch.split(fused, [self.c_h, self.c_l, self.c_s], dim=1)
        high = self.high_order_fuse(torch.cat([m(high) for m in self.high_order_branch], dim=1))
        return self.final_fuse(torch.cat((high, self.low_order_branch(low), rest), dim=1))


class Backbone(nn.Module):
    def __init__(self, dim: int, version: Version, depth: int = 2) -> None:
        super().__init__()
        c2, c3, c4, c5 = WIDTHS
        self.stem = DSConv(dim, STEM, stride=(2, 1))
        self.p2 = nn.Sequential(DSConv(STEM, c2, stride=(2, 1)), C3k2(c2, c2, depth))
        self.p3 = nn.Sequential(DSConv(c2, c3, stride=(2, 1)), C3k2(c3, c3, 2 * depth))
        self.p4 = nn.Sequential(DSConv(c3, c4, stride=version.deep_stride), C3k2(c4, c4, 2 * depth))
        self.p5 = nn.Sequential(DSConv(c4, c5, stride=version.deep_stride), C3k2(c5, c5, depth))

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = [self.p2(self.stem(x))]
        for stage in (self.p3, self.p4, self.p5):
            feats.append(stage(feats[-1]))
        return feats


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        hyper = WIDTHS[2]
        for level, c in zip("2345", WIDTHS):
            setattr(self, f"h_to_d{level}", Conv(hyper, c))
            setattr(self, f"skip_p{level}", Conv(c, c))
            gate = nn.Module()
            gate.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))
            setattr(self, f"fusion_d{level}", gate)
        self.up_d5 = C3k2(WIDTHS[3], WIDTHS[2], 1)
        self.up_d4 = C3k2(WIDTHS[2], WIDTHS[1], 1)
        self.up_d3 = C3k2(WIDTHS[1], WIDTHS[0], 1)
        self.final_d2 = C3k2(WIDTHS[0], WIDTHS[0], 1)

    def _gated(self, level: str, d: Tensor, hyper: Tensor) -> Tensor:
        h = getattr(self, f"h_to_d{level}")(_resize(hyper, d.shape[2:]))
        return d + getattr(self, f"fusion_d{level}").gamma * h

    def forward(self, feats: list[Tensor], hyper: Tensor) -> Tensor:
        d = self._gated("5", self.skip_p5(feats[3]), hyper)
        for level, up, skip in (("4", self.up_d5, feats[2]), ("3", self.up_d4, feats[1]), ("2", self.up_d3, feats[0])):
            d = up(_resize(d, skip.shape[2:])) + getattr(self, f"skip_p{level}")(skip)
            d = self._gated(level, d, hyper)
        return self.final_d2(d)


class TfcTdf(nn.Module):
    """Two blocks of: conv (time-frequency) + residual dense layer along bands (TDF) + conv, shortcut."""

    def __init__(self, c: int, bins: int, blocks: int = 2, bottleneck: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for _ in range(blocks):
            block = nn.Module()
            block.tfc1 = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, c, 3, 1, 1, bias=False))
            block.tdf = nn.Sequential(_norm(c), nn.SiLU(), nn.Linear(bins, bins // bottleneck, bias=False),
                                      _norm(c), nn.SiLU(), nn.Linear(bins // bottleneck, bins, bias=False))
            block.tfc2 = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, c, 3, 1, 1, bias=False))
            block.shortcut = nn.Conv2d(c, c, 1, bias=False)
            self.blocks.append(block)

    @staticmethod
    def _act_conv(seq: nn.Sequential, x: Tensor) -> Tensor:
        return seq[2](F.silu(_inorm(x, seq[0])))

    def forward(self, x: Tensor) -> Tensor:
        for b in self.blocks:
            shortcut = b.shortcut(x)
            x = self._act_conv(b.tfc1, x)
            t = b.tdf
            x = x + t[5](F.silu(_inorm(t[2](F.silu(_inorm(x, t[0]))), t[3])))
            x = self._act_conv(b.tfc2, x) + shortcut
        return x


class BandShuffle(nn.Module):
    """DSConv to `scale` x channels, then those channels become `scale` x the bands (pixel shuffle on W)."""

    def __init__(self, cin: int, cout: int, bins: int | None, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.conv = DSConv(cin, cout * scale)
        self.out_conv = TfcTdf(cout, bins) if bins else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        B, C, H, W = x.shape
        x = x.view(B, C // self.scale, self.scale, H, W).permute(0, 1, 3, 4, 2).reshape(B, C // self.scale, H, W * self.scale)
        return self.out_conv(x) if self.out_conv is not None else x


class UpsampleHead(nn.Module):
    def __init__(self, version: Version, bands: int, out_bins: int, out_channels: int) -> None:
        super().__init__()
        c = WIDTHS[0]
        self.out_bins = out_bins
        if version.tdf_head:
            chans = (c, c // 2, c // 4, c // 8, c // 16)
            bins = [bands * 2 ** (i + 1) for i in range(4)]
            self.final_conv = nn.Conv2d(chans[-1], out_channels, 3, 1, 1, bias=False)
        else:
            chans = (c, c, c // 2, c // 2, c // 4)
            bins = [None] * 4
            self.final_conv = nn.Conv2d(chans[-1], out_channels, 1, bias=False)
        for i in range(4):
            setattr(self, f"block{i + 1}", BandShuffle(chans[i], chans[i + 1], bins[i]))

    def forward(self, x: Tensor) -> Tensor:
        for i in range(4):
            x = getattr(self, f"block{i + 1}")(x)
        if x.shape[-1] != self.out_bins:
            x = _resize(x, (x.shape[2], self.out_bins))
        return self.final_conv(x)


class SegmBranch(nn.Module):
    """One mask estimator's `segm`: features (B, dim, frames, bands) -> (B, 4, frames, out_bins)."""

    def __init__(self, version: Version, dim: int, bands: int, out_bins: int, out_channels: int = 4) -> None:
        super().__init__()
        self.backbone = Backbone(dim, version)
        self.hyperace = HyperACE(version)
        self.decoder = Decoder()
        self.upsample_head = UpsampleHead(version, bands, out_bins, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        frames = x.shape[2]
        feats = self.backbone(x)
        d = self.decoder(feats, self.hyperace(feats))
        return self.upsample_head(_resize(d, (frames, d.shape[-1])))


def build(version: str, dim: int, widths: tuple[int, ...]) -> SegmBranch:
    """The branch for a model whose band feature widths (per band: bins x channels x re/im) are `widths`."""
    return SegmBranch(VERSIONS[version], dim, len(widths), sum(widths) // 4)


def parameter_shapes(version: str, dim: int, widths: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Every tensor of one branch with its shape, without allocating it."""
    with torch.device("meta"):
        branch = build(version, dim, widths)
    return {name: tuple(t.shape) for name, t in branch.state_dict().items()}
