"""Adopted envs (`stemsep env adopt`, --env, adopted_envs): a real venv the test makes with uv (from the
machine's uv cache and find-links), holding numpy and soundfile (the DSP worker runs), six at a version the
test model refuses and no idna, which the model needs. Preflight names exactly those two with the command that
fixes each; report mode runs the job, strict mode blocks it; installing idna changes the fingerprint and
preflight says so. Every file and dir inside the venv is hashed around every command: none may change."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile as sf

from tests.support.cli import run_cli

pytestmark = pytest.mark.envs

MODEL = {
    "id": "adopt-pins", "name": "adopted env test model", "architecture": "DSP", "type": "test",
    "runtime": {"allowed": ["stemsep-legacy"], "preferred": "stemsep-legacy", "model_type": "dsp_center_split"},
    "requirements": {"torch": {"required": False}, "pip": {"packages": ["six>=1.16", "idna>=3"]}},
    "capabilities": {"stems": ["vocals", "instrumental"], "roles": ["separation"], "supports_mono": True,
                     "supports_stereo": True},
}


def _uv(*args: str) -> None:
    """uv as the env builds use it: the machine's uv cache and package sources."""
    from envmgr.config import load_config
    from envmgr.envs.uvtool import find_uv, uv_env

    config = load_config()
    uv = find_uv(config)
    assert uv, "these tests make their venv with uv"
    sources = [a for link in config.find_links for a in ("--find-links", link)]
    sources += ["--index-url", config.index_url] if config.index_url else []
    offline = ["--offline"] if config.offline else []
    subprocess.run([uv, *args, *(sources + offline if args[0] == "pip" else [])], check=True, env=uv_env(config),
                   capture_output=True)


def tree_digest(root: Path) -> str:
    """Every path under `root` (dirs too: a new __pycache__ counts) with its content or link target."""
    h = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(folder, name)
            h.update(str(path.relative_to(root)).encode() + b"\0")
            if path.is_symlink():
                h.update(os.readlink(path).encode())
            elif path.is_file():
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@contextmanager
def untouched(venv: Path) -> Iterator[None]:
    before = tree_digest(venv)
    yield
    assert tree_digest(venv) == before, f"a file inside the adopted env {venv} changed"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, stemsep_home: Path) -> dict[str, str]:
    """A STEMSEP_HOME of this module's own (its state dir holds the adopted records) with the test model in
    its registry overlay; the session's uv cache."""
    root = tmp_path_factory.mktemp("adopt-home")
    (root / "config" / "registries").mkdir(parents=True)
    (root / "config" / "registries" / "adopt.json").write_text(json.dumps({"schema_version": "1",
                                                                          "models": [MODEL]}))
    env = {"STEMSEP_HOME": str(root), "COLUMNS": "200"}
    if os.environ.get("STEMSEP_UV_CACHE_DIR"):
        env["STEMSEP_UV_CACHE_DIR"] = os.environ["STEMSEP_UV_CACHE_DIR"]
    return env


def make_venv(path: Path, *packages: str, seed: bool = True) -> Path:
    _uv("venv", "--python", sys.executable, *(["--seed"] if seed else []), str(path))
    if packages:
        _uv("pip", "install", "--python", str(path / "bin" / "python"), *packages)
    return path


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, home: dict[str, str]) -> Path:
    path = make_venv(tmp_path_factory.mktemp("user-envs") / "legacy", "numpy", "soundfile", "six==1.15.0")
    with untouched(path):
        done = run_cli("env", "adopt", path, "--runtime", "stemsep-legacy", "--json", env=home)
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("adopt-audio") / "mix.wav"
    sf.write(path, np.random.default_rng(0).standard_normal((22050, 2)).astype("float32") * 0.1, 44100)
    return path


def cli(venv: Path, *args: Any, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    with untouched(venv):
        return run_cli(*args, env=env)


def preflight(venv: Path, mix: Path, home: dict[str, str], *extra: str) -> dict[str, Any]:
    done = cli(venv, "preflight", mix, "-m", "adopt-pins", "--json", *extra, env=home)
    return json.loads(done.stdout)


def test_adopt_records_the_env_and_lists_it_apart(venv: Path, home: dict[str, str]) -> None:
    listed = json.loads(cli(venv, "env", "list", "--json", env=home).stdout)
    assert [e["name"] for e in listed["adopted"]] == ["legacy"]
    assert not listed["envs"]  # nothing managed was built
    shown = json.loads(cli(venv, "env", "show", "legacy", "--json", env=home).stdout)
    assert shown["python"] == str(venv / "bin" / "python") and shown["runtime"] == "stemsep-legacy"
    dists = shown["fingerprint"]["distributions"]
    assert dists["six"] == "1.15.0" and "numpy" in dists and "idna" not in dists
    assert shown["changes"] == []
    assert "builtin-center-split" in shown["models"]["runnable"]
    assert shown["models"]["not_runnable"]["adopt-pins"] == ["E_PIP_MISSING", "E_PIP_VERSION"]


def test_preflight_reports_exactly_the_wrong_pin_and_the_missing_package(venv: Path, mix: Path,
                                                                        home: dict[str, str]) -> None:
    report = preflight(venv, mix, home, "--env", "legacy")
    assert not report["can_proceed"]
    assert sorted((e["code"], e["subject"]) for e in report["errors"]) == [
        ("E_PIP_MISSING", "idna>=3"), ("E_PIP_VERSION", "six>=1.16")]
    status = report["resolved"]["requirements_status"]
    assert status["env"]["state"] == "adopted" and status["env"]["path"] == str(venv)
    rows = {r["requirement"]: r for r in status["pip"]}
    assert {k: r["state"] for k, r in rows.items()} == {
        "numpy": "satisfied", "soundfile": "satisfied", "six>=1.16": "wrong_version", "idna>=3": "missing"}
    assert rows["six>=1.16"]["fix"] == f"{venv}/bin/python -m pip install 'six>=1.16'"
    assert "fix" not in rows["numpy"]


def test_report_mode_runs_the_job_in_the_adopted_env(venv: Path, mix: Path, home: dict[str, str],
                                                     tmp_path: Path) -> None:
    done = cli(venv, "separate", mix, "-m", "adopt-pins", "--env", "legacy", "--enforcement", "report",
               "-o", tmp_path, "--json", env=home)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    ready = next(e for e in events if e["type"] == "env_ready")
    assert ready["env_id"] == "adopted:legacy" and ready["python"] == str(venv / "bin" / "python")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix_(instrumental)_adopt-pins.wav",
                                                          "mix_(vocals)_adopt-pins.wav"]


def test_strict_mode_blocks_naming_the_fix(venv: Path, mix: Path, home: dict[str, str], tmp_path: Path) -> None:
    done = cli(venv, "separate", mix, "-m", "adopt-pins", "--env", "legacy", "--enforcement", "strict",
               "-o", tmp_path, env=home)
    assert done.returncode == 3
    text = " ".join(done.stderr.split())
    for requirement in ("six>=1.16", "idna>=3"):
        assert f"-m pip install '{requirement}'" in text
    assert not any(tmp_path.iterdir())


def test_the_config_default_routes_a_runtime_to_the_adopted_env(venv: Path, mix: Path,
                                                                home: dict[str, str]) -> None:
    routed = preflight(venv, mix, {**home, "STEMSEP_ADOPTED_ENVS": "stemsep-legacy=legacy"})
    assert routed["resolved"]["requirements_status"]["env"]["id"] == "adopted:legacy"
    managed = preflight(venv, mix, home)
    assert managed["resolved"]["requirements_status"]["env"]["state"] != "adopted"


def test_an_unknown_env_name_is_a_usage_error(venv: Path, mix: Path, home: dict[str, str]) -> None:
    done = cli(venv, "preflight", mix, "-m", "adopt-pins", "--env", "nope", env=home)
    assert done.returncode == 2 and "E_UNKNOWN_ENV" in done.stderr


def test_serve_takes_the_adopted_env_as_the_cli_does(venv: Path, mix: Path, home: dict[str, str],
                                                     tmp_path: Path) -> None:
    """`options.env` of a `stemsep serve` job spec is `--env NAME`: POST /v1/preflight reports the same wrong pin
    and missing package, a report-mode job runs in the adopted env, an unknown name is refused at submission."""
    from tests.serve.server import Server

    spec = {"inputs": [str(mix)], "models": ["adopt-pins"], "options": {"env": "legacy"}}
    with untouched(venv):
        server = Server(home, cwd=tmp_path)
        try:
            checked = server.http.post("/v1/preflight", json=spec).json()
            assert checked["can_proceed"] is False
            assert sorted((e["code"], e["subject"]) for e in checked["report"]["errors"]) == [
                ("E_PIP_MISSING", "idna>=3"), ("E_PIP_VERSION", "six>=1.16")]
            assert checked["report"]["resolved"]["requirements_status"]["env"]["id"] == "adopted:legacy"

            unknown = server.http.post("/v1/jobs", json={**spec, "options": {"env": "nope"}})
            assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "E_UNKNOWN_ENV")
            other = server.http.post("/v1/jobs", json={**spec, "runtime": "msst"})
            assert other.status_code == 400 and "is for stemsep-legacy, not msst" in other.json()["error"]["message"]

            job = server.wait_final(server.submit(**{**spec, "options": {"env": "legacy", "enforcement": "report"}}))
            assert job["state"] == "completed", job
            ready = next(e for e in server.events(job["id"]) if e["type"] == "env_ready")
            assert ready["env_id"] == "adopted:legacy" and ready["python"] == str(venv / "bin" / "python")
            assert sorted(job["result"]["stems"]) == ["mix_(instrumental)_adopt-pins.wav", "mix_(vocals)_adopt-pins.wav"]
        finally:
            server.stop()


def test_preflight_notices_the_changed_fingerprint(venv: Path, mix: Path, home: dict[str, str]) -> None:
    # last in this module: it changes the venv (as its user would) and the others expect it as adopted
    _uv("pip", "install", "--python", str(venv / "bin" / "python"), "idna>=3")
    report = preflight(venv, mix, home, "--env", "legacy")
    assert [e["code"] for e in report["errors"]] == ["E_PIP_VERSION"]
    changed = [w for w in report["warnings"] if w["code"] == "W_ENV_CHANGED"]
    assert len(changed) == 1 and changed[0]["why"].startswith("idna ") and changed[0]["why"].endswith(" installed")
    adopted = report["resolved"]["requirements_status"]["env"]["adopted"]
    assert adopted["fingerprint"] != adopted["adopted_fingerprint"]


def test_an_env_without_pip_cannot_be_adopted(tmp_path: Path, home: dict[str, str]) -> None:
    bare = make_venv(tmp_path / "bare", seed=False)
    with untouched(bare):
        done = run_cli("env", "adopt", bare, "--runtime", "stemsep-legacy", env=home)
    assert done.returncode == 5 and "E_ADOPT_NO_PIP" in done.stderr and "No module named pip" in done.stderr
