"""The audio-separator runtime in its real uv-built env (audio-separator[cpu]==0.47.1, imageio-ffmpeg),
with the worker cut off the network: the model dir and download_checks.json the adapter lays out are
all the library gets. Float stems under the names the library returns, progress from its tqdm bars,
and the bad inputs: a checkpoint that does not fit its config (the library calls sys.exit), a
checkpoint with pickled objects, a model the library has no list for."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from envmgr.worker.client import JobFailed
from tests.runtimes.conftest import job, model_entry, read_stems


def as_model(config: Path, ckpt: Path, model_id: str = "tiny-bs", **kw: Any) -> tuple[dict[str, Any], dict[str, Path]]:
    model = model_entry(model_id, ["audio-separator"], **kw)
    model["artifacts"] = {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                          "config": {"kind": "config", "filename": config.name}}
    return model, {ckpt.name: ckpt, config.name: config}


def test_offline_float_stems_absolute_paths_progress(as_worker, network_log, tiny_bs, clip3, tmp_path):
    assert as_worker.ready["versions"]["audio-separator"] == "0.47.1"
    assert as_worker.ready["versions"]["ffmpeg"]  # from the env's imageio-ffmpeg, not the system
    model, arts = as_model(*tiny_bs)
    events: list[dict[str, Any]] = []
    result = as_worker.run(job(model, arts, clip3, tmp_path, {"mdxc_params": {"overlap": 2}}), events.append)
    frames = sf.info(str(clip3)).frames
    assert sorted(s["name"] for s in result["stems"]) == ["other", "vocals"]
    for stem in result["stems"]:
        path = Path(stem["path"])
        assert path.is_absolute() and path.parent == tmp_path and path.name == f"clip3_({stem['name']}).wav"
        assert (stem["subtype"], stem["frames"], stem["channels"], stem["sample_rate"]) == ("FLOAT", frames, 2, 44100)
    stems = read_stems(result)
    assert all(np.isfinite(a).all() and np.abs(a).max() > 1e-3 for a in stems.values())
    assert sorted(os.listdir(tmp_path)) == sorted(Path(s["path"]).name for s in result["stems"])
    bars = [(e["done"], e["total"]) for e in events if e["type"] == "progress" and e["stage"] == "separate"]
    # 3 s at a 4 s chunk: one chunk; a first event, the bar's step, and the final one with done == total.
    assert bars[0][0] == 0 and bars[-1][0] == bars[-1][1] >= 1, bars
    assert not network_log.exists(), network_log.read_text()


def test_flac_output_is_24_bit(as_worker, tiny_bs, clip3, tmp_path):
    model, arts = as_model(*tiny_bs)
    result = as_worker.run(job(model, arts, clip3, tmp_path, fmt="flac"))
    assert [(s["format"], s["subtype"]) for s in result["stems"]] == [("FLAC", "PCM_24")] * 2
    assert sorted(os.listdir(tmp_path)) == ["clip3_(other).flac", "clip3_(vocals).flac"]


def test_checkpoint_not_fitting_config_library_exit_becomes_model_load_error(as_worker, tiny_bs, tiny_segm, clip3,
                                                                            tmp_path):
    model, arts = as_model(tiny_bs[0], tiny_segm[1])  # the variant's weights with the standard config
    with pytest.raises(JobFailed) as err:
        as_worker.run(job(model, arts, clip3, tmp_path / "bad"))
    assert err.value.code == "E_MODEL_LOAD"
    assert "library exited" in err.value.message and "unexpected keys" in err.value.message
    assert "segm.0.weight" in err.value.message
    assert not (tmp_path / "bad").exists() or os.listdir(tmp_path / "bad") == []
    # The worker survived the library's sys.exit and runs the next job.
    model, arts = as_model(*tiny_bs)
    assert len(as_worker.run(job(model, arts, clip3, tmp_path / "good"))["stems"]) == 2


def test_model_outside_audio_separators_lists(as_worker, tiny_bs, clip3, tmp_path):
    model, arts = as_model(*tiny_bs, architecture="SCNet", model_type="scnet")
    with pytest.raises(JobFailed) as err:
        as_worker.run(job(model, arts, clip3, tmp_path))
    assert err.value.code == "E_MODEL_TYPE_UNKNOWN" and "SCNet" in err.value.message
    assert "--runtime" in err.value.hint


def test_missing_file_is_named_never_downloaded(as_worker, network_log, tiny_bs, clip3, tmp_path):
    # A Roformer without its YAML: audio-separator would fetch it from GitHub; here it is an error first.
    model, arts = as_model(*tiny_bs)
    del model["artifacts"]["config"]
    arts.pop(tiny_bs[0].name)
    with pytest.raises(JobFailed) as err:
        as_worker.run(job(model, arts, clip3, tmp_path))
    assert "config artifact" in err.value.message
    assert not network_log.exists()
