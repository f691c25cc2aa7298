"""The msst runtime in its real uv-built env: models built from MSST configs and run by msst's own
`separate_audio`/`demix`, model code loaded from code artifacts (sha256-checked before it runs, never
written into the env), and the bad inputs: a checkpoint that does not fit its config, a checkpoint
with pickled objects, code with the wrong sha256 or no pin, code that needs a package the env lacks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from envmgr.worker.client import JobFailed
from tests.runtimes.conftest import (FNO_CODE, SEGM_CODE, job, make_checkpoint, model_entry, read_stems, sha256,
                                     start_worker, tiny_config, write_yaml)


def bs_model(config: Path, ckpt: Path, model_id: str = "tiny-bs", **kw: Any) -> tuple[dict[str, Any], dict[str, Path]]:
    model = model_entry(model_id, ["msst"], **kw)
    model["artifacts"] = {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                          "config": {"kind": "config", "filename": config.name}}
    return model, {ckpt.name: ckpt, config.name: config}


def with_code(model: dict[str, Any], arts: dict[str, Path], code: Path, model_type: str,
              sha: str | None) -> tuple[dict[str, Any], dict[str, Path]]:
    model = {**model, "runtime": {**model["runtime"], "model_type": model_type}}
    model["artifacts"] = {**model["artifacts"], "additional": [
        {"kind": "code", "filename": code.name, "model_type": model_type, "class_name": "BSRoformer", "sha256": sha}]}
    return model, {**arts, code.name: code}


def env_files(env: Any) -> dict[str, tuple[int, int, int]]:
    """Every file of the msst package in the env (bytecode caches aside): inode, size, mtime."""
    root = next(Path(env.path).glob("lib/python*/site-packages/msst"))
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_standard_model_float_stems_progress_and_torch_cap_warning(msst_worker, network_log, tiny_bs, clip3, tmp_path):
    assert any("torch<2.12" in w for w in msst_worker.ready["warnings"]), msst_worker.ready
    model, arts = bs_model(*tiny_bs)
    events: list[dict[str, Any]] = []
    result = msst_worker.run(job(model, arts, clip3, tmp_path, {"inference": {"num_overlap": 2}}), events.append)
    stems = read_stems(result)
    frames = sf.info(str(clip3)).frames
    assert sorted(stems) == ["other", "vocals"]
    for stem in result["stems"]:
        assert (stem["subtype"], stem["frames"], stem["channels"]) == ("FLOAT", frames, 2)
    for audio in stems.values():
        assert np.isfinite(audio).all() and 1e-3 < np.abs(audio).max() < 10
    progress = [(e["done"], e["total"]) for e in events if e["type"] == "progress" and e["stage"] == "separate"]
    assert len(progress) > 2 and progress[-1][0] == progress[-1][1]
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:])), progress
    assert not network_log.exists(), network_log.read_text()  # the worker never touched the network


def test_code_artifact_runs_next_to_standard_model_in_one_worker_without_touching_the_env(
        msst_worker, msst_env, tiny_bs, tiny_segm, clip3, tmp_path):
    before = env_files(msst_env)
    standard = bs_model(*tiny_bs)
    variant = with_code(*bs_model(*tiny_segm, model_id="tiny-segm"), SEGM_CODE, "bs_roformer_segm", sha256(SEGM_CODE))
    outputs = []
    for i, (model, arts) in enumerate([standard, variant, standard]):
        result = msst_worker.run(job(model, arts, clip3, tmp_path / str(i)))
        outputs.append(read_stems(result))
    assert np.array_equal(outputs[0]["vocals"], outputs[2]["vocals"])  # the standard class is still msst's own
    assert not np.allclose(outputs[0]["vocals"], outputs[1]["vocals"], atol=1e-3)
    assert env_files(msst_env) == before  # nothing in the env was written or replaced


def test_variant_checkpoint_does_not_fit_the_standard_class(msst_worker, tiny_segm, tiny_bs, clip3, tmp_path):
    # The variant's weights with the standard config and model type: the extra branch's keys are named.
    model, arts = bs_model(tiny_bs[0], tiny_segm[1])
    with pytest.raises(JobFailed) as err:
        msst_worker.run(job(model, arts, clip3, tmp_path))
    assert err.value.code == "E_MODEL_LOAD"
    assert "unexpected keys" in err.value.message and "segm.0.weight" in err.value.message
    assert os.listdir(tmp_path) == []  # nothing half-written


def test_variant_model_type_without_its_code_is_a_clear_error(msst_worker, tiny_segm, clip3, tmp_path):
    model, arts = bs_model(*tiny_segm, model_id="tiny-segm", model_type="bs_roformer_segm")
    with pytest.raises(JobFailed) as err:
        msst_worker.run(job(model, arts, clip3, tmp_path))
    assert err.value.code == "E_MODEL_TYPE_UNKNOWN"
    assert "bs_roformer_segm" in err.value.message and "code artifact" in err.value.hint


def marker_code(folder: Path) -> tuple[Path, Path]:
    """Model code that leaves a marker file when it is executed."""
    marker = folder / "code-ran"
    code = folder / "marker_roformer.py"
    code.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                    "from models.bs_roformer.bs_roformer import BSRoformer\n")
    return code, marker


@pytest.mark.parametrize("pin", ["wrong", "none"])
def test_code_artifact_runs_only_with_its_pinned_sha256(msst_worker, tiny_bs, clip3, tmp_path, pin):
    code, marker = marker_code(tmp_path)
    sha = {"wrong": "0" * 64, "none": None}[pin]
    model, arts = with_code(*bs_model(*tiny_bs), code, "bs_roformer_marked", sha)
    with pytest.raises(JobFailed) as err:
        msst_worker.run(job(model, arts, clip3, tmp_path / "out"))
    assert err.value.code == {"wrong": "E_CODE_HASH_MISMATCH", "none": "E_CODE_UNTRUSTED"}[pin]
    assert code.name in err.value.message and "not run" in err.value.message
    assert not marker.exists(), "the code ran although it was refused"
    # Control: pinned with its real sha256 the same file runs (and leaves its marker).
    model, arts = with_code(*bs_model(*tiny_bs), code, "bs_roformer_marked", sha256(code))
    msst_worker.run(job(model, arts, clip3, tmp_path / "ok"))
    assert marker.exists()


def test_fno_code_needs_its_pinned_package(msst_worker, fno_env, worker_code, tiny_fno, clip3, tmp_path):
    model, arts = with_code(*bs_model(*tiny_fno, model_id="tiny-fno"), FNO_CODE, "bs_roformer_fno", sha256(FNO_CODE))
    # In the plain msst env (no neuraloperator): the import is named, and what to declare.
    with pytest.raises(JobFailed) as err:
        msst_worker.run(job(model, arts, clip3, tmp_path / "plain"))
    assert err.value.code == "E_CODE_IMPORT" and "neuralop" in err.value.message
    assert "requirements.pip.packages" in err.value.hint
    # In its own env (neuraloperator 1.0.2): it runs; the checkpoint's `_metadata` (gelu) is no obstacle.
    with start_worker(fno_env, "msst", worker_code) as client:
        result = client.run(job(model, arts, clip3, tmp_path / "fno"))
    stems = read_stems(result)
    assert sorted(stems) == ["other", "vocals"] and all(np.abs(a).max() > 1e-3 for a in stems.values())
    assert any("_metadata" in w or "non-tensor" in w for w in result["warnings"]), result["warnings"]


def test_one_stem_model_gets_the_declared_other_stem_as_the_rest_of_the_mix(msst_env, msst_worker, workdir, clip3,
                                                                            tmp_path):
    data = tiny_config(num_stems=1)
    data["training"]["target_instrument"] = "vocals"
    config = write_yaml(workdir / "tiny_vocals.yaml", data)
    ckpt = make_checkpoint(msst_env.python, config, workdir / "tiny_vocals.ckpt", seed=3)
    model, arts = bs_model(config, ckpt, model_id="tiny-vocals")  # declares vocals and other
    stems = read_stems(msst_worker.run(job(model, arts, clip3, tmp_path)))
    mix = sf.read(str(clip3), dtype="float32", always_2d=True)[0]
    assert sorted(stems) == ["other", "vocals"]
    assert np.allclose(stems["other"], mix - stems["vocals"], atol=1e-6)
