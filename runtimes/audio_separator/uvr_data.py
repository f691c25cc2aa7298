"""UVR model data for one MDX-Net or VR model: the registry's parameters under the hash of the file on disk.

audio-separator finds these models' parameters by hashing the model file and looking the hash up in
`mdx_model_data.json` / `vr_model_data.json` in its model dir (downloaded from UVR when absent), merged under
its own packaged entries. UVR's files are keyed by the hashes of the published files, which a renamed or
re-exported file does not have, so the adapter writes exactly one entry: this file's hash -> the registry's
`uvr_model_data`. The model then loads offline, under any file name; whether the file is the published one
is the host's sha256 check, made before the job starts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from runtimes import protocol as p
from runtimes.errors import JobError

# audio-separator 0.47 Separator.get_model_hash: MD5 of the last 10,240,000 bytes (all of a smaller file).
HASHED_TAIL_BYTES = 10_000 * 1024
DATA_FILES = {"MDX-Net": "mdx_model_data.json", "VR": "vr_model_data.json"}
# Keys the library reads without a default (the registry's rule uvr-params-present asks for the same ones;
# runtimes cannot import the registry).
REQUIRED = {"MDX-Net": ("primary_stem", "compensate", "mdx_dim_f_set", "mdx_dim_t_set", "mdx_n_fft_scale_set"),
            "VR": ("primary_stem", "vr_model_param")}


def uvr_file_hash(path: str | Path) -> str:
    """The hash audio-separator (and UVR) compute for a model file."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - HASHED_TAIL_BYTES))
        digest = hashlib.md5(usedforsecurity=False)
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_model_data(model_dir: Path, model: dict[str, Any], model_id: str, model_file: str | Path) -> list[str]:
    """Write both data files into `model_dir` (ours, so the library downloads neither); returns warnings."""
    arch = str(model.get("architecture") or "")
    given = model.get("uvr_model_data") or {}
    params = {k: v for k, v in given.items() if v is not None and k != "uvr_hash"}
    missing = [key for key in REQUIRED[arch] if key not in params]
    if missing:
        raise JobError(p.E_MODEL_LOAD, f"{model_id} ({arch}) has no UVR parameters {', '.join(missing)}: "
                       "audio-separator finds an MDX-Net/VR model's parameters only by its file's hash in UVR's "
                       "model data", hint="add uvr_model_data (UVR's model_data.json entry for this model) to its "
                       "registry entry")
    if arch == "VR":
        _check_param_set(str(params["vr_model_param"]), model_id)
    digest = uvr_file_hash(model_file)
    for data_arch, name in DATA_FILES.items():
        (model_dir / name).write_text(json.dumps({digest: params} if data_arch == arch else {}))
    published = given.get("uvr_hash")
    if published and published != digest:
        name = ((model.get("artifacts") or {}).get("primary") or {}).get("filename") or Path(model_file).name
        return [f"{name} is not the file UVR's model data describes (UVR hash {published}, this "
                f"file {digest}); it runs with the registry's parameters for {model_id}"]
    return []


def _check_param_set(name: str, model_id: str) -> None:
    import audio_separator

    folder = Path(audio_separator.__file__).parent / "separator" / "uvr_lib_v5" / "vr_network" / "modelparams"
    if not (folder / f"{name}.json").is_file():
        known = sorted(f.stem for f in folder.glob("*.json"))
        raise JobError(p.E_MODEL_LOAD, f"{model_id} names VR model-param set {name!r}, which this audio-separator "
                       "does not ship", hint=f"use one of {', '.join(known)} in uvr_model_data.vr_model_param")
