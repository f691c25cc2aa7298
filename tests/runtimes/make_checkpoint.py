"""Runs INSIDE an msst env: build a model from an MSST config -- msst's own class, or the class of a
model-code file loaded the way the worker loads code artifacts -- with random weights, and save its
state dict (neuraloperator's `_metadata` entries included, as real checkpoints have them).

    python make_checkpoint.py --config C.yaml --out M.ckpt --model-type T [--code FILE --class-name N]
        [--seed S] [--pickled-object MARKER]

`--pickled-object` adds an entry that only full unpickling can load and that would create MARKER
if it were ever unpickled: a checkpoint no weights-only loader may accept.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys

import torch
from msst.utils.settings import build_model_from_config, load_config

from runtimes.code_artifacts import install_import_aliases
from runtimes.msst.adapter import MSST_ALIASES


class Touch:
    """Unpickling this creates a file: proof that a loader ran code from the checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def build(args: argparse.Namespace) -> torch.nn.Module:
    config = load_config(args.model_type, args.config)
    if not args.code:
        return build_model_from_config(args.model_type, config)
    install_import_aliases(MSST_ALIASES)
    spec = importlib.util.spec_from_file_location("fixture_model_code", args.code)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, args.class_name)(**dict(config.model))


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """No trivially-1 scales: every learned tensor moves away from its init (seeded by the caller)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.endswith("rotary_embed.freqs"):
                param.add_(0.02 * torch.randn_like(param))
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model-type", required=True)
    parser.add_argument("--code")
    parser.add_argument("--class-name", default="BSRoformer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pickled-object")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = randomize(build(args))
    state = model.state_dict()
    if args.pickled_object:
        state["training_state"] = Touch(args.pickled_object)
    torch.save(state, args.out)


if __name__ == "__main__":
    main()
