"""The runtime capability facts (registry/capabilities.py) hold where they are used, with real envs and workers:

- a mono BS-Roformer (the registry's anvuew-dereverb-room, tiny weights of its layout) runs end to end with
  `stemsep separate` on stemsep-legacy, mono and stereo input; msst 0.1.0 really fails on it, and preflight
  refuses `--runtime msst` with that reason;
- audio-separator runs a Roformer whose config lacks `training.target_instrument` through a derived copy of the
  config (the file in the model store is unchanged) and preflight says the config is adapted;
- preflight's torch/torchvision verdict for MDX-Net on audio-separator agrees with importing torchvision there;
- audio-separator 0.47.1 really fails on a one-channel MDX23C whose stereo twin runs, as its facts say.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile as sf

from envmgr.worker.client import JobFailed
from envmgr.worker.process import TEST_HOOK_ENV
from registry.capabilities import CAPABILITIES, cannot_run
from runtimes.audio_separator.adapter import ADAPTED_KEYS
from tests.artifacts.httpserver import FileServer
from tests.runtimes.conftest import (demo_clip, job, make_checkpoint, model_entry, read_stems, sha256, tiny_config,
                                     write_yaml)
from tests.runtimes.test_audio_separator_uvr import torchvision_broken
from tests.support.cli import home_sharing_session_envs, json_events, run_cli, write_user_registry

pytestmark = pytest.mark.envs

ROOM = "anvuew-dereverb-room"  # the registry's mono BS-Roformer
STEMS = ["noreverb", "reverb"]


def registry_entry(model_id: str) -> dict[str, Any]:
    from registry.loader import load_registry

    return copy.deepcopy(load_registry().get(model_id).to_json())


@pytest.fixture(scope="module")
def server() -> Iterator[FileServer]:
    srv = FileServer().start()
    yield srv
    srv.stop()


def served(server: FileServer, model_id: str, path: Path, kind: str) -> dict[str, Any]:
    url = server.file(f"/{model_id}/{path.name}", path.read_bytes())
    return {"kind": kind, "filename": path.name, "url": url, "sha256": sha256(path)}


@pytest.fixture(scope="module")
def tiny_room(msst_env: Any, workdir: Path) -> tuple[Path, Path]:
    """The room dereverb's layout scaled down: a one-channel BS-Roformer (stereo: false), its two stems;
    weights made by msst's own class."""
    data = tiny_config(stereo=False)
    data["audio"]["num_channels"] = 1
    data["training"]["instruments"] = STEMS
    config = write_yaml(workdir / "tiny_room.yaml", data)
    return config, make_checkpoint(msst_env.python, config, workdir / "tiny_room.ckpt")


@pytest.fixture(scope="module")
def tiny_no_target(tiny_bs: tuple[Path, Path], workdir: Path) -> tuple[Path, Path]:
    """The standard tiny BS-Roformer with a config that has no training.target_instrument at all (msst's own
    code does not need it)."""
    data = tiny_config()
    del data["training"]["target_instrument"]
    return write_yaml(workdir / "tiny_no_target.yaml", data), tiny_bs[1]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, stemsep_home: Path, network_log: Path) -> Any:
    home = tmp_path_factory.mktemp("caps-home")
    env = {**home_sharing_session_envs(home), "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": "200",
           TEST_HOOK_ENV: os.environ[TEST_HOOK_ENV]}

    def call(*args: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=env, cwd=cwd, timeout=900)

    call.home = home  # type: ignore[attr-defined]
    return call


def test_mono_roformer_runs_on_stemsep_legacy_and_is_refused_on_msst(cli, server, tiny_room, msst_worker, workdir,
                                                                     tmp_path):
    config, ckpt = tiny_room
    entry = registry_entry(ROOM)
    assert entry["runtime"]["allowed"] == ["stemsep-legacy"] and entry["capabilities"]["supports_stereo"] is False
    entry["id"] = "test-mono-room"
    entry["artifacts"] = {"primary": served(server, entry["id"], ckpt, "checkpoint"),
                          "config": served(server, entry["id"], config, "config")}
    write_user_registry(cli.home, "mono", [entry])
    stereo = demo_clip(workdir / "room_stereo.wav", 2.0)
    mono = workdir / "room_mono.wav"
    audio, rate = sf.read(str(stereo), dtype="float32", always_2d=True)
    sf.write(str(mono), audio[:, :1], rate, subtype="FLOAT")

    out = tmp_path / "out"
    proc = cli("separate", "--json", "-m", entry["id"], "-o", out, stereo, mono, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    events = json_events(proc.stdout)
    assert {e["runtime"] for e in events if e["type"] == "plan"} == {"stemsep-legacy"}
    for clip, channels in ((stereo, 2), (mono, 1)):  # each channel of a stereo input separated on its own
        frames = sf.info(str(clip)).frames
        for stem in STEMS:
            data, stem_rate = sf.read(str(out / f"{clip.stem}_({stem})_{entry['id']}.wav"), dtype="float32",
                                      always_2d=True)
            assert data.shape == (frames, channels) and stem_rate == rate and np.isfinite(data).all()
            assert np.abs(data).max() > 1e-4
    assert sorted(os.listdir(out)) == sorted(f"{c.stem}_({s})_{entry['id']}.wav" for c in (stereo, mono) for s in STEMS)

    # msst 0.1.0 cannot run it (its demix feeds two channels whatever the input): the fact the registry relies on
    model = copy.deepcopy(entry)
    model["artifacts"] = {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                          "config": {"kind": "config", "filename": config.name}}
    for clip in (stereo, mono):
        with pytest.raises(JobFailed):
            msst_worker.run(job(model, {ckpt.name: ckpt, config.name: config}, clip, tmp_path / "msst"))

    # and preflight says so before anything starts
    refused = cli("preflight", "--json", "-m", entry["id"], "--runtime", "msst", stereo, cwd=tmp_path)
    assert refused.returncode == 3, refused.stderr[-3000:]
    errors = {e["code"]: e for e in json.loads(refused.stdout)["errors"]}
    assert "msst 0.1.0 cannot run mono BS-Roformer models" in errors["E_RUNTIME_NOT_ALLOWED"]["why"]
    assert "stemsep-legacy can" in errors["E_RUNTIME_NOT_ALLOWED"]["why"]


def test_audio_separator_runs_a_config_without_target_instrument(cli, server, tiny_no_target, as_worker, clip3,
                                                                 tmp_path):
    assert dict(ADAPTED_KEYS) == dict(CAPABILITIES["audio-separator"].arch("BS-Roformer").adapted_keys)
    config, ckpt = tiny_no_target
    before = sha256(config)
    entry = registry_entry("bs-roformer-viperx-1297")
    entry.update(id="test-no-target", capabilities={**entry["capabilities"], "stems": ["vocals", "other"]})
    entry["runtime"].update(allowed=["audio-separator"], preferred="audio-separator")
    entry["requirements"]["runtime_pins"] = {"audio-separator": entry["requirements"]["runtime_pins"]["audio-separator"]}
    entry["artifacts"] = {"primary": served(server, entry["id"], ckpt, "checkpoint"),
                          "config": served(server, entry["id"], config, "config")}

    model = copy.deepcopy(entry)  # straight through the session's worker: the derived copy is what loads
    model["artifacts"] = {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                          "config": {"kind": "config", "filename": config.name}}
    result = as_worker.run(job(model, {ckpt.name: ckpt, config.name: config}, clip3, tmp_path / "direct",
                               {"mdxc_params": {"overlap": 2}}))
    stems = read_stems(result)
    assert sorted(stems) == ["other", "vocals"] and all(np.isfinite(a).all() for a in stems.values())
    assert all(a.shape[0] == sf.info(str(clip3)).frames for a in stems.values())
    assert any("target_instrument" in str(w) for w in result["warnings"]), result["warnings"]
    assert sha256(config) == before and "target_instrument" not in config.read_text()

    # through the CLI: the job runs, then preflight (the config now in the model store) says it is adapted
    write_user_registry(cli.home, "no-target", [entry])
    proc = cli("separate", "--json", "-m", entry["id"], "-o", tmp_path / "out", clip3, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(cli("preflight", "--json", "-m", entry["id"], clip3, cwd=tmp_path).stdout)
    adapted = [w for w in report["warnings"] if w["code"] == "W_CONFIG_ADAPTED"]
    assert adapted and "training.target_instrument: null" in adapted[0]["message"] and report["can_proceed"]
    assert not [a for a in report["resolved"]["requirements_status"]["artifacts"] if a["state"] != "present"]


def test_preflight_knows_whether_torchvision_fits_the_envs_torch(cli, as_worker, clip3, tmp_path):
    """MDX-Net on audio-separator imports torchvision: preflight's verdict from the env's metadata agrees with
    importing it there (on a machine whose torch override leaves torchvision mismatched, it blocks)."""
    proc = cli("preflight", "--json", "--no-download", "-m", "mdx-net-hq4", clip3, cwd=tmp_path)
    report = json.loads(proc.stdout)
    env = report["resolved"]["requirements_status"]["env"]
    if env["state"] != "ready" or env["id"] != as_worker.env_id:
        pytest.skip(f"mdx-net-hq4 resolves to another env here ({env['id']}, {env['state']})")
    codes = {e["code"]: e for e in report["errors"]}
    broken = torchvision_broken(as_worker)
    assert ("E_TORCHVISION_MISMATCH" in codes) == bool(broken), (broken, list(codes))
    if broken:
        assert proc.returncode == 3 and "find-links" in codes["E_TORCHVISION_MISMATCH"]["hint"]


def tiny_mdx23c(channels: int) -> dict[str, Any]:
    """TFC-TDF v3 with the published MDX23C STFT (n_fft 8192, hop 1024, dim_f 4096, 4 subbands), scaled down; a
    chunk of 32 frames survives both downscales."""
    frames, hop = 32, 1024
    return {
        "audio": {"chunk_size": hop * (frames - 1), "dim_f": 4096, "dim_t": frames, "hop_length": hop, "n_fft": 8192,
                  "num_channels": channels, "sample_rate": 44100, "min_mean_abs": 0.0},
        "model": {"act": "gelu", "bottleneck_factor": 4, "growth": 4, "norm": "InstanceNorm", "num_blocks_per_scale": 1,
                  "num_channels": 4, "num_scales": 2, "num_subbands": 4, "scale": [2, 2]},
        "training": {"instruments": ["vocals", "other"], "target_instrument": None, "batch_size": 1},
        "inference": {"batch_size": 1, "dim_t": frames, "num_overlap": 2},
    }


def test_mono_mdx23c_fails_on_audio_separator_as_its_facts_say(as_worker, msst_env, workdir, clip3, tmp_path):
    """The fact that refuses a one-channel MDX23C on audio-separator (validator and preflight read cannot_run) is
    what the library does: it makes every mix stereo, which the mono network's first convolution refuses, while
    the same layout with two channels runs."""
    models = {}
    for channels in (2, 1):
        config = write_yaml(workdir / f"tiny_mdx23c_{channels}ch.yaml", tiny_mdx23c(channels))
        ckpt = make_checkpoint(msst_env.python, config, workdir / f"tiny_mdx23c_{channels}ch.ckpt", model_type="mdx23c")
        model = model_entry(f"test-mdx23c-{channels}ch", ["audio-separator"], model_type="mdx23c",
                            architecture="MDX23C")
        model["capabilities"]["supports_stereo"] = channels == 2
        model["artifacts"] = {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                              "config": {"kind": "config", "filename": config.name}}
        models[channels] = (model, {ckpt.name: ckpt, config.name: config})

    stereo, files = models[2]
    stems = read_stems(as_worker.run(job(stereo, files, clip3, tmp_path / "stereo", {"mdxc_params": {"overlap": 2}})))
    assert sorted(stems) == ["other", "vocals"] and all(np.isfinite(a).all() for a in stems.values())
    mono, files = models[1]
    with pytest.raises(JobFailed, match="channels"):
        as_worker.run(job(mono, files, clip3, tmp_path / "mono", {"mdxc_params": {"overlap": 2}}))

    from registry.model import ModelEntry

    why = cannot_run(ModelEntry.model_validate(mono), "audio-separator")
    assert any("cannot run mono MDX23C models" in reason for reason in why), why
