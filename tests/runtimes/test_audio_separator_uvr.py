"""MDX-Net and VR registry entries on audio-separator: tiny models of the real formats (an ONNX graph with the
entry's input/output shapes; audio-separator's own VR network for the entry's param set) loaded by the real
worker under the registry's file names from files named otherwise, with the model data the adapter writes:
the entry's `uvr_model_data` under the hash of the file on disk."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from envmgr.worker.client import JobFailed
from tests.conftest import REPO
from tests.runtimes.conftest import job, read_stems

MAKE = Path(__file__).with_name("make_uvr_models.py")


def registry_model(model_id: str) -> dict[str, Any]:
    from registry.loader import load_registry

    return load_registry().get(model_id).to_json()


def make(python: Path, out: Path, *args: str) -> Path:
    proc = subprocess.run([str(python), str(MAKE), *args[:1], str(out), *args[1:]], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def tiny_file_for(model: dict[str, Any], python: Path, folder: Path) -> Path:
    """A tiny model of `model`'s format, named unlike the registry's file."""
    data = model["uvr_model_data"]
    if model["architecture"] == "MDX-Net":
        return make(python, folder / f"tiny-{model['id']}.onnx", "mdx", "--dim-f", str(data["mdx_dim_f_set"]),
                    "--dim-t", str(data["mdx_dim_t_set"]))
    extra = ["--nout", str(data["nout"]), "--nout-lstm", str(data["nout_lstm"])] if data.get("nout") else []
    return make(python, folder / f"tiny-{model['id']}.pth", "vr", "--param", data["vr_model_param"], *extra)


def torchvision_broken(worker: Any) -> str:
    """Why torchvision cannot be imported in the worker's env ('' when it can)."""
    proc = subprocess.run([worker.python, "-c", "import torchvision"], capture_output=True, text=True, timeout=300)
    return "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["import failed"])[-1]


@pytest.fixture(scope="module")
def uvr_models(audio_separator_env: Any, workdir: Path) -> dict[str, tuple[dict[str, Any], Path]]:
    folder = workdir / "uvr"
    folder.mkdir(exist_ok=True)
    out = {}
    for model_id in ("mdx-net-hq4", "uvr-denoise-lite"):
        model = registry_model(model_id)
        out[model_id] = model, tiny_file_for(model, audio_separator_env.python, folder)
    return out


@pytest.mark.parametrize("model_id", ["mdx-net-hq4", "uvr-denoise-lite"])
def test_registry_entry_runs_offline_from_a_differently_named_file(as_worker, network_log, uvr_models, clip3,
                                                                   tmp_path, model_id):
    model, tiny = uvr_models[model_id]
    filename = model["artifacts"]["primary"]["filename"]
    assert tiny.name != filename
    if model["architecture"] == "MDX-Net":
        broken = torchvision_broken(as_worker)
        if broken:  # not skipped silently: an expected failure that names the env's defect
            pytest.xfail("audio-separator's MDX separator imports onnx2torch -> torchvision, which cannot load in "
                         f"this env ({broken}): torch is overridden to a build its torchvision was not made for")
    result = as_worker.run(job(model, {filename: tiny}, clip3, tmp_path))
    assert sorted(s["name"] for s in result["stems"]) == sorted(model["capabilities"]["stems"])
    frames = sf.info(str(clip3)).frames
    stems = read_stems(result)
    # audio-separator 0.47.1's VR path drops the last partial STFT hop (1024 samples for this param set): its
    # stems come back up to one hop short of the input (reported; the adapter does not pad them yet).
    shortest = frames - 1023 if model["architecture"] == "VR" else frames
    for name, audio in stems.items():
        assert shortest <= audio.shape[0] <= frames and audio.shape[1] == 2, (name, audio.shape)
        assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-4, name
    # The tiny file is not the published one: said, and run with the registry's parameters anyway.
    assert any(model["uvr_model_data"]["uvr_hash"] in w and tiny.name not in w and filename in w
               for w in result.get("warnings", [])), result.get("warnings")
    assert not network_log.exists(), network_log.read_text()


def test_entry_without_uvr_parameters_is_a_model_load_error(as_worker, uvr_models, clip3, tmp_path):
    model, tiny = uvr_models["mdx-net-hq4"]
    model = {**model, "uvr_model_data": {k: v for k, v in model["uvr_model_data"].items() if k != "compensate"}}
    with pytest.raises(JobFailed) as err:
        as_worker.run(job(model, {model["artifacts"]["primary"]["filename"]: tiny}, clip3, tmp_path))
    assert err.value.code == "E_MODEL_LOAD" and "compensate" in err.value.message
    assert "uvr_model_data" in err.value.hint


# The adapter's data file read back by the library's own lookup: its hash of the file (whole file, and the
# last 10,240,000 bytes of a larger one) finds exactly the entry's parameters, whatever the file is called.
LOOKUP = r"""
import json, sys, tempfile
from pathlib import Path
from audio_separator.separator import Separator
from runtimes.audio_separator.uvr_data import write_model_data

model = json.loads(sys.argv[1])
out = []
for path in sys.argv[2:]:
    folder = Path(tempfile.mkdtemp())
    (folder / "renamed.bin").symlink_to(path)
    write_model_data(folder, model, model["id"], path)
    sep = Separator(model_file_dir=str(folder), info_only=True)
    sep.download_file_if_not_exists = lambda url, output: None  # both data files are there already
    out.append({"data": sep.load_model_data_using_hash(str(folder / "renamed.bin")),
                "files": {p.name: json.loads(p.read_text()) for p in folder.glob("*_model_data.json")}})
print(json.dumps(out))
"""


def test_written_hash_is_the_librarys_hash_of_the_file_on_disk(audio_separator_env, uvr_models, tmp_path):
    model, tiny = uvr_models["uvr-denoise-lite"]  # 9 MB: hashed whole
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * 1024 * 1024))  # over 10,240,000 bytes: the library hashes its tail
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([str(audio_separator_env.python), "-c", LOOKUP, json.dumps(model), str(tiny), str(big)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = {k: v for k, v in model["uvr_model_data"].items() if k != "uvr_hash" and v is not None}
    for found in json.loads(proc.stdout.splitlines()[-1]):
        assert found["data"] == expected
        assert found["files"]["mdx_model_data.json"] == {}
        (written,) = found["files"]["vr_model_data.json"].values()
        assert written == expected
