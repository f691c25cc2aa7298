"""Runs INSIDE a runtime's env: builds many tiny model files in one process (the library imports are paid once).

    python make_models.py SPECS.json

SPECS.json: a list of objects, each one file:
  {"kind": "msst", "model_type": T, "config": C.yaml, "out": F, "seed": S, ["code": FILE, "class_name": N]}
      msst's own class for T (or the code file's class), random weights, its state dict saved;
  {"kind": "mdx", "out": F, "dim_f": N, "dim_t": N}     an ONNX graph of UVR's MDX-Net input/output shapes;
  {"kind": "vr", "out": F, "param": P, ["nout": N, "nout_lstm": N], "seed": S}
      audio-separator's own VR network for the param set.
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


def make_mdx(spec: dict[str, Any]) -> None:
    from tests.runtimes.make_uvr_models import make_mdx as make

    make(spec["out"], spec["dim_f"], spec["dim_t"])


def make_vr(spec: dict[str, Any]) -> None:
    from tests.runtimes.make_uvr_models import make_vr as make

    make(spec["out"], spec["param"], spec.get("nout"), spec.get("nout_lstm"), spec.get("seed", 0))


MAKERS = {"msst": make_msst, "mdx": make_mdx, "vr": make_vr}


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
