"""Checks of the Python API that need torch; runs INSIDE the stemsep-legacy env, prints one JSON line.

    python api_checks.py progress-cancel CONFIG CKPT MIX.npy
    python api_checks.py stream CONFIG CKPT MIX.wav OUT_DIR
"""

from __future__ import annotations

import json
import sys

import numpy as np
import soundfile as sf

from runtimes.legacy.roformer.separator import RoformerSeparator


class Stop(Exception):
    pass


def progress_cancel(config: str, ckpt: str, mix_path: str) -> dict:
    sep = RoformerSeparator.load(config, ckpt, overrides={"batch_size": 2}, device="cpu")
    mix = np.load(mix_path)
    steps: list[list[int]] = []
    sep.separate(mix, progress=lambda done, total: steps.append([done, total]))
    asked = []

    def cancel_after_first_batch() -> None:
        asked.append(1)
        if len(asked) > 1:
            raise Stop()

    try:
        sep.separate(mix, check_cancelled=cancel_after_first_batch)
        cancelled = False
    except Stop:
        cancelled = True
    return {"steps": steps, "cancelled": cancelled, "cancel_checks": len(asked)}


def stream(config: str, ckpt: str, wav: str, out_dir: str) -> dict:
    sep = RoformerSeparator.load(config, ckpt, device="cpu")
    mix, rate = sf.read(wav, dtype="float32", always_2d=True)
    in_memory = sep.separate(mix, rate)
    outputs = {s: f"{out_dir}/{s}.wav" for s in sep.stems}
    sep.separate_file(wav, outputs)
    diff = max(float(np.abs(sf.read(outputs[s], dtype="float32", always_2d=True)[0] - in_memory[s]).max()) for s in sep.stems)
    return {"max_diff": diff, "stems": list(sep.stems)}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    print(json.dumps({"progress-cancel": progress_cancel, "stream": stream}[command](*args)))
