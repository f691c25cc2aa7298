"""The same tiny BS-Roformer checkpoint (real architecture, random weights) through audio-separator,
msst and stemsep-legacy, each with the native settings registry.settings translates the registry's
one recommended overlap into: the stems agree. Passing the stored number through untranslated (the
mistake a registry without declared meanings invites) makes audio-separator disagree.

The model's recommended overlap is declared in seconds (a 1 s hop over a 2 s chunk: audio-separator
<= 0.44's meaning, common in the guide's older advice). Translated, every runtime steps by half a
chunk (divisor 2). Untranslated, `1` reaches audio-separator 0.47 as a divisor: no overlap at all.

Tolerances, and why (measured here: 34.5 dB agreement, ~19 dB for the wrong translation):
- msst vs stemsep-legacy: max |difference| <= 1e-4. Our Roformer reproduces msst's chunking exactly
  (reflect padding, linear fades, the same chunk grid); what remains is float32 rounding.
- msst vs audio-separator: SDR >= 28 dB between their stems. Same chunk grid (the hop divides the
  chunk and msst's padding is a whole number of hops), the same model output per chunk, different
  windowing: audio-separator weights each chunk with a Hamming window over its whole length, puts its
  last chunk flush with the end and does not pad; msst fades linearly over 10% of the chunk,
  reflect-pads both ends and pads the last chunk. A random-weight model's output for a frame depends
  on its whole chunk, so differently weighted chunks leave a difference around -35 dB (a trained
  model's outputs agree across chunks far better, so real models differ less).
- wrong translation: SDR <= 24 dB: without overlap every frame comes from one chunk, at chunk edges
  from a chunk that barely saw its context.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from registry.model import ModelEntry
from registry.settings import resolve_settings
from tests.runtimes.conftest import (demo_clip, job, model_entry, read_stems, runtime_env, sdr, start_worker, tiny_config,
                                     write_yaml)

RUNTIMES = ["msst", "audio-separator", "stemsep-legacy"]
CHUNK = 88200  # 2 s


@pytest.fixture(scope="module")
def entry() -> ModelEntry:
    data = model_entry("tiny-bs-everywhere", RUNTIMES, overlap=1)
    data["settings_semantics"] = {"overlap": {"meaning": "seconds"}}
    data["recommended_settings"]["segment_size"] = CHUNK  # samples: the chunk the hop is measured in
    return ModelEntry.model_validate(data)


@pytest.fixture(scope="module")
def tiny_bs_2s(tiny_bs: tuple[Path, Path], workdir: Path) -> tuple[Path, Path]:
    """The tiny model with a 2 s chunk (inference settings only: the same checkpoint)."""
    return write_yaml(workdir / "tiny_bs_2s.yaml", tiny_config(chunk_seconds=2)), tiny_bs[1]


@pytest.fixture(scope="module")
def legacy_worker(worker_code: Any, network_log: Path) -> Any:
    client = start_worker(runtime_env("stemsep-legacy"), "stemsep-legacy", worker_code)
    yield client
    client.close()


@pytest.fixture(scope="module")
def clip8(workdir: Path) -> Path:
    """Two whole chunks: without overlap, every frame comes from exactly one chunk."""
    return demo_clip(workdir / "clip8.wav", 8.0)


def run(worker: Any, entry: ModelEntry, runtime: str, tiny_bs: tuple[Path, Path], clip: Path, out: Path,
        settings: dict[str, Any]) -> dict[str, np.ndarray]:
    config, ckpt = tiny_bs
    model = entry.model_dump(mode="json")
    model["artifacts"] = {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                          "config": {"kind": "config", "filename": config.name}}
    result = worker.run(job(model, {ckpt.name: ckpt, config.name: config}, clip, out / runtime, settings))
    return read_stems(result)


def native(entry: ModelEntry, runtime: str) -> dict[str, Any]:
    return resolve_settings(entry, runtime).native()


def test_translated_settings_agree_across_runtimes(entry, msst_worker, as_worker, tiny_bs_2s, clip8, tmp_path):
    assert native(entry, "msst")["inference"]["num_overlap"] == 2
    assert native(entry, "audio-separator")["mdxc_params"]["overlap"] == 2
    msst = run(msst_worker, entry, "msst", tiny_bs_2s, clip8, tmp_path, native(entry, "msst"))
    separator = run(as_worker, entry, "audio-separator", tiny_bs_2s, clip8, tmp_path, native(entry, "audio-separator"))
    assert sorted(msst) == sorted(separator) == ["other", "vocals"]
    for stem in msst:
        assert msst[stem].shape == separator[stem].shape
        assert np.abs(msst[stem]).max() > 1e-3
        assert sdr(msst[stem], separator[stem]) >= 28.0, (stem, sdr(msst[stem], separator[stem]))


def test_stemsep_legacy_matches_msst(entry, msst_worker, legacy_worker, tiny_bs_2s, clip8, tmp_path):
    assert native(entry, "stemsep-legacy")["inference"]["num_overlap"] == 2
    msst = run(msst_worker, entry, "msst", tiny_bs_2s, clip8, tmp_path, native(entry, "msst"))
    ours = run(legacy_worker, entry, "stemsep-legacy", tiny_bs_2s, clip8, tmp_path, native(entry, "stemsep-legacy"))
    assert sorted(ours) == sorted(msst)
    for stem in msst:
        assert float(np.abs(ours[stem] - msst[stem]).max()) <= 1e-4, stem


def test_untranslated_overlap_makes_audio_separator_disagree(entry, msst_worker, as_worker, tiny_bs_2s, clip8, tmp_path):
    msst = run(msst_worker, entry, "msst", tiny_bs_2s, clip8, tmp_path, native(entry, "msst"))
    stored = entry.recommended_settings.overlap  # 1 (seconds), passed on as if it were native
    wrong = run(as_worker, entry, "audio-separator", tiny_bs_2s, clip8, tmp_path, {"mdxc_params": {"overlap": stored}})
    for stem in msst:
        assert sdr(msst[stem], wrong[stem]) <= 24.0, (stem, sdr(msst[stem], wrong[stem]))
