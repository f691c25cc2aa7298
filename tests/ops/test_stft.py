"""The numpy STFT the ops share: exact resynthesis, librosa's frame layout, block-size independence.
(Equality with librosa itself is what test_ensemble_agreement.py checks through the Ensembler.)"""

from __future__ import annotations

import numpy as np
import pytest

from runtimes.ops.stft import frame_count, hann, istft, spectral_map, stft
from tests.ops.signals import bin_hz, tone


@pytest.mark.parametrize("samples", [1, 700, 1025, 4096, 44100 + 37])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_resynthesis_is_exact(samples: int, pad_mode: str) -> None:
    x = np.random.default_rng(samples).standard_normal((2, samples))
    for n_fft, hop in ((2048, 1024), (2048, 512), (512, 128)):
        spec = stft(x, n_fft=n_fft, hop=hop, pad_mode=pad_mode)
        assert spec.shape == (2, n_fft // 2 + 1, frame_count(samples, n_fft, hop))
        assert np.abs(istft(spec, n_fft=n_fft, hop=hop, length=samples) - x).max() < 1e-12


def test_layout_matches_librosa_center_frames() -> None:
    """frames = 1 + len // hop; a bin-centred tone lights bins k-1, k, k+1 only (periodic Hann)."""
    x = tone(bin_hz(100), 20000, channels=1).T.astype(np.float64)
    spec = stft(x, n_fft=2048, hop=512)
    assert spec.shape == (1, 1025, 1 + 20000 // 512)
    steady = np.abs(spec[0, :, 10])
    assert set(np.flatnonzero(steady > 1e-6 * steady.max())) == {99, 100, 101}
    assert hann(4)[0] == 0 and np.allclose(hann(4), [0, 0.5, 1, 0.5])  # periodic, not symmetric


def test_istft_without_length_is_hop_times_frames_minus_one() -> None:
    x = np.random.default_rng(1).standard_normal((1, 5000))
    assert istft(stft(x, n_fft=2048, hop=1024), n_fft=2048, hop=1024).shape == (1, 1024 * (5000 // 1024))


def test_spectral_map_does_not_depend_on_the_block_size() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 30001)), rng.standard_normal((2, 30001))
    pick = lambda s: np.where(np.abs(s[0]) >= np.abs(s[1]), s[0], s[1])  # noqa: E731
    whole = spectral_map([a, b], pick, n_fft=2048, hop=512, length=30001, block_frames=10_000)
    for block in (1, 7, 64):
        assert np.array_equal(spectral_map([a, b], pick, n_fft=2048, hop=512, length=30001, block_frames=block), whole)
