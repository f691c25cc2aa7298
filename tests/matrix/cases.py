"""The matrix's cases: every registry model with a runtime in `runtime.allowed`, paired with each of them, and
for each model where its tiny checkpoint's structure comes from (its real config, or its architecture's
published config with the entry's declared options) and which env builds it.

Pure data work on the packaged registry (no torch, no envs): collection stays fast.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO, SHARED_REFERENCE

REFERENCE_CONFIGS = SHARED_REFERENCE / "msst-configs"
PACKAGED = REPO / "registry" / "models.json"

# The runtime whose own code implements the Roformer variants (HyperACE, FNO) that msst runs from a code file.
OWN_CODE_RUNTIME = "stemsep-legacy"
# The architecture's published config, used when the entry's own config file is not among the reference configs.
PUBLISHED = {
    "bs_roformer": "model_bs_roformer_ep_317_sdr_12.9755.yaml",  # viperx: the layout most BS-Roformers keep
    "mel_band_roformer": "model_mel_band_roformer_ep_3005_sdr_11.4360.yaml",  # Kim's: likewise for Mel
    "mdx23c": "config_musdb18_mdx23c.yaml",
    "scnet": "config_musdb18_scnet.yaml",
    "scnet_masked": "config_musdb18_scnet.yaml",
    "scnet_tran": "config_musdb18_scnet.yaml",
    "htdemucs": "config_musdb18_htdemucs.yaml",
    "apollo": "config_apollo.yaml",
    "bandit": "config_dnr_bandit_bsrnn_multi_mus64.yaml",
}
# An entry config not among the reference configs whose own published layout is: SCNet-large (starrytong) splits
# its bands differently from SCNet (band_SR), as MSST's SCNet-large config does.
PUBLISHED_FOR_CONFIG = {"config_musdb18_scnet_large_starrytong.yaml": "config_musdb18_scnet_large.yaml"}
ROFORMERS = {"BS-Roformer": "bs_roformer", "Mel-Roformer": "mel_band_roformer"}


@dataclass(frozen=True)
class MatrixModel:
    """One registry model as the matrix builds it."""

    id: str
    architecture: str
    family: str  # roformer | roformer-code | mdx23c | scnet | htdemucs | apollo | bandit | mdx-net | vr | dsp
    model_type: str | None
    runtimes: tuple[str, ...]
    stems: tuple[str, ...]
    stereo: bool
    base_config: str | None  # the reference config file the tiny one derives from
    real_config: bool  # True: base_config IS the entry's config file; False: the architecture's published one
    entry: dict[str, Any]

    @property
    def source(self) -> str:
        """How the test id says where the structure comes from."""
        if self.family in ("mdx-net", "vr"):
            return "uvr-params"  # the registry's own UVR parameters are the whole structure
        if self.family == "dsp":
            return "builtin"
        config = "real-config" if self.real_config else "published-config"
        # The model's own code file cannot be had here: the matrix serves a stand-in of its class (conftest).
        return f"{config}+stand-in-code" if self.family == "roformer-code" else config

    def own_layout(self, runtime: str) -> bool:
        """The pair runs the variant with stemsep-legacy's own code: its checkpoint must have the published
        (real) key layout, which the matrix makes with our model code, not msst's stand-in."""
        return self.family == "roformer-code" and runtime == OWN_CODE_RUNTIME

    def source_for(self, runtime: str) -> str:
        """`source` of one pair: own-code runtimes read real-layout weights made by our own code."""
        if self.own_layout(runtime):
            return ("real-config" if self.real_config else "published-config") + "+own-code"
        return self.source

    def code_artifact(self) -> dict[str, Any] | None:
        """The entry's code artifact that provides its model type (roformer-code models ship one)."""
        arts = self.entry.get("artifacts") or {}
        return next((a for a in [arts.get("primary"), arts.get("config"), *(arts.get("additional") or [])]
                     if a and a.get("kind") == "code" and a.get("model_type") == self.model_type), None)


def family_of(entry: dict[str, Any]) -> str:
    arch, model_type = entry["architecture"], entry["runtime"].get("model_type")
    if arch in ROFORMERS:
        return "roformer" if model_type == ROFORMERS[arch] else "roformer-code"
    return {"MDX23C": "mdx23c", "SCNet": "scnet", "Demucs": "htdemucs", "Apollo": "apollo", "BandIt": "bandit",
            "MDX-Net": "mdx-net", "VR": "vr", "DSP": "dsp"}.get(arch, arch.lower())


def base_config(entry: dict[str, Any], family: str) -> tuple[str | None, bool]:
    art = (entry.get("artifacts") or {}).get("config") or {}
    config = art.get("filename")
    if config and (REFERENCE_CONFIGS / config).is_file() and same_pinned_file(REFERENCE_CONFIGS / config, art):
        return config, True
    if config in PUBLISHED_FOR_CONFIG:
        return PUBLISHED_FOR_CONFIG[config], False
    model_type = entry["runtime"].get("model_type")
    if family == "roformer-code":
        model_type = ROFORMERS[entry["architecture"]]
    if family == "htdemucs":  # a Demucs bag (htdemucs-ft) has no MSST model type: its parts are htdemucs networks
        model_type = "htdemucs"
    return PUBLISHED.get(model_type or ""), False


def same_pinned_file(path: Path, art: dict[str, Any]) -> bool:
    """A reference config of the entry's file name is its own file unless the entry pins another sha256 (the
    drypd SCNet's config_musdb18_scnet.yaml is not MSST's)."""
    return not art.get("sha256") or hashlib.sha256(path.read_bytes()).hexdigest() == art["sha256"]


def matrix_models(path: Path = PACKAGED) -> list[MatrixModel]:
    """Every model of the registry file with at least one allowed runtime, in file order."""
    out = []
    for entry in json.loads(path.read_text())["models"]:
        runtimes = tuple(entry["runtime"].get("allowed") or ())
        if not runtimes:
            continue
        family = family_of(entry)
        config, real = base_config(entry, family)
        caps = entry["capabilities"]
        out.append(MatrixModel(entry["id"], entry["architecture"], family, entry["runtime"].get("model_type"),
                               runtimes, tuple(caps["stems"]), caps.get("supports_stereo") is not False, config, real,
                               entry))
    return out


def case_id(model: MatrixModel, runtime: str) -> str:
    return f"{runtime}:{model.id}[{model.source_for(runtime)}]"
