"""`stemsep models download|import|status|rm` as a user runs them: a real process, a real server."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.artifacts.conftest import REPO_ROOT, blob, files_under
from tests.support.cli import STOPS, json_events, run_cli, spawn_cli
from tests.support.wait import wait_for

CKPT = blob(200_000, seed=31)
CFG = b"audio:\n  chunk_size: 485100\nmodel:\n  dim: 8\n"
SHA = hashlib.sha256(CKPT).hexdigest()
CFG_SHA = hashlib.sha256(CFG).hexdigest()


@pytest.fixture
def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def overlay(tmp_path: Path, server) -> Path:
    """A user registry with three test models whose files live on the local server."""
    ckpt, cfg = server.file("/ckpt", CKPT), server.file("/cfg.yaml", CFG)
    models = [
        {"id": "test-a", "runtime": {"allowed": ["msst"]},
         "artifacts": {"primary": {"kind": "checkpoint", "filename": "model.ckpt", "url": ckpt, "sha256": SHA},
                       "config": {"kind": "config", "filename": "config.yaml", "url": cfg, "sha256": CFG_SHA}}},
        {"id": "test-b", "runtime": {"allowed": ["audio-separator"]},
         "artifacts": {"primary": {"kind": "checkpoint", "filename": "b.ckpt", "url": ckpt},
                       "config": {"kind": "config", "filename": "config.yaml", "url": cfg}}},
        {"id": "test-bad", "runtime": {"allowed": ["audio-separator"]},
         "artifacts": {"primary": {"kind": "checkpoint", "filename": "bad.ckpt", "url": ckpt, "sha256": "a" * 64}}},
        {"id": "test-manual", "runtime": {"allowed": ["msst"]}, "links": {"homepage": "https://example.org/m"},
         "artifacts": {"primary": {"kind": "checkpoint", "filename": "manual.ckpt", "sha256": "b" * 64}}},
    ]
    path = tmp_path / "overlay.json"
    path.write_text(json.dumps({"schema_version": "1", "models": models}))
    return path


def stemsep(home: Path, overlay: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # COLUMNS: rich wraps messages at the terminal width; keep hashes and paths on one line.
    run_env = {"STEMSEP_HOME": str(home), "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "400", **(env or {})}
    return run_cli("models", *args, "--registry", overlay, env=run_env,
                   unset=["STEMSEP_MODEL_STORE", "STEMSEP_OFFLINE"], cwd=REPO_ROOT, timeout=120)


def test_download_json_events_and_files(home, overlay, server):
    r = stemsep(home, overlay, "download", "test-a", "test-b", "--json")
    assert r.returncode == 0, r.stderr
    events = json_events(r.stdout)
    kinds = {e["type"] for e in events}
    assert {"artifact.start", "artifact.progress", "artifact.done", "artifact.warning", "summary"} <= kinds
    summary = events[-2]
    assert events[-1] == {"type": "exit", "exit_code": 0}
    assert [x["model"] for x in summary["results"]] == ["test-a", "test-b"]
    assert all(x["ok"] for x in summary["results"])
    store = home / "models"
    assert (store / "test-a" / "model.ckpt").read_bytes() == CKPT
    assert (store / "test-a" / "config.yaml").read_bytes() == CFG
    assert (store / "test-b" / "config.yaml").read_bytes() == CFG  # same name, own folder
    warnings = [e for e in events if e["type"] == "artifact.warning"]
    assert {w["model_id"] for w in warnings} == {"test-b"}  # test-b pins no sha256
    assert files_under(store) == {"test-a/model.ckpt", "test-a/config.yaml", "test-a/.manifest.json",
                                  "test-b/b.ckpt", "test-b/config.yaml", "test-b/.manifest.json"}


def test_download_prints_paths_and_bars_without_json(home, overlay):
    r = stemsep(home, overlay, "download", "test-a")
    assert r.returncode == 0, r.stderr
    assert f"test-a/model.ckpt: {home / 'models' / 'test-a' / 'model.ckpt'}" in r.stdout
    assert "test-a/model.ckpt" in r.stderr  # the progress bar's label


def test_download_sha256_mismatch_exits_8_naming_both_hashes(home, overlay):
    r = stemsep(home, overlay, "download", "test-bad", "test-a")
    assert r.returncode == 8
    assert "a" * 64 in r.stderr and SHA in r.stderr and "E_ARTIFACT_SHA256_MISMATCH" in r.stderr
    # The other model still downloaded; the bad one left nothing behind.
    assert (home / "models" / "test-a" / "model.ckpt").is_file()
    assert not (home / "models" / "test-bad").exists()


def test_download_require_hashes_refuses_before_any_request(home, overlay, server):
    r = stemsep(home, overlay, "download", "test-a", "test-b", "--require-hashes")
    assert r.returncode == 8 and "test-b/b.ckpt" in r.stderr and "E_ARTIFACT_HASH_REQUIRED" in r.stderr
    assert server.hits == [] and not (home / "models").exists()


def test_download_all_for_runtime_uses_registry_data(home, overlay, closed_port):
    # The packaged registry's msst models are selected too: a proxy on a closed port keeps them off the
    # internet (each host fails once, fast, and is not tried again); only our server is reachable.
    offline = f"http://127.0.0.1:{closed_port}"
    r = stemsep(home, overlay, "download", "--all-for-runtime", "msst", "--json", "--retries", "0",
                env={"HTTP_PROXY": offline, "HTTPS_PROXY": offline, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    assert r.returncode == 8
    *_, summary, exit_event = json_events(r.stdout)
    ok = {x["model"]: x["ok"] for x in summary["results"]}
    assert ok["test-a"] is True and ok["test-manual"] is False and "test-b" not in ok
    assert exit_event["type"] == "exit" and exit_event["exit_code"] == 8
    # test-manual has no URL: its error says how to import it.
    assert "models import test-manual --checkpoint" in r.stderr and "https://example.org/m" in r.stderr
    assert not (home / "models" / "test-b").exists()


@pytest.mark.parametrize("args, code", [((), 2), (("no-such-model",), 2), (("--all-for-runtime", "uvr"), 2)])
def test_download_usage_errors(home, overlay, args, code):
    r = stemsep(home, overlay, "download", *args)
    assert r.returncode == code, r.stderr
    assert "error" in r.stderr


def test_download_offline_refuses(home, overlay, server):
    r = stemsep(home, overlay, "download", "test-a", env={"STEMSEP_OFFLINE": "1"})
    assert r.returncode == 8 and "offline" in r.stderr and server.hits == []


def test_unwritable_store_exits_7(home, overlay, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's parent should be")
    r = stemsep(home, overlay, "download", "test-a", env={"STEMSEP_MODEL_STORE": str(blocker / "models")})
    assert r.returncode == 7, r.stderr
    assert "model_store" in r.stderr


def test_import_then_status_then_rm(home, overlay, tmp_path):
    ckpt = tmp_path / "my download.ckpt"
    ckpt.write_bytes(CKPT)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_bytes(CFG)
    r = stemsep(home, overlay, "import", "test-a", "--checkpoint", str(ckpt), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    stored = home / "models" / "test-a" / "model.ckpt"
    assert stored.read_bytes() == CKPT and stored.stat().st_ino == ckpt.stat().st_ino

    (home / "models" / "old-model").mkdir()  # a folder of a model the registry no longer has
    r = stemsep(home, overlay, "status", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert {(a["model_id"], a["filename"], a["state"]) for a in data["artifacts"]} == {
        ("test-a", "model.ckpt", "present"), ("test-a", "config.yaml", "present")}
    assert data["unknown_models"] == ["old-model"]
    r = stemsep(home, overlay, "status", "test-b", "test-manual", "--json")
    states = {a["filename"]: a["state"] for a in json.loads(r.stdout)["artifacts"]}
    assert states == {"b.ckpt": "downloadable", "config.yaml": "downloadable", "manual.ckpt": "missing"}
    r = stemsep(home, overlay, "status")
    assert r.returncode == 0 and "present" in r.stdout and "old-model" in r.stdout

    r = stemsep(home, overlay, "rm", "test-a", "old-model")
    assert r.returncode == 0, r.stderr
    assert "test-a: removed 3 files" in r.stdout
    assert not (home / "models" / "test-a").exists() and not (home / "models" / "old-model").exists()
    assert ckpt.read_bytes() == CKPT  # the user's own file is untouched
    assert stemsep(home, overlay, "rm", "never-heard-of-it").returncode == 2


def test_import_errors(home, overlay, tmp_path):
    wrong = tmp_path / "wrong.ckpt"
    wrong.write_bytes(b"not the model")
    r = stemsep(home, overlay, "import", "test-a", "--checkpoint", str(wrong))
    assert r.returncode == 8 and SHA in r.stderr and hashlib.sha256(b"not the model").hexdigest() in r.stderr
    assert files_under(home / "models") == set()
    r = stemsep(home, overlay, "import", "test-a", "--checkpoint", str(tmp_path / "missing.ckpt"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = stemsep(home, overlay, "import", "test-bad", "--config", str(wrong))
    assert r.returncode == 2 and "declares no artifact for --config" in r.stderr
    r = stemsep(home, overlay, "import", "test-a")
    assert r.returncode == 2 and "Nothing to import" in r.stderr
    r = stemsep(home, overlay, "import", "test-a", "--file", f"config.yaml={tmp_path / 'missing'}")
    assert r.returncode == 2


@pytest.mark.parametrize("sig, started, code, exit_code, message", STOPS)
def test_a_stop_signal_keeps_the_partial_and_the_next_run_resumes(home, overlay, server, tmp_path, sig, started,
                                                                  code, exit_code, message):
    import threading

    big = blob(3_000_000, seed=33)
    resume = threading.Event()  # until set, the download stays half done, however slow the machine
    url = server.file("/big.ckpt", big, hold=resume)
    reg = tmp_path / "big.json"
    reg.write_text(json.dumps({"models": [{"id": "test-big", "artifacts": {"primary": {
        "kind": "checkpoint", "filename": "big.ckpt", "url": url,
        "sha256": hashlib.sha256(big).hexdigest()}}}]}))
    env = {"STEMSEP_HOME": str(home), "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "400"}
    proc = spawn_cli("models", "download", "test-big", "--registry", reg, "--json", env=env, cwd=REPO_ROOT,
                     preexec_fn=started)
    for line in proc.stdout:  # wait until bytes are arriving
        if json.loads(line)["type"] == "artifact.progress" and json.loads(line)["done"] > 0:
            break
    partial = home / "models" / "test-big" / ".partial" / "big.ckpt"
    wait_for(lambda: partial.is_file() and partial.stat().st_size > 0, what=f"received bytes in {partial}",
             process=proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == exit_code, err
    last = json.loads(out.splitlines()[-1])
    assert last["code"] == code and last["message"] == message and "resume" in err
    got = partial.stat().st_size
    assert 0 < got < len(big) and not (home / "models" / "test-big" / "big.ckpt").exists()
    r = stemsep(home, reg, "status", "test-big", "--json")
    assert json.loads(r.stdout)["artifacts"][0]["state"] == "partial"

    resume.set()
    r = stemsep(home, reg, "download", "test-big")
    assert r.returncode == 0, r.stderr
    assert (home / "models" / "test-big" / "big.ckpt").read_bytes() == big
    assert server.hits_for("/big.ckpt")[-1].range == f"bytes={got}-"
    assert files_under(home / "models") == {"test-big/big.ckpt", "test-big/.manifest.json"}
