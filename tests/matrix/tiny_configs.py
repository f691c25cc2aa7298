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


MAKERS = {"roformer": roformer, "roformer-code": roformer}


def tiny_config(model: MatrixModel) -> dict[str, Any]:
    return MAKERS[model.family](model)


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.dump(config, Dumper=yaml.Dumper, sort_keys=False))  # tuples keep !!python/tuple
    return path
