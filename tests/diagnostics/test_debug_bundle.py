"""Debug bundles and their replay, as a user and a maintainer meet them: real `stemsep` processes, the real
DSP env built with uv, a worker that fails through the fault hook (tests/worker/fault_hook.py), the bundle read
back from the zip the run wrote.

- a failed job writes one bundle with every part, named in the error (the --json exit event's `debug_bundle`);
- no secret leaves: an index URL with a token (config.toml) and proxy credentials (HTTPS_PROXY) appear nowhere in
  the archive;
- `debug replay` on a machine whose env was deleted rebuilds it from the bundle's lock, to the same env id, and
  ends with the recorded error; a lock pinning a version that does not exist is E_REPLAY_LOCK_UNAVAILABLE; a model
  file whose bytes changed since is E_REPLAY_ARTIFACT_MISMATCH, or a reported difference with --allow-mismatch;
- a bundle folder keeps the newest `debug_bundle_keep` bundles.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from envmgr.worker.process import TEST_HOOK_ENV
from tests.envmgr.test_bad_input import closed_port
from tests.preflight.conftest import dsp, write_audio
from tests.support.cli import home_sharing_session_envs, json_events, run_cli, write_user_registry
from tests.worker.conftest import FAULT_HOOK, dsp_env  # noqa: F401 (the session's DSP env, built once)

FAILING = dsp("bundle-job-error", test_fault={"fault": "exit"})  # the job dies in a library's sys.exit()
WORKING = dsp("bundle-ok")
WITH_FILE = dsp("bundle-with-file", artifacts={"primary": {"kind": "checkpoint", "filename": "tiny.ckpt"}})
PROXY_USER, PROXY_PASSWORD = "proxyuser", "proxy-pass-SECRET-7"
INDEX_USER, INDEX_TOKEN = "indexuser", "idx-token-SECRET-42"
PARTS = ["REPORT.md", "bundle.json", "machine.json", "inputs.json", "events.jsonl",
         "models/bundle-job-error/entry.json", "models/bundle-job-error/job.json",
         "models/bundle-job-error/preflight.json", "models/bundle-job-error/env.json", "models/bundle-job-error/lock.txt",
         "models/bundle-job-error/lock-with-sources.txt", "models/bundle-job-error/artifacts.json",
         "workers/1/worker.json", "workers/1/transcript.jsonl", "workers/1/stderr.log", "audio/1-song.wav"]


@pytest.fixture
def home(tmp_path: Path, dsp_env: Any) -> Path:  # noqa: F811
    home = tmp_path / "home"
    write_user_registry(home, "bundle-tests", [FAILING, WORKING, WITH_FILE])
    return home


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The test's own home and env store (so its env can be deleted), the session's lock cache and uv cache."""
    return {**home_sharing_session_envs(home), "STEMSEP_ENV_STORE": str(home / "envs"), TEST_HOOK_ENV: str(FAULT_HOOK),
            "COLUMNS": "200", **extra}


def separate(env: dict[str, str], cwd: Path, *args: Any) -> tuple[int, list[dict[str, Any]], str]:
    proc = run_cli("separate", *args, "--json", env=env, cwd=cwd, timeout=300)
    return proc.returncode, json_events(proc.stdout), proc.stderr


def archive(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def failed_run(home: Path, tmp_path: Path, **env: str) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """A separate that fails in the worker: its exit event, its events, its bundle."""
    song = write_audio(tmp_path / "song.wav")
    code, events, stderr = separate(cli_env(home, **env), tmp_path, song, "-m", FAILING["id"], "--include-audio")
    end = events[-1]
    assert code == 11 and end["type"] == "exit" and end["code"] == "E_WORKER_INTERNAL", stderr
    return end, events, Path(end["debug_bundle"])


def test_a_failed_job_writes_one_bundle_with_every_part(home: Path, tmp_path: Path) -> None:
    end, events, bundle = failed_run(home, tmp_path, HTTPS_PROXY=f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:9/")
    assert bundle.parent == home / "logs" / "debug-bundles" and bundle.suffix == ".zip"
    assert str(bundle) in end["hint"] and "stemsep debug replay" in end["hint"]
    files = archive(bundle)
    assert list(files)[0] == "REPORT.md" and set(PARTS) <= set(files), sorted(files)
    report = files["REPORT.md"].decode()
    assert "E_WORKER_INTERNAL" in report and "(exit 11)" in report and f"stemsep debug replay {bundle}" in report
    facts = json.loads(files["bundle.json"])
    assert facts["outcome"]["error"]["code"] == "E_WORKER_INTERNAL" and "SystemExit" in facts["outcome"]["traceback"]
    assert facts["command"][:2] == ["stemsep", "separate"] and facts["stemsep"]["version"]
    assert json.loads(files["models/bundle-job-error/entry.json"])["test_fault"] == {"fault": "exit"}
    assert json.loads(files["models/bundle-job-error/preflight.json"])["can_proceed"] is True
    env = json.loads(files["models/bundle-job-error/env.json"])
    ready = next(e for e in events if e["type"] == "env_ready")
    assert env["env_id"] == ready["env_id"] and env["versions"]["numpy"]
    assert env["request"]["runtime"] == "stemsep-legacy"
    lock = files["models/bundle-job-error/lock.txt"].decode()
    assert re.search(r"^numpy==\S+ \\$", lock, re.M) and "--hash=sha256:" in lock
    worker = json.loads(files["workers/1/worker.json"])
    assert worker["ready"]["versions"]["numpy"] == env["versions"]["numpy"] and worker["ready"]["device"] == "cpu"
    sent = [json.loads(line) for line in files["workers/1/transcript.jsonl"].splitlines()]
    kinds = [(m["from"], m["message"]["type"]) for m in sent]
    assert kinds[:2] == [("worker", "hello"), ("worker", "ready")] and ("host", "separate") in kinds
    assert kinds[-1] == ("worker", "error")
    song = tmp_path / "song.wav"
    (row,) = json.loads(files["inputs.json"])
    assert row["sha256"] == hashlib.sha256(song.read_bytes()).hexdigest() and row["metadata"]["channels"] == 2
    assert files["audio/1-song.wav"] == song.read_bytes()
    machine = json.loads(files["machine.json"])
    assert machine["config"]["log_dir"] == str(home / "logs") and machine["environment"]["HTTPS_PROXY"] == \
        "http://***@127.0.0.1:9/"
    for secret in (PROXY_USER, PROXY_PASSWORD):
        assert not [name for name, data in files.items() if secret.encode() in data]

    shown = run_cli("debug", "show", bundle, env=cli_env(home), cwd=tmp_path)
    assert shown.returncode == 0 and "E_WORKER_INTERNAL" in shown.stdout
    assert "workers/1/transcript.jsonl" in shown.stdout


def test_secrets_appear_nowhere_in_the_archive(home: Path, tmp_path: Path) -> None:
    """An index URL with a token in config.toml and proxy credentials in HTTPS_PROXY: the run fails resolving its
    env through them (uv's error quotes the index), and the bundle holds neither, in any file or form."""
    port = closed_port()
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text(
        f'index_url = "http://{INDEX_USER}:{INDEX_TOKEN}@127.0.0.1:{port}/simple"\n')
    song = write_audio(tmp_path / "song.wav")
    proxy = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}/"
    code, events, stderr = separate(cli_env(home, HTTPS_PROXY=proxy), tmp_path, song, "-m", FAILING["id"])
    end = events[-1]
    assert code == 5 and end["code"] == "E_ENV_RESOLVE", stderr
    bundle = Path(end["debug_bundle"])
    files = archive(bundle)
    machine = json.loads(files["machine.json"])
    assert machine["config"]["index_url"] == f"http://***@127.0.0.1:{port}/simple"  # it was there, masked
    assert json.loads(files["bundle.json"])["stopped_at"] == "planning"
    raw = bundle.read_bytes()
    for secret in (INDEX_USER, INDEX_TOKEN, PROXY_USER, PROXY_PASSWORD):
        assert not [name for name, data in files.items() if secret.encode() in data], secret
        assert secret.encode() not in raw


def test_replay_rebuilds_a_deleted_env_from_the_lock_and_reproduces_the_error(home: Path, tmp_path: Path) -> None:
    end, _events, bundle = failed_run(home, tmp_path)
    env_id = json.loads(archive(bundle)["models/bundle-job-error/env.json"])["env_id"]
    removed = run_cli("env", "rm", env_id, env=cli_env(home), cwd=tmp_path)
    assert removed.returncode == 0 and not (home / "envs" / env_id).exists(), removed.stderr

    proc = run_cli("debug", "replay", bundle, "--json", env=cli_env(home), cwd=tmp_path, timeout=300)
    events = json_events(proc.stdout)
    replay = next(e for e in events if e["type"] == "replay")
    assert replay["recorded"]["code"] == "E_WORKER_INTERNAL" and replay["differences"] == []
    assert [e["env_id"] for e in events if e["type"] == "env_ready"] == [env_id]
    assert [e["stage"] for e in events if e["type"] == "env"][-1] == "ready" and "sync" in [
        e["stage"] for e in events if e["type"] == "env"]  # built again, not found
    assert (home / "envs" / env_id).is_dir()
    assert proc.returncode == 11 and events[-1]["code"] == end["code"], proc.stderr


def test_a_lock_whose_pinned_version_does_not_exist_is_reported_as_such(home: Path, tmp_path: Path) -> None:
    _end, _events, bundle = failed_run(home, tmp_path)
    files = archive(bundle)
    lock_name = "models/bundle-job-error/lock.txt"
    name, version = re.search(r"^(soundfile)==(\S+) \\$", files[lock_name].decode(), re.M).groups()
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(edited, "w") as out:
        for member, data in files.items():
            out.writestr(member, data.replace(f"{name}=={version}".encode(), f"{name}==0.0.0.999".encode())
                         if member == lock_name else data)

    proc = run_cli("debug", "replay", edited, "--json", env=cli_env(home), cwd=tmp_path, timeout=300)
    events = json_events(proc.stdout)
    end = events[-1]
    assert proc.returncode == 4 and end["code"] == "E_REPLAY_LOCK_UNAVAILABLE", proc.stderr
    assert f"{name}==0.0.0.999" in end["message"] and "no version of" in end["why"]
    differs = [e for e in events if e["type"] == "difference"]
    assert [d["subject"] for d in differs] == ["bundle-job-error: env id"] and "not the lock" in differs[0]["note"]

    human = run_cli("debug", "replay", edited, env=cli_env(home), cwd=tmp_path, timeout=300)
    assert human.returncode == 4 and "error (E_REPLAY_LOCK_UNAVAILABLE)" in human.stderr


def test_debug_bundle_on_a_run_that_went_well(home: Path, tmp_path: Path) -> None:
    song = write_audio(tmp_path / "song.wav")
    code, events, stderr = separate(cli_env(home), tmp_path, song, "-m", WORKING["id"], "--debug-bundle")
    assert code == 0, stderr
    (told,) = [e for e in events if e["type"] == "debug_bundle"]
    files = archive(Path(told["path"]))
    assert json.loads(files["bundle.json"])["outcome"] == {"ok": True} and "audio/1-song.wav" not in files
    assert "Ran well" in files["REPORT.md"].decode()


def test_replay_refuses_a_model_file_whose_bytes_changed_unless_allowed(home: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "tiny.ckpt"
    ckpt.write_bytes(b"tiny checkpoint, as recorded")
    imported = run_cli("models", "import", WITH_FILE["id"], "--checkpoint", ckpt, "--copy", env=cli_env(home),
                       cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    song = write_audio(tmp_path / "song.wav")
    code, events, stderr = separate(cli_env(home), tmp_path, song, "-m", WITH_FILE["id"], "--debug-bundle")
    assert code == 0, stderr
    (told,) = [e for e in events if e["type"] == "debug_bundle"]
    bundle = Path(told["path"])
    recorded = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    (row,) = json.loads(archive(bundle)["models/bundle-with-file/artifacts.json"])
    assert row["sha256"] == recorded
    stored = home / "models" / WITH_FILE["id"] / "tiny.ckpt"
    stored.write_bytes(b"tiny checkpoint, changed since")
    here = hashlib.sha256(stored.read_bytes()).hexdigest()

    proc = run_cli("debug", "replay", bundle, "--json", env=cli_env(home), cwd=tmp_path, timeout=300)
    end = json_events(proc.stdout)[-1]
    assert proc.returncode == 8 and end["code"] == "E_REPLAY_ARTIFACT_MISMATCH", proc.stderr
    assert "tiny.ckpt" in end["message"] and recorded in end["message"] and here in end["message"]
    assert "--allow-mismatch" in end["hint"]
    assert not [e for e in json_events(proc.stdout) if e["type"] == "job"]  # refused before anything ran

    allowed = run_cli("debug", "replay", bundle, "--allow-mismatch", "--json", env=cli_env(home), cwd=tmp_path,
                      timeout=300)
    events = json_events(allowed.stdout)
    assert allowed.returncode == 0, allowed.stderr
    (differs,) = [e for e in events if e["type"] == "difference" and "artifact" in e["subject"]]
    assert differs == {"type": "difference", "subject": "bundle-with-file: artifact tiny.ckpt", "recorded": recorded,
                       "here": here, "note": "replaying anyway (--allow-mismatch)"}
    assert [e for e in events if e["type"] == "result"]  # it ran


def test_a_bundle_folder_keeps_the_newest_debug_bundle_keep(home: Path, tmp_path: Path) -> None:
    """Old bundles (made older by their mtime) go as a new one is written; 0 keeps every bundle."""
    import os

    folder = home / "logs" / "debug-bundles"
    folder.mkdir(parents=True)
    old = []
    for n in range(4):
        path = folder / f"old-{n}.zip"
        path.write_bytes(b"PK")
        os.utime(path, (1_000_000 + n, 1_000_000 + n))
        old.append(path)
    (folder / ".half-written.zip.tmp").write_bytes(b"")
    (folder / "replays").mkdir()
    song = write_audio(tmp_path / "song.wav")
    code, events, stderr = separate(cli_env(home, STEMSEP_DEBUG_BUNDLE_KEEP="2"), tmp_path, song, "-m",
                                    FAILING["id"])
    assert code == 11, stderr
    new = Path(events[-1]["debug_bundle"])
    assert sorted(folder.glob("*.zip")) == sorted([new, old[3]])  # the newest two: the new one and old-3
    assert (folder / ".half-written.zip.tmp").exists() and (folder / "replays").is_dir()

    code, events, stderr = separate(cli_env(home, STEMSEP_DEBUG_BUNDLE_KEEP="0"), tmp_path, song, "-m",
                                    FAILING["id"])
    assert code == 11 and len(list(folder.glob("*.zip"))) == 3, stderr
