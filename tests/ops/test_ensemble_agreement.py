"""Our ensemble op agrees with audio-separator 0.47.1's own Ensembler, run in its real env, to 1e-5.

The anchor runs once, in a subprocess with the audio-separator env's python (tests/ops/anchor_ensembler.py),
on every case; ours runs here on the same float32 stems. Stereo and mono, unequal lengths (both pad them
to the longest), with and without weights, every algorithm. The stems go to the anchor as float64 (the
same values): its Ensembler computes in the input's precision, ours in float64, and a complex64 STFT
would flip bins whose magnitudes tie to 1e-7 in min/max selections.

Where we differ on purpose, the test names the difference and compares what is comparable:
- ensemble_wav: their Ensembler splits the channel axis (each channel whole from the quietest input);
  ours splits time, which equals their spec_utils.ensemble_wav given time-major arrays.
- uvr_max_spec / uvr_min_spec: theirs is hop * (frames - 1) samples long (istft without length); ours
  keeps the input length; the common samples agree.
- weights other than uniform for algorithms that do not weigh: theirs ignores them, ours refuses
  (tests/ops/test_ensemble.py); here both get uniform weights for those.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtimes.ops import OPS
from runtimes.ops.ensemble import ALGORITHMS, UVR, WEIGHTED

pytestmark = pytest.mark.envs

ANCHOR = Path(__file__).with_name("anchor_ensembler.py")
TOLERANCE = 1e-5
UVR_HOP = 1024  # spec_utils.wave_to_spectrogram_no_mp's hop


def stems(rng: np.random.Generator, lengths: list[int], channels: int) -> list[np.ndarray]:
    """Noise with a slow random envelope per stem, so min/max/quietest choices change along the track."""
    out = []
    for n in lengths:
        envelope = np.interp(np.arange(n), np.linspace(0, n, 12), rng.uniform(0.05, 0.8, 12))
        out.append((rng.standard_normal((n, channels)) * envelope[:, None]).astype(np.float32))
    return out


SETS = {
    "stereo3_unequal": dict(lengths=[44100, 40013, 30011], channels=2),
    "mono2_unequal": dict(lengths=[20000, 22050], channels=1),
    "stereo2_equal": dict(lengths=[30000, 30000], channels=2),
}


def weight_options(algorithm: str, count: int) -> list[list[float] | None]:
    if algorithm in WEIGHTED:
        return [None, [2.0, 1.0, 0.5][:count]]
    return [None, [1.0] * count]  # uniform weights change nothing, on both sides


@pytest.fixture(scope="module")
def agreement(audio_separator_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rng = np.random.default_rng(16)
    arrays: dict[str, np.ndarray] = {}
    sets: dict[str, list[np.ndarray]] = {}
    for name, spec in SETS.items():
        sets[name] = stems(rng, **spec)
        for i, s in enumerate(sets[name]):
            arrays[f"{name}/stem{i}"] = s.astype(np.float64)
    cases = []
    for set_name, set_stems in sets.items():
        for algorithm in ALGORITHMS:
            for weights in weight_options(algorithm, len(set_stems)):
                cases.append({"name": f"{set_name}/{algorithm}/{weights}", "set": set_name, "algorithm": algorithm,
                              "weights": weights, "stems": [f"{set_name}/stem{i}" for i in range(len(set_stems))]})
    work = tmp_path_factory.mktemp("ensemble-agreement")
    np.savez(work / "cases.npz", cases=json.dumps(cases), **arrays)
    proc = subprocess.run([str(audio_separator_python), str(ANCHOR), str(work / "cases.npz"), str(work / "out.npz")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    theirs = dict(np.load(work / "out.npz"))
    return {"cases": cases, "sets": sets, "theirs": theirs}


@pytest.fixture(scope="module")
def audio_separator_python(stemsep_home: Path) -> Path:
    from tests.runtimes.conftest import runtime_env

    return Path(runtime_env("audio-separator").python)


def ours(stems_: list[np.ndarray], algorithm: str, weights: list[float] | None) -> np.ndarray:
    """(channels, length) like theirs."""
    return OPS["ensemble"].apply(stems_, 44100, algorithm=algorithm, weights=weights).T


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_case_agrees_with_audio_separator(agreement: dict[str, Any], algorithm: str) -> None:
    checked = 0
    for case in agreement["cases"]:
        if case["algorithm"] != algorithm:
            continue
        set_stems = agreement["sets"][case["set"]]
        mine = ours(set_stems, algorithm, case["weights"])
        theirs = agreement["theirs"][case["name"]]
        longest = max(s.shape[0] for s in set_stems)
        assert mine.shape == (set_stems[0].shape[1], longest)
        if algorithm == "ensemble_wav":  # difference: they chunk channels, we chunk time (their function's intent)
            theirs_by_time = agreement["theirs"][case["name"] + "/time"].T
            assert np.abs(mine - theirs_by_time).max() <= TOLERANCE, case["name"]
            assert np.array_equal(theirs, whole_channel_from_quietest(set_stems)), case["name"]
            assert not np.allclose(mine, theirs), f"{case['name']}: the stems should make the two readings differ"
        elif algorithm in UVR:  # difference: their istft has no length, theirs is hop * (frames - 1) samples
            assert theirs.shape[1] == UVR_HOP * (longest // UVR_HOP), case["name"]
            assert np.abs(mine[:, :theirs.shape[1]] - theirs).max() <= TOLERANCE, case["name"]
        else:
            assert theirs.shape == mine.shape, case["name"]
            assert np.abs(mine - theirs).max() <= TOLERANCE, case["name"]
        checked += 1
    assert checked == len(SETS) * 2


def whole_channel_from_quietest(set_stems: list[np.ndarray]) -> np.ndarray:
    """What their Ensembler's ensemble_wav gives: per channel, the whole channel of the input with the
    lowest mean |x| in it (np.array_split(waveform, 240) splits the 2 or 1 channels, not time)."""
    longest = max(s.shape[0] for s in set_stems)
    padded = [np.pad(s.T.astype(np.float64), ((0, 0), (0, longest - s.shape[0]))) for s in set_stems]
    return np.stack([padded[int(np.argmin([np.abs(p[c]).mean() for p in padded]))][c]
                     for c in range(padded[0].shape[0])])
