"""`stemsep doctor` through the real CLI against real envs in a private store: a broken env is reported (and is
not a reason to fail), a missing ffmpeg for an audio-separator env is (exit 1), a state dir that cannot be
written is (exit 1); a healthy machine exits 0."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envmgr.config import load_config
from envmgr.envs.manager import EnvManager
from envmgr.envs.request import request_for_model, request_for_requirements
from envmgr.envs.store import MARKER
from registry.errors import ExitCode

from .conftest import cli, light_entry


def doctor(env: dict[str, str]) -> tuple[int, dict, str]:
    result = cli("doctor", "--json", env=env)
    return result.returncode, json.loads(result.stdout), result.stderr


def checks(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def path_without_ffmpeg(*first: Path) -> str:
    """PATH as the test has it, less every dir that holds an ffmpeg; `first` dirs in front."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "ffmpeg").exists()]
    return os.pathsep.join([*map(str, first), *dirs])


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    return {"STEMSEP_ENV_STORE": str(tmp_path / "envs"), "STEMSEP_LOG_DIR": str(tmp_path / "logs")}


@pytest.mark.envs
def test_doctor_reports_broken_envs_without_failing(tmp_path: Path, store: dict[str, str]) -> None:
    manager = EnvManager(load_config(env_store=tmp_path / "envs", log_dir=tmp_path / "logs"))
    env = manager.ensure(request_for_model(light_entry(), "stemsep-legacy", manager.config))
    code, report, _ = doctor(store)
    assert code == 0 and report["ok"] and report["missing"] == []
    envs = checks(report)["envs"]
    assert envs["status"] == "ok" and [e["state"] for e in envs["data"]["envs"]] == ["ready"]

    (env.path / MARKER).unlink()  # a build that never finished
    code, report, _ = doctor(store)
    envs = checks(report)["envs"]
    assert code == 0 and envs["status"] == "warn" and not envs["needed"]
    row = envs["data"]["envs"][0]
    assert row["id"] == env.id and row["state"] == "broken" and "marker" in row["problem"]
    assert "env prune" in envs["hint"]

    (env.path / MARKER).write_text(env.id + "\n")
    python = env.path / "bin" / "python"  # what a removed base interpreter leaves behind
    python.unlink()
    python.symlink_to(tmp_path / "removed-python" / "python3")
    text = cli("doctor", env={**store, "COLUMNS": "250"})
    assert text.returncode == 0 and env.id in text.stdout and "interpreter" in text.stdout
    assert "broken" in text.stdout and "marker" not in text.stdout


@pytest.mark.envs
def test_doctor_fails_when_an_audio_separator_env_has_no_ffmpeg(tmp_path: Path, store: dict[str, str]) -> None:
    # A real env of the audio-separator runtime holding only imageio-ffmpeg: what decides where its worker's
    # ffmpeg comes from (the full runtime adds audio-separator, onnxruntime and torch, none of which matter here).
    manager = EnvManager(load_config(env_store=tmp_path / "envs", log_dir=tmp_path / "logs"))
    env = manager.ensure(request_for_requirements(["imageio-ffmpeg"], runtime="audio-separator",
                                                  config=manager.config))
    no_ffmpeg = {**store, "PATH": path_without_ffmpeg()}
    code, report, _ = doctor(no_ffmpeg)
    ffmpeg = checks(report)["ffmpeg"]
    assert code == 0 and ffmpeg["status"] == "ok", ffmpeg
    assert ffmpeg["data"]["envs"][env.id]["source"] == "bundled with imageio-ffmpeg"

    bundled = list(env.path.glob("lib/python*/site-packages/imageio_ffmpeg/binaries/ffmpeg*"))
    assert bundled, "the imageio-ffmpeg wheel bundles no ffmpeg on this platform"
    for binary in bundled:
        binary.unlink()  # the env's link only: uv's cache keeps its copy
    code, report, err = doctor(no_ffmpeg)
    ffmpeg = checks(report)["ffmpeg"]
    assert code == ExitCode.INVALID and report["missing"] == ["ffmpeg"] and not report["ok"]
    assert ffmpeg["status"] == "fail" and ffmpeg["needed"] and ffmpeg["data"]["envs"][env.id]["path"] is None
    assert "E_DOCTOR_MISSING" in err and "ffmpeg" in err and f"env repair {env.id}" in err

    # An ffmpeg on the PATH the worker inherits is what imageio-ffmpeg falls back to: it counts.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "ffmpeg"
    stub.write_text("#!/bin/sh\necho 'ffmpeg version 6.1-test Copyright (c) the test'\n")
    stub.chmod(0o755)
    code, report, _ = doctor({**store, "PATH": path_without_ffmpeg(bin_dir)})
    ffmpeg = checks(report)["ffmpeg"]
    assert code == 0 and ffmpeg["status"] == "ok"
    assert ffmpeg["data"]["envs"][env.id] == {"path": str(stub), "source": "system, from PATH", "error": None}
    assert ffmpeg["data"]["system"] == str(stub)


def test_doctor_fails_when_a_state_dir_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    token_url = "https://someone:t0ken-not-for-issues@index.example/simple"
    result = cli("doctor", "--json", env={"STEMSEP_MODEL_STORE": str(blocker / "models"),
                                          "STEMSEP_ENV_STORE": str(tmp_path / "envs"), "STEMSEP_INDEX_URL": token_url})
    code, report, err = result.returncode, json.loads(result.stdout), result.stderr
    dirs = checks(report)["state dirs"]
    assert code == ExitCode.INVALID and report["missing"] == ["state dirs"]
    assert dirs["status"] == "fail" and any(str(blocker / "models") in d for d in dirs["details"])
    assert "E_DOCTOR_MISSING" in err
    # Without an audio-separator env ffmpeg is not needed, and this machine's config is shown.
    assert checks(report)["ffmpeg"]["status"] in ("ok", "info") and checks(report)["config"]["data"]["values"]
    assert checks(report)["gpu"]["data"]["backends"] is not None
    # The config in effect is shown without the credentials of an index URL: doctor's output is for pasting.
    assert checks(report)["config"]["data"]["values"]["index_url"] == "https://***@index.example/simple"
    assert "t0ken-not-for-issues" not in result.stdout + result.stderr
