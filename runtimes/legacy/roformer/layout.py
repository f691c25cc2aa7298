"""The key layout of MSST Roformer checkpoints: every tensor name and shape a config implies.

Names follow the module tree of msst 0.1.0's BSRoformer / MelBandRoformer (the same names the
published checkpoints use, e.g. viperx's `model_bs_roformer_ep_317_sdr_12.9755.ckpt`):

    layers.{i}.{k}                      k: [linear transformer,] time transformer, freq transformer
      .layers.{j}.0.norm.gamma            attention: RMSNorm scale
      .layers.{j}.0.to_qkv.weight         (3 * heads * dim_head, dim), no bias
      .layers.{j}.0.to_gates.weight/bias  (heads, dim): per-head sigmoid output gates
      .layers.{j}.0.to_out.0.weight       (dim, heads * dim_head), no bias
      .layers.{j}.0.rotary_embed.freqs    (dim_head / 2,): rotary frequencies (shared per transformer)
      .layers.{j}.0.to_qkv.0.weight, .temperature, .to_out.1.weight   linear attention instead
      .layers.{j}.1.net.0.gamma, .net.1.weight/bias, .net.4.weight/bias   feed-forward (x4, GELU)
      .norm.gamma                         Mel-Roformer only: RMSNorm after each transformer
    band_split.to_features.{b}.0.gamma, .1.weight/bias    per band: RMSNorm, Linear(width -> dim)
    final_norm.gamma                    BS-Roformer only
    mask_estimators.{n}.to_freqs.{b}.0.{2l}.weight/bias   per stem and band: MLP (Tanh between), then GLU

The variants with mask estimators of their own (unwa's published code) add or replace keys there:

    mask_estimators.{n}.segm.*          HyperACE v1/v2: the segmentation branch (hyperace.py); v2's head has
                                        TFC-TDF blocks (`upsample_head.block1.out_conv.*`), v1's has none
    mask_estimators.{n}.to_freqs.{b}.0.{lifting,fno_blocks,projection}.*   FNO: the MLP replaced (fno.py)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from runtimes.legacy.roformer.bands import BandLayout
from runtimes.legacy.roformer.config import BS_FNO, BS_HYPERACE, BS_HYPERACE_V2, BS_ROFORMER, ArchConfig

ROTARY_SUFFIX = ".rotary_embed.freqs"


@dataclass(frozen=True)
class TransformerSpec:
    prefix: str  # e.g. "layers.3.1"
    depth: int
    linear: bool  # linear attention (over features) instead of full attention with rotary embeddings


def transformers(arch: ArchConfig) -> list[list[TransformerSpec]]:
    """Per depth layer: the transformers in the order msst applies them."""
    out = []
    for i in range(arch.depth):
        specs: list[TransformerSpec] = []
        if arch.linear_transformer_depth:
            specs.append(TransformerSpec(f"layers.{i}.{len(specs)}", arch.linear_transformer_depth, True))
        specs.append(TransformerSpec(f"layers.{i}.{len(specs)}", arch.time_transformer_depth, False))
        specs.append(TransformerSpec(f"layers.{i}.{len(specs)}", arch.freq_transformer_depth, False))
        out.append(specs)
    return out


def mlp_dims(arch: ArchConfig, width: int) -> list[tuple[int, int]]:
    """(in, out) of each Linear in one band's mask MLP. msst's BS MLP has `depth` Linears, Mel's `depth + 1`."""
    hidden = arch.dim * arch.mlp_expansion_factor
    n_hidden = arch.mask_estimator_depth if arch.is_mel else arch.mask_estimator_depth - 1
    dims = [arch.dim] + [hidden] * n_hidden + [2 * width]
    return list(zip(dims[:-1], dims[1:]))


def expected_shapes(arch: ArchConfig, bands: BandLayout) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint for `arch` holds, with its shape (rotary frequencies included)."""
    d, inner, heads = arch.dim, arch.heads * arch.dim_head, arch.heads
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in transformers(arch):
        for spec in layer:
            for j in range(spec.depth):
                a, f = f"{spec.prefix}.layers.{j}.0", f"{spec.prefix}.layers.{j}.1"
                shapes[f"{a}.norm.gamma"] = (d,)
                if spec.linear:
                    shapes[f"{a}.to_qkv.0.weight"] = (3 * inner, d)
                    shapes[f"{a}.temperature"] = (heads, 1, 1)
                    shapes[f"{a}.to_out.1.weight"] = (d, inner)
                else:
                    shapes[f"{a}.to_qkv.weight"] = (3 * inner, d)
                    shapes[f"{a}.to_gates.weight"] = (heads, d)
                    shapes[f"{a}.to_gates.bias"] = (heads,)
                    shapes[f"{a}.to_out.0.weight"] = (d, inner)
                    shapes[f"{a}{ROTARY_SUFFIX}"] = (arch.dim_head // 2,)
                shapes[f"{f}.net.0.gamma"] = (d,)
                shapes[f"{f}.net.1.weight"] = (4 * d, d)
                shapes[f"{f}.net.1.bias"] = (4 * d,)
                shapes[f"{f}.net.4.weight"] = (d, 4 * d)
                shapes[f"{f}.net.4.bias"] = (d,)
            if arch.is_mel:
                shapes[f"{spec.prefix}.norm.gamma"] = (d,)
    for b, width in enumerate(bands.widths):
        shapes[f"band_split.to_features.{b}.0.gamma"] = (width,)
        shapes[f"band_split.to_features.{b}.1.weight"] = (d, width)
        shapes[f"band_split.to_features.{b}.1.bias"] = (d,)
    if not arch.is_mel:
        shapes["final_norm.gamma"] = (d,)
    head = arch.mask_head
    if head.startswith("hyperace"):
        from runtimes.legacy.roformer import hyperace  # torch modules: built on the meta device, nothing allocated

        segm = hyperace.parameter_shapes(head.split("_")[1], d, bands.widths)
    for n in range(arch.num_stems):
        for b, width in enumerate(bands.widths):
            if head == "fno":
                from runtimes.legacy.roformer import fno

                for rel, (shape, _) in fno.key_shapes(d, width).items():
                    shapes[f"mask_estimators.{n}.to_freqs.{b}.0.{rel}"] = shape
                continue
            for li, (din, dout) in enumerate(mlp_dims(arch, width)):
                shapes[f"mask_estimators.{n}.to_freqs.{b}.0.{2 * li}.weight"] = (dout, din)
                shapes[f"mask_estimators.{n}.to_freqs.{b}.0.{2 * li}.bias"] = (dout,)
        if head.startswith("hyperace"):
            shapes.update({f"mask_estimators.{n}.segm.{rel}": shape for rel, shape in segm.items()})
    return shapes


# The BS-Roformer variants a checkpoint's key names reveal, most specific first.
VARIANT_NAMES = {BS_HYPERACE: "HyperACE v1", BS_HYPERACE_V2: "HyperACE v2", BS_FNO: "FNO (Inst-FNO)"}


def detect_variant(names: Iterable[str]) -> str | None:
    """The variant model type a checkpoint's keys mark (None: no variant keys, a standard Roformer)."""
    segm = fno = v2 = False
    for name in names:
        if re.match(r"mask_estimators\.\d+\.segm\.", name):
            segm = True
            v2 = v2 or ".upsample_head.block1.out_conv." in name
        elif re.match(r"mask_estimators\.\d+\.to_freqs\.\d+\.0\.(fno_blocks|lifting|projection)\.", name):
            fno = True
    if segm:
        return BS_HYPERACE_V2 if v2 else BS_HYPERACE
    return BS_FNO if fno else None


def variant_mismatch(names: Iterable[str], model_type: str) -> str | None:
    """Why a checkpoint of one variant cannot load as `model_type` (None when they agree)."""
    found = detect_variant(names)
    expected = model_type if model_type in VARIANT_NAMES else None
    if found == expected:
        return None
    if found is None:
        return (f"it has none of the {VARIANT_NAMES[model_type]} keys: it is a standard Roformer checkpoint, "
                f"not a {model_type} one")
    return (f"its keys mark the {VARIANT_NAMES[found]} variant of BS-Roformer (runtime.model_type {found}), "
            f"not {model_type if expected else 'a standard ' + (model_type or BS_ROFORMER)}")


def is_optional(name: str) -> bool:
    """Keys a checkpoint may lack: rotary frequencies are fixed (not learned), so we can recompute them."""
    return name.endswith(ROTARY_SUFFIX)
