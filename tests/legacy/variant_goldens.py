"""Golden data for the Roformer variants with code of their own (HyperACE v1/v2, FNO), made with the
published code and checked against ours (tests/legacy/test_variant_goldens.py).

The SegmModel of HyperACE has fixed widths (256..768 channels): even a tiny Roformer around it holds
~12M weights per stem, too big to commit. So a golden case commits its config, the checkpoint's key
layout (name, shape, dtype) with a seed, the test signal and the published code's output; the weights
are regenerated from the seed (`fill`, one generator per key, order-independent) and their sha256 is
committed too, so a test knows it holds the very weights the published code ran with.

Make them (once, or when a case changes) with the published code files and an env holding their
imports (msst 0.1.0's env has torch, einops, rotary-embedding-torch, beartype; add neuraloperator==1.0.2
for FNO):

    PYTHONPATH=. ENV_PYTHON tests/legacy/variant_goldens.py \
        --code hyperace_v1=PATH/bs_roformer.py --code hyperace_v2=PATH/v2_inst/bs_roformer.py \
        --code fno=PATH/bs_roformer_fno.py

The published files import `models.bs_roformer.attend` (MSST's layout) or `.attend`: the script loads each
as `models.bs_roformer.<name>` in a scratch package whose `attend` is msst's own, and `fno1d` (some
copies import it from there) is neuraloperator's FNO1d. Nothing of the published code is written here.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import yaml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "roformer-variants"
SIGNAL_FRAMES = 8192
SEED = 18

# A tiny BS-Roformer (n_fft 256: 129 bins in 6 bands, dim 32) around each variant's mask estimator.
_MODEL = {"dim": 32, "depth": 1, "stereo": True, "num_stems": 1, "time_transformer_depth": 1,
          "freq_transformer_depth": 1, "freqs_per_bands": (8, 8, 16, 16, 32, 49), "dim_head": 16, "heads": 2,
          "stft_n_fft": 256, "stft_hop_length": 64, "stft_win_length": 256, "mask_estimator_depth": 2,
          "mlp_expansion_factor": 2}
CASES: dict[str, dict[str, Any]] = {
    "hyperace_v1": {"model_type": "bs_roformer_hyperace", "model": dict(_MODEL), "instruments": ["instrumental", "vocals"],
                    "target": "instrumental"},
    "hyperace_v2": {"model_type": "bs_roformer_hyperace_v2", "model": {**_MODEL, "num_stems": 2},
                    "instruments": ["vocals", "other"], "target": None},
    "fno": {"model_type": "bs_roformer_fno", "model": dict(_MODEL), "instruments": ["instrumental", "vocals"],
            "target": "instrumental"},
}


def config_dict(name: str) -> dict[str, Any]:
    case = CASES[name]
    training: dict[str, Any] = {"instruments": case["instruments"], "model_type": case["model_type"], "use_amp": True}
    if case["target"]:
        training["target_instrument"] = case["target"]
    return {"audio": {"chunk_size": SIGNAL_FRAMES, "sample_rate": 44100, "num_channels": 2},
            "model": dict(case["model"]), "training": training, "inference": {"batch_size": 1, "num_overlap": 2}}


def fill(layout: dict[str, dict[str, Any]], seed: int, keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """Random weights of sensible scale for a key layout {name: {shape, dtype}}; `keep` wins (rotary freqs)."""
    import torch

    out = {}
    for name, spec in layout.items():
        if keep and name in keep:
            out[name] = keep[name].clone()
            continue
        shape, dtype = tuple(spec["shape"]), getattr(torch, spec["dtype"])
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        if dtype.is_complex:
            value = torch.randn(shape, generator=g, dtype=dtype) * 0.5
        elif name.endswith(".bias"):
            value = torch.randn(shape, generator=g) * 0.1
        elif len(shape) <= 1 or fan_in == 1 or name.endswith((".gamma", ".weight")) and max(shape) == int(np.prod(shape)):
            value = 1.0 + torch.randn(shape, generator=g) * 0.1  # norm scales, soft gates, gated-fusion gammas
        else:
            value = torch.randn(shape, generator=g) / np.sqrt(fan_in)
        if name.endswith("segm.upsample_head.final_conv.weight"):
            # HyperACE's mask correction at a trained model's size (~0.1, not ~10): through its many InstanceNorms
            # over small grids float32 rounding grows with it (published fp32 vs fp64 at full size: 2e-3).
            value = value * 0.02
        out[name] = value.to(dtype)
    return out


def state_sha256(state: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def layout_of(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in state.items()}


def signal() -> np.ndarray:
    """A short stereo test signal: two tones, a chirp and noise, (2, frames) float32."""
    rng = np.random.default_rng(SEED)
    t = np.arange(SIGNAL_FRAMES) / 44100
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (200 + 4000 * t) * t)
    right = 0.3 * np.sin(2 * np.pi * 660 * t) + 0.1 * rng.standard_normal(SIGNAL_FRAMES)
    return np.stack([left, right]).astype(np.float32)


def _load_published(name: str, code: Path, scratch: Path):
    """The published file as module models.bs_roformer.<name>, with msst's attend and neuraloperator's FNO1d."""
    pkg = scratch / "models" / "bs_roformer"
    pkg.mkdir(parents=True, exist_ok=True)
    (scratch / "models" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "attend.py").write_text("from msst.models.bs_roformer.attend import *  # noqa\n")
    (pkg / "fno1d.py").write_text("from neuralop.models import FNO1d  # noqa\n")
    (pkg / f"{name}.py").write_text(code.read_text())
    if str(scratch) not in sys.path:
        sys.path.insert(0, str(scratch))
    return importlib.import_module(f"models.bs_roformer.{name}")


def make(name: str, code: Path, out: Path, scratch: Path) -> None:
    import torch

    torch.manual_seed(0)
    module = _load_published(name, code, scratch)
    cls = next(getattr(module, n) for n in ("BSRoformer", "BSRoformer_FNO") if hasattr(module, n))
    model = cls(**config_dict(name)["model"]).eval()
    own = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    layout = layout_of(own)
    state = fill(layout, SEED, keep={k: v for k, v in own.items() if k.endswith("rotary_embed.freqs")})
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    with torch.inference_mode():
        stems = model(torch.from_numpy(signal())[None])[0]
    case_dir = out / name
    case_dir.mkdir(parents=True, exist_ok=True)
    (case_dir / "config.yaml").write_text(yaml.dump(config_dict(name), Dumper=yaml.Dumper))
    rotary = {k: v.tolist() for k, v in own.items() if k.endswith("rotary_embed.freqs")}
    manifest = {"seed": SEED, "weights_sha256": state_sha256(state), "code_sha256": hashlib.sha256(code.read_bytes()).hexdigest(),
                "torch": torch.__version__, "layout": layout, "rotary": rotary}
    (case_dir / "manifest.json").write_text(json.dumps(manifest, indent=0, sort_keys=True))
    output = stems.numpy().astype(np.float32)
    np.save(case_dir / "output.npy", output if output.ndim == 3 else output[None])
    print(f"{name}: {len(layout)} tensors, {sum(int(np.prod(s['shape'])) for s in layout.values())} values, "
          f"output {output.shape}, rms {float(np.sqrt((output ** 2).mean())):.4f}")


def write_checkpoint(name: str, path: Path) -> None:
    """The case's checkpoint as the published models save theirs (FNO: with neuraloperator's `_metadata`)."""
    import torch

    manifest = json.loads((FIXTURES / name / "manifest.json").read_text())
    state: dict[str, Any] = fill(manifest["layout"], manifest["seed"],
                                 keep={k: torch.tensor(v) for k, v in manifest["rotary"].items()})
    assert state_sha256(state) == manifest["weights_sha256"], f"{name}: the regenerated weights are not the golden ones"
    if name == "fno":
        for prefix in sorted({k.split(".lifting.")[0] for k in state if ".lifting." in k}):
            state[f"{prefix}._metadata"] = {"n_modes_height": 64, "non_linearity": torch._C._nn.gelu, "_name": "FNO1d"}
    torch.save(state, path)


def check(name: str) -> dict[str, Any]:
    """Run in stemsep-legacy's env: our model on the golden checkpoint (weights_only) vs the published output."""
    import torch

    from runtimes.legacy.roformer.errors import RoformerError
    from runtimes.legacy.roformer.separator import RoformerSeparator

    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        ckpt = Path(scratch) / f"{name}.ckpt"
        write_checkpoint(name, ckpt)
        config = FIXTURES / name / "config.yaml"
        sep = RoformerSeparator.load(config, ckpt, model_type=CASES[name]["model_type"], device="cpu")
        audio = torch.from_numpy(signal())[None]
        ours = sep.model(audio)[0].numpy()
        golden = np.load(FIXTURES / name / "output.npy").reshape(ours.shape)
        result["max_diff"] = float(np.abs(ours - golden).max())
        result["golden_rms"] = float(np.sqrt((golden ** 2).mean()))
        result["warnings"] = sep.warnings
        if sep.model.segms:  # the branch matters: without it the output is far from the golden one
            sep.model.segms = []
            result["without_segm"] = float(np.abs(sep.model(audio)[0].numpy() - golden).max())
        try:  # the same checkpoint under a plain BS-Roformer entry
            RoformerSeparator.load(config, ckpt, model_type="bs_roformer", device="cpu")
            result["as_bs_roformer"] = None
        except RoformerError as exc:
            result["as_bs_roformer"] = {"message": str(exc), "hint": getattr(exc, "hint", None)}
    return result


def main() -> None:
    if sys.argv[1:2] == ["check"]:
        print(json.dumps(check(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", action="append", required=True, help="CASE=PATH of a published code file")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for item in args.code:
            name, _, path = item.partition("=")
            if name not in CASES:
                parser.error(f"unknown case {name!r}; cases: {', '.join(CASES)}")
            make(name, Path(path), args.out, Path(scratch))


if __name__ == "__main__":
    main()
