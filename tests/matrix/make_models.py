"""Runs INSIDE a runtime's env: builds many tiny model files in one process (the library imports are paid once).

    python make_models.py SPECS.json

SPECS.json: a list of objects, each one file:
  {"kind": "msst", "model_type": T, "config": C.yaml, "out": F, "seed": S, ["code": FILE, "class_name": N]}
      msst's own class for T (or the code file's class), random weights, its state dict saved;
  {"kind": "own-roformer", "model_type": T, "config": C.yaml, "out": F, "seed": S}
      a checkpoint of the variant's REAL key layout (HyperACE v1/v2, FNO) as stemsep-legacy's own code defines it
      (runtimes/legacy/roformer/layout.py), random weights of sensible scale; runs in stemsep-legacy's env;
  {"kind": "mdx", "out": F, "dim_f": N, "dim_t": N}     an ONNX graph of UVR's MDX-Net input/output shapes;
  {"kind": "vr", "out": F, "param": P, ["nout": N, "nout_lstm": N], "seed": S}
      audio-separator's own VR network for the param set;
  {"kind": "demucs", "out": F, "kwargs": {...}, "seed": S}
      a Demucs package {klass, args, kwargs, state} of audio-separator's bundled HTDemucs (the class Demucs'
      packages name, demucs.htdemucs.HTDemucs), random weights stored in half precision as Demucs saves them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def make_msst(spec: dict[str, Any]) -> None:
    import torch

    from tests.runtimes.make_checkpoint import build, randomize

    torch.manual_seed(spec.get("seed", 0))
    args = argparse.Namespace(model_type=spec["model_type"], config=spec["config"], code=spec.get("code"),
                              class_name=spec.get("class_name", "BSRoformer"))
    torch.save(randomize(build(args)).state_dict(), spec["out"])


def make_own_roformer(spec: dict[str, Any]) -> None:
    import math

    import torch

    from runtimes.legacy.roformer.bands import band_layout
    from runtimes.legacy.roformer.config import load_config
    from runtimes.legacy.roformer.layout import ROTARY_SUFFIX, expected_shapes
    from tests.legacy.variant_goldens import fill

    arch = load_config(spec["config"], spec["model_type"]).arch
    shapes = expected_shapes(arch, band_layout(arch))
    dtypes: dict[str, str] = {}
    if arch.mask_head == "fno":  # the spectral weights are complex
        from runtimes.legacy.roformer import fno

        for rel, (_shape, dtype) in fno.key_shapes(arch.dim, 1).items():
            dtypes[rel] = str(dtype).removeprefix("torch.")
    layout = {name: {"shape": list(shape), "dtype": next((d for rel, d in dtypes.items() if name.endswith(rel)),
                                                         "float32")} for name, shape in shapes.items()}
    rotary = {name: torch.tensor([1.0 / 10000 ** (2 * i / (2 * shape[0])) for i in range(shape[0])])
              for name, shape in shapes.items() if name.endswith(ROTARY_SUFFIX)}  # rotary-embedding-torch's
    state = fill(layout, spec.get("seed", 0), keep=rotary)
    assert all(math.isfinite(float(v.abs().sum())) for v in state.values())
    torch.save(state, spec["out"])


def make_mdx(spec: dict[str, Any]) -> None:
    from tests.runtimes.make_uvr_models import make_mdx as make

    make(spec["out"], spec["dim_f"], spec["dim_t"])


def make_vr(spec: dict[str, Any]) -> None:
    from tests.runtimes.make_uvr_models import make_vr as make

    make(spec["out"], spec["param"], spec.get("nout"), spec.get("nout_lstm"), spec.get("seed", 0))


def make_demucs(spec: dict[str, Any]) -> None:
    import importlib.util
    import inspect

    import torch

    # audio-separator puts its bundled Demucs first on sys.path as `demucs` before it unpickles a package
    # (architectures/demucs_separator.py): built the same way, the pickled class is demucs.htdemucs.HTDemucs, which
    # msst's env (msst[htdemucs] installs demucs) resolves too.
    package = Path(importlib.util.find_spec("audio_separator").origin).parent
    sys.path.insert(0, str(package / "separator" / "uvr_lib_v5"))
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(spec.get("seed", 0))
    accepted = inspect.signature(HTDemucs).parameters
    kwargs = {k: v for k, v in spec["kwargs"].items() if k in accepted}
    model = HTDemucs(**kwargs)
    state = {k: v.detach().to("cpu", dtype=torch.half) for k, v in model.state_dict().items()}
    torch.save({"klass": HTDemucs, "args": (), "kwargs": kwargs, "state": state, "training_args": {}}, spec["out"])


MAKERS = {"msst": make_msst, "own-roformer": make_own_roformer, "mdx": make_mdx, "vr": make_vr, "demucs": make_demucs}


def main() -> int:
    specs = json.loads(Path(sys.argv[1]).read_text())
    failed = []
    for spec in specs:
        try:
            MAKERS[spec["kind"]](spec)
        except Exception as exc:  # noqa: BLE001 - one bad spec must not hide the others: all are reported, then exit 1
            failed.append(f"{spec['out']}: {type(exc).__name__}: {exc}")
    for line in failed:
        print(line, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
