"""Bad configs, checkpoints and audio: each gets a clear error (what, why, what to do) and a code the
worker reports; an unsafe checkpoint never gets to run its payload."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.legacy.conftest import (KIM_MEL, TINY, VIPERX, demo_input, max_diff, ours_env, ours_ok, run_ours,
                                   write_config)

CKPT_TOOLS = Path(__file__).with_name("ckpt_tools.py")

pytestmark = pytest.mark.envs  # builds real uv envs (stemsep-legacy torch, msst 0.1.0)


def variant(legacy_python: Path, kind: str, src: Path, dst: Path, *extra: str) -> Path:
    subprocess.run([str(legacy_python), str(CKPT_TOOLS), kind, str(src), str(dst), *extra], check=True,
                   env=ours_env(), capture_output=True)
    return dst


@pytest.fixture(scope="module")
def mix(workdir: Path) -> Path:
    return demo_input(workdir / "mix1.npy", 1.0)


@pytest.fixture(scope="module")
def reference(legacy_python, tiny_bs, mix, workdir) -> dict:
    config, ckpt = tiny_bs
    return ours_ok(run_ours(legacy_python, config, ckpt, mix, workdir / "reference"))


@pytest.mark.parametrize("kind", ["wrap-state_dict", "wrap-model", "module-prefix", "extra-nontensor"])
def test_accepted_checkpoint_shapes_give_the_same_stems(legacy_python, tiny_bs, mix, reference, tmp_path, kind):
    config, ckpt = tiny_bs
    run = run_ours(legacy_python, config, variant(legacy_python, kind, ckpt, tmp_path / "v.ckpt"), mix, tmp_path / "out")
    assert max_diff(ours_ok(run), reference) == 0.0
    if kind == "extra-nontensor":
        assert any("non-tensor" in w and "_metadata_version" in w for w in run.result()["warnings"])


def test_config_of_another_family_names_keys_and_the_variant(legacy_python, tiny_bs, mix, tmp_path):
    _, bs_ckpt = tiny_bs
    mel_config = write_config(KIM_MEL, tmp_path / "mel.yaml", TINY)
    err = run_ours(legacy_python, mel_config, bs_ckpt, mix, tmp_path / "out").error()
    assert err["code"] == "E_MODEL_LOAD"
    assert "does not match its config" in err["message"] and "final_norm.gamma" in err["message"]
    assert "bs_roformer checkpoint" in err["hint"]
    assert not list((tmp_path / "out").glob("*.npy"))


def test_config_with_other_dimensions_says_which(legacy_python, tiny_bs, mix, tmp_path):
    _, ckpt = tiny_bs
    config = write_config(VIPERX, tmp_path / "big.yaml", {**TINY, "model.dim": 48, "model.depth": 3})
    err = run_ours(legacy_python, config, ckpt, mix, tmp_path / "out").error()
    assert "keys of another shape" in err["message"] and "missing keys" in err["message"]
    assert "dim: checkpoint 32, config 48" in err["hint"] and "depth: checkpoint 2, config 3" in err["hint"]


def test_hyperace_keys_are_recognised(legacy_python, tiny_bs, mix, tmp_path):
    config, ckpt = tiny_bs
    bad = variant(legacy_python, "segm", ckpt, tmp_path / "segm.ckpt")
    err = run_ours(legacy_python, config, bad, mix, tmp_path / "out").error()
    assert "unexpected keys" in err["message"] and "segm" in err["message"]
    assert "HyperACE" in err["hint"]


def test_truncated_checkpoint(legacy_python, tiny_bs, mix, tmp_path):
    config, ckpt = tiny_bs
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    err = run_ours(legacy_python, config, cut, mix, tmp_path / "out").error()
    assert err["code"] == "E_MODEL_LOAD" and "truncated or corrupt" in err["message"]
    assert "download it again" in err["hint"]


@pytest.mark.parametrize("kind", ["payload-zip", "payload-raw"])
def test_pickle_payload_never_runs(legacy_python, tiny_bs, mix, tmp_path, kind):
    config, ckpt = tiny_bs
    marker = tmp_path / "pwned"
    evil = variant(legacy_python, kind, ckpt, tmp_path / "evil.ckpt", "--marker", str(marker))
    assert not marker.exists()
    err = run_ours(legacy_python, config, evil, mix, tmp_path / "out").error()
    assert "needs full unpickling" in err["message"] and "system" in err["message"]
    assert "unsafe_pickle" in err["hint"]
    assert not marker.exists(), "the checkpoint's payload ran"


def test_unsafe_checkpoint_loads_only_with_flag_and_consent(legacy_python, tiny_bs, mix, reference, tmp_path):
    config, ckpt = tiny_bs
    unsafe = variant(legacy_python, "namespace", ckpt, tmp_path / "ns.ckpt")
    err = run_ours(legacy_python, config, unsafe, mix, tmp_path / "refused").error()
    assert "argparse.Namespace" in err["message"]
    run = run_ours(legacy_python, config, unsafe, mix, tmp_path / "allowed", "--allow-unsafe-pickle")
    assert max_diff(ours_ok(run), reference) == 0.0
    assert any("full unpickling" in w for w in run.result()["warnings"])


@pytest.mark.parametrize("change,expect", [
    ({"training.instruments": None}, "training.instruments is missing"),
    ({"model.use_sage_attention": True}, "use_sage_attention"),
    ({"model.use_pope": True}, "use_pope"),
    ({"model.freqs_per_bands": (2, 2)}, "freqs_per_bands sums to 4"),
    ({"inference.num_overlap": 0}, "inference.num_overlap must be an integer >= 1"),
], ids=["no-instruments", "unknown-option", "pope", "bands-do-not-cover", "overlap-zero"])
def test_bad_configs(legacy_python, tiny_bs, mix, tmp_path, change, expect):
    _, ckpt = tiny_bs
    config = write_config(VIPERX, tmp_path / "bad.yaml", {**TINY, **change})
    err = run_ours(legacy_python, config, ckpt, mix, tmp_path / "out").error()
    assert err["code"] == "E_MODEL_LOAD" and expect in err["message"], err
    assert err["hint"] or "pope" in expect


def test_missing_checkpoint(legacy_python, tiny_bs, mix, tmp_path):
    config, _ = tiny_bs
    err = run_ours(legacy_python, config, tmp_path / "nope.ckpt", mix, tmp_path / "out").error()
    assert "does not exist" in err["message"] and "preflight" in err["hint"]


def test_audio_the_model_cannot_take(legacy_python, tiny_bs, tmp_path):
    config, ckpt = tiny_bs
    wav48 = tmp_path / "48k.wav"
    sf.write(wav48, np.zeros((4800, 2), dtype=np.float32), 48000)
    err = run_ours(legacy_python, config, ckpt, wav48, tmp_path / "a").error()
    assert err["code"] == "E_INPUT_SAMPLE_RATE" and "48000 Hz" in err["message"] and "-ar 44100" in err["hint"]
    surround = tmp_path / "6ch.npy"
    np.save(surround, np.zeros((4410, 6), dtype=np.float32))
    err = run_ours(legacy_python, config, ckpt, surround, tmp_path / "b").error()
    assert err["code"] == "E_INPUT_CHANNELS" and "6 channels" in err["message"] and "-ac 2" in err["hint"]
