"""A Demucs entry's tiny files, of the shapes its registry entry downloads:

- each checkpoint `SIG-CHECKSUM.th` is a Demucs package ({klass, args, kwargs, state}, as Demucs' own
  `serialize_model` writes and `load_model` reads) of an HTDemucs built with the kwargs of the tiny MSST config;
  msst reads its `state` with that config, audio-separator rebuilds it from `klass` and `kwargs`;
- the bag file (`htdemucs.yaml`, `htdemucs_ft.yaml`) names the checkpoints by signature, as Demucs' remote files do;
- the MSST config, where the entry has one, is the tiny config itself.

Demucs' loader checks a checkpoint's name against its content (the part after the `-` is the start of the file's
sha256), so the matrix serves each tiny checkpoint under its signature and its own checksum (`served_name`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from tests.matrix.cases import MatrixModel
from tests.matrix.tiny_configs import tiny_config, write_config

CHECKSUM_NAME = re.compile(r"(?P<sig>[0-9a-f]{8})-[0-9a-f]{8}\.th")


def demucs_specs(model: MatrixModel, folder: Path, seed: int) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """(maker specs, registry filename -> file) of a Demucs entry: one package per .th, the bag, the config."""
    arts = model.entry.get("artifacts") or {}
    listed = [a for a in [arts.get("primary"), arts.get("config"), *(arts.get("additional") or [])] if a]
    config = tiny_config(model)
    files: dict[str, Path] = {}
    if arts.get("config"):  # msst's: the tiny config is the model's own
        files[arts["config"]["filename"]] = write_config(config, folder / arts["config"]["filename"])
    checkpoints = [a["filename"] for a in listed if a["filename"].endswith(".th")]
    specs = []
    for index, name in enumerate(checkpoints):
        files[name] = folder / name
        specs.append({"kind": "demucs", "out": str(files[name]), "kwargs": package_kwargs(config),
                      "seed": seed * 100 + index})  # the parts of a bag differ
    bags = [a["filename"] for a in listed if a["filename"].endswith(".yaml") and a is not arts.get("config")]
    for name in bags:
        files[name] = folder / name
        files[name].write_text(yaml.safe_dump(bag(checkpoints, len(config["training"]["instruments"]))))
    return specs, files


def package_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """HTDemucs' kwargs as msst builds it from the config (msst/models/demucs4ht.py get_model): the maker keeps
    those the Demucs class takes (as a package from Demucs' own training holds)."""
    training = config["training"]
    return {"sources": list(training["instruments"]), "audio_channels": training["channels"],
            "samplerate": training["samplerate"], "segment": training["segment"], **config["htdemucs"]}


def bag(checkpoints: list[str], sources: int) -> dict[str, Any]:
    """A Demucs bag file: the checkpoints' signatures; a bag of one model per source (htdemucs_ft) weighs each
    model on its own source only, as the published htdemucs_ft.yaml does."""
    signatures = [name.split("-", 1)[0] for name in checkpoints]
    out: dict[str, Any] = {"models": signatures}
    if len(signatures) > 1 and len(signatures) == sources:
        out["weights"] = [[1.0 if i == j else 0.0 for j in range(sources)] for i in range(sources)]
    return out


def served_name(registry_name: str, tiny: Path) -> str:
    """The name a tiny file is served under: a Demucs checkpoint's carries its own checksum, any other keeps the
    registry's."""
    match = CHECKSUM_NAME.fullmatch(registry_name)
    if not match:
        return registry_name
    return f"{match['sig']}-{hashlib.sha256(tiny.read_bytes()).hexdigest()[:8]}.th"
