"""Tiny MSST configs of a registry model's real architecture: the base config (the entry's own, or the architecture's
published one) with the entry's declared options applied (stems, stereo/mono) and only widths, depths and the chunk
reduced. Structural options stay as the base has them: band layout (freqs_per_bands / num_bands), hop, FFT size,
mask-estimator depth, sample rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.matrix.cases import REFERENCE_CONFIGS, MatrixModel


class _TupleLoader(yaml.SafeLoader):
    pass


_TupleLoader.add_constructor("tag:yaml.org,2002:python/tuple",
                             lambda loader, node: tuple(loader.construct_sequence(node)))

CHUNK_HOPS = 64  # frames per chunk: ~0.65 s at hop 441, enough for several chunks on the matrix's clip


def read_config(name: str) -> dict[str, Any]:
    return yaml.load((REFERENCE_CONFIGS / name).read_text(), Loader=_TupleLoader)


def apply_stems(config: dict[str, Any], stems: tuple[str, ...]) -> None:
    """The entry's stems: a two-stem entry is one target plus the rest of the mix (how the published vocal and
    instrumental models are trained); more stems are all predicted."""
    training = config.setdefault("training", {})
    training["instruments"] = list(stems)
    training["target_instrument"] = stems[0] if len(stems) <= 2 else None


def roformer(model: MatrixModel) -> dict[str, Any]:
    assert model.base_config
    config = read_config(model.base_config)
    apply_stems(config, model.stems)
    m, audio = config["model"], config["audio"]
    hop = int(m.get("stft_hop_length") or audio.get("hop_length") or 441)
    m.update(dim=16, depth=1, heads=1, dim_head=8, time_transformer_depth=1, freq_transformer_depth=1,
             linear_transformer_depth=0, stereo=model.stereo,
             num_stems=1 if config["training"]["target_instrument"] else len(model.stems))
    chunk = hop * CHUNK_HOPS
    audio.update(chunk_size=chunk, dim_t=CHUNK_HOPS + 1)
    config.setdefault("inference", {})["dim_t"] = CHUNK_HOPS + 1
    config["inference"]["batch_size"] = 1
    return config


MDX23C_FRAMES = 32  # STFT frames per chunk: 0.72 s at hop 1024, so the matrix's clip takes several chunks


def mdx23c(model: MatrixModel) -> dict[str, Any]:
    """TFC-TDF v3: fewer channels, blocks and scales; FFT size, hop, dim_f (the band kept) and subbands stay.
    The U-Net halves the time axis at each scale, so a chunk's frame count is a multiple of scale**scales."""
    assert model.base_config
    config = read_config(model.base_config)
    apply_stems(config, model.stems)
    m, audio = config["model"], config["audio"]
    m.update(num_channels=4, growth=4, num_blocks_per_scale=1, num_scales=2)
    audio["num_channels"] = 2 if model.stereo else 1
    assert MDX23C_FRAMES % m["scale"][0] ** m["num_scales"] == 0, "chunk frames must survive every downscale"
    # chunk = hop * (frames - 1): the centred STFT then gives `frames` frames (msst and audio-separator alike)
    audio.update(chunk_size=audio["hop_length"] * (MDX23C_FRAMES - 1), dim_t=MDX23C_FRAMES)
    config.setdefault("inference", {}).update(dim_t=MDX23C_FRAMES, batch_size=1)
    return config


def whole_hops_chunk(hop: int) -> int:
    """A chunk of whole hops as long as the Roformers' (CHUNK_HOPS hops of 441), whatever the model's hop."""
    return hop * max(1, round(441 * CHUNK_HOPS / hop))


def tiny_inference(config: dict[str, Any], chunk: int) -> dict[str, Any]:
    config["audio"]["chunk_size"] = chunk
    config.setdefault("inference", {})["batch_size"] = 1
    return config


def scnet(model: MatrixModel) -> dict[str, Any]:
    """SCNet (and its masked / transformer variants): narrower SD blocks, one conv module per band and one
    dual-path pair (an rfft/irfft round trip needs two layers); dims[0] (2 x audio channels), FFT, hop and the
    band split (band_SR/stride/kernel) stay. The model's sources are the entry's stems."""
    assert model.base_config
    config = read_config(model.base_config)
    apply_stems(config, model.stems)
    m = config["model"]
    m.update(sources=list(config["training"]["instruments"]), dims=[m["dims"][0], 8, 16, 32],
             conv_depths=[1] * len(m["conv_depths"]), num_dplayer=2)
    if model.model_type == "scnet_tran":  # its dual-path layers are transformers
        m.update(tran_rotary_embedding_dim=8, tran_depth=1, tran_heads=1, tran_dim_head=8)
    return tiny_inference(config, whole_hops_chunk(m["hop_size"]))


def apollo(model: MatrixModel) -> dict[str, Any]:
    """Apollo: narrower band features (a multiple of its 8 attention heads) and one band-sequence layer; the
    window (win ms, hence its 80-band split) and sample rate stay. Restored is the target; the adapter adds the
    rest of the mix as `addition`."""
    assert model.base_config
    config = read_config(model.base_config)
    apply_stems(config, model.stems)
    m = config["model"]
    m.update(feature_dim=16, layer=1)
    return tiny_inference(config, whole_hops_chunk(int(m["sr"] * m["win"] // 1000) // 2))


def bandit(model: MatrixModel) -> dict[str, Any]:
    """BandIt (BSRNN, multi-mask): one band-sequence module and narrow embeddings, RNN and mask MLP; the band
    specs, band count, FFT and hop stay. Its stems are the entry's."""
    assert model.base_config
    config = read_config(model.base_config)
    apply_stems(config, model.stems)
    m = config["model"]
    m.update(stems=list(config["training"]["instruments"]), n_sqm_modules=1, emb_dim=16, rnn_dim=16, mlp_dim=16)
    return tiny_inference(config, whole_hops_chunk(m["hop_length"]))


# Demucs' source order (its 6-stem model adds guitar and piano): audio-separator names a Demucs model's outputs by
# position in this order, whatever the model's `sources` say.
DEMUCS_SOURCES = ("drums", "bass", "other", "vocals", "guitar", "piano")
DEMUCS_SEGMENT = 1  # seconds per chunk (the published 11): the matrix's clip takes two overlapping chunks


def htdemucs(model: MatrixModel) -> dict[str, Any]:
    """HTDemucs: fewer channels, a narrow two-layer cross transformer (one self-, one cross-attention layer) and a
    1 s segment; the U-Net depth, FFT size, strides, kernels and DConv layout stay. The sources are the entry's
    stems in Demucs' order. The Demucs package the runtimes load takes its kwargs from this config's `htdemucs`
    section and `training` (tests/matrix/demucs_files.py)."""
    assert model.base_config
    config = read_config(model.base_config)
    sources = [s for s in DEMUCS_SOURCES if s in model.stems] + [s for s in model.stems if s not in DEMUCS_SOURCES]
    apply_stems(config, tuple(sources))
    m = config["htdemucs"]
    # dconv_comp 8 divides every width; the transformer's heads divide bottom_channels
    m.update(channels=8, bottom_channels=16, t_layers=2, t_heads=2, dconv_init=float(m["dconv_init"]))
    training = config["training"]
    training.update(segment=DEMUCS_SEGMENT, channels=2 if model.stereo else 1)
    config["audio"]["chunk_size"] = training["samplerate"] * DEMUCS_SEGMENT  # samplerate * segment, as published
    config.setdefault("inference", {})["batch_size"] = 1
    return config


MAKERS = {"roformer": roformer, "roformer-code": roformer, "mdx23c": mdx23c, "scnet": scnet, "apollo": apollo,
           "bandit": bandit, "htdemucs": htdemucs}


def tiny_config(model: MatrixModel) -> dict[str, Any]:
    return MAKERS[model.family](model)


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.dump(config, Dumper=yaml.Dumper, sort_keys=False))  # tuples keep !!python/tuple
    return path
