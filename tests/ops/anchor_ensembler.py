"""Runs INSIDE the audio-separator env: audio-separator 0.47.1's own Ensembler on the cases in an .npz.

Usage: python anchor_ensembler.py CASES.npz OUT.npz. CASES holds, per case `c`, arrays `c/stem0..`
(frames, channels) float64 and a JSON list `cases` of {name, stems, algorithm, weights}. For each case
OUT gets `name` = Ensembler(algorithm, weights).ensemble([stem.T, ...]) (channels, length) and, for
ensemble_wav, `name/time` = spec_utils.ensemble_wav over the zero-padded stems given time-major.
"""

import json
import logging
import sys

import numpy as np
from audio_separator.separator.ensembler import Ensembler
from audio_separator.separator.uvr_lib_v5 import spec_utils


def main(cases_path: str, out_path: str) -> None:
    data = np.load(cases_path)
    cases = json.loads(str(data["cases"]))
    log = logging.getLogger("anchor")
    out = {}
    for case in cases:
        stems = [data[key] for key in case["stems"]]
        waves = [s.T.copy() for s in stems]  # their layout: (channels, length)
        out[case["name"]] = Ensembler(log, case["algorithm"], case["weights"]).ensemble(waves)
        if case["algorithm"] == "ensemble_wav":
            longest = max(s.shape[0] for s in stems)
            padded = [np.pad(s, ((0, longest - s.shape[0]), (0, 0))) for s in stems]
            out[case["name"] + "/time"] = spec_utils.ensemble_wav(padded)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
