"""Makes checkpoint variants from a good one; runs INSIDE the stemsep-legacy env (needs torch).

    python ckpt_tools.py KIND SRC DST [--marker PATH]

KIND: wrap-state_dict | wrap-model | module-prefix | extra-nontensor (accepted shapes of a good checkpoint);
segm (HyperACE-like extra branch); namespace (needs full unpickling, harmless: an argparse.Namespace);
payload-zip | payload-raw (unpickling would create the file MARKER: a torch.save zip, a plain pickle).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys

import torch


class Payload:
    """Unpickling this calls os.system(touch MARKER): what a malicious checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--marker")
    args = parser.parse_args()
    sd = torch.load(args.src, map_location="cpu", weights_only=True)
    kind = args.kind
    if kind.startswith("wrap-"):
        obj = {kind[len("wrap-"):]: sd, "epoch": 12, "optimizer": "adam"}
    elif kind == "module-prefix":
        obj = {f"module.{k}": v for k, v in sd.items()}
    elif kind == "extra-nontensor":
        obj = {**sd, "_metadata_version": 2, "note": "trained on a cluster"}
    elif kind == "segm":
        obj = {**sd, "segm.encoder.0.weight": torch.zeros(8, 8), "layers.0.segm.proj.weight": torch.zeros(8)}
    elif kind == "namespace":
        obj = {"state_dict": sd, "args": argparse.Namespace(lr=1e-5, model_type="bs_roformer")}
    elif kind == "payload-zip":
        obj = {"state_dict": sd, "hook": Payload(args.marker)}
    elif kind == "payload-raw":
        with open(args.dst, "wb") as fh:
            pickle.dump({"state_dict": dict(sd), "hook": Payload(args.marker)}, fh)
        return 0
    else:
        parser.error(f"unknown kind {kind}")
    torch.save(obj, args.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
