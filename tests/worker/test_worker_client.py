"""The host client against real worker processes in a real uv-built env: the normal path, isolation,
persistence across a batch, and every fault the issue names (each with a clear error, the right exit
code, and nothing left in the output dir)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from envmgr.worker.client import Cancelled, JobFailed, Timeouts, WorkerClient, WorkerError, WorkerTimeout
from envmgr.worker.code_copy import WorkerCode
from envmgr.worker.process import TEST_HOOK_ENV, worker_env
from registry.errors import ExitCode
from runtimes import protocol as p
from tests.worker.conftest import DEMO_MIX, FAULT_HOOK, make_job


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "short.wav"
    t = np.arange(44100) / 44100
    sf.write(path, np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 330 * t)], axis=1) * 0.3, 44100)
    return path


@pytest.fixture
def start(dsp_env: Any, worker_code: WorkerCode, monkeypatch: pytest.MonkeyPatch):
    """Start workers in the DSP env with the fault hook; every one is stopped at the end."""
    monkeypatch.setenv(TEST_HOOK_ENV, str(FAULT_HOOK))
    clients: list[WorkerClient] = []

    def _start(**timeouts: float) -> WorkerClient:
        client = WorkerClient(dsp_env.python, "stemsep-legacy", worker_code, env_id=dsp_env.id,
                              timeouts=Timeouts(**{"silence": 10.0, "exit_grace": 2.0, **timeouts}))
        clients.append(client)
        client.start()
        return client

    yield _start
    for client in clients:
        client.kill()


def assert_empty(out: Path) -> None:
    left = sorted(x.name for x in out.iterdir()) if out.exists() else []
    assert left == [], f"left behind in the output dir: {left}"


def test_end_to_end_in_managed_env(start: Any, dsp_env: Any, tmp_path: Path) -> None:
    client = start()
    assert client.hello["env_id"] == dsp_env.id and client.hello["protocol"] == p.PROTOCOL_VERSION
    assert client.hello["python"] == dsp_env.versions["python"]
    assert client.ready["versions"]["numpy"] == dsp_env.versions["numpy"]
    assert client.ready["device"] == "cpu"
    events: list[dict[str, Any]] = []
    result = client.run(make_job(DEMO_MIX, tmp_path), events.append)
    info = sf.info(str(DEMO_MIX))
    stems = {s["name"]: s for s in result["stems"]}
    assert set(stems) == {"vocals", "instrumental"}
    for stem in stems.values():
        out = sf.info(stem["path"])
        assert (out.format, out.subtype) == ("WAV", "FLOAT")
        assert (out.frames, out.samplerate, out.channels) == (info.frames, info.samplerate, info.channels)
        assert (stem["frames"], stem["sample_rate"]) == (info.frames, info.samplerate)
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(Path(s["path"]).name for s in stems.values())
    # Progress: per stage in order, never backwards, each stage ends at done == total; stems, then result.
    kinds = [e["type"] for e in events]
    assert kinds[-3:] == ["stem", "stem", "result"] and set(kinds[:-3]) == {"progress"}
    stages: dict[str, list[tuple[float, float]]] = {}
    for e in events[:-3]:
        stages.setdefault(e["stage"], []).append((e["done"], e["total"]))
    assert list(stages) == ["read", "separate", "write"]
    for seq in stages.values():
        assert [d for d, _ in seq] == sorted(d for d, _ in seq)
        assert seq[-1][0] == seq[-1][1]
    assert len(stages["separate"]) > 1  # chunked


def test_worker_sees_only_its_env_and_the_worker_code(start: Any, worker_code: WorkerCode, tmp_path: Path,
                                                     short_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host_site = next(x for x in sys.path if x.endswith("site-packages"))
    monkeypatch.setenv("PYTHONPATH", host_site)  # a leaking host would hand these to the worker
    monkeypatch.setenv("PYTHONHOME", "/nonexistent")
    monkeypatch.chdir(Path(__file__).parents[2])  # the repo: its runtimes/ must not shadow the copy
    client = start()
    result = client.run(make_job(short_wav, tmp_path, model_type="test_fault", settings={"fault": "probe_env"}))
    seen = json.loads(result["warnings"][0])
    assert seen["typer"] is False, "the worker could import a host package"
    assert host_site not in seen["sys_path"]
    assert Path(seen["runtimes"]).is_relative_to(worker_code.root)
    assert "PYTHONHOME" not in seen["environ"] and "VIRTUAL_ENV" not in seen["environ"]


def test_one_worker_serves_a_batch_and_survives_job_errors(start: Any, tmp_path: Path, short_wav: Path) -> None:
    client = start()
    pid = client.pid
    client.run(make_job(short_wav, tmp_path / "a"))
    with pytest.raises(JobFailed) as err:  # a library calling sys.exit() inside a job
        client.run(make_job(short_wav, tmp_path / "b", model_type="test_fault", settings={"fault": "exit"}))
    assert err.value.code == p.E_WORKER_INTERNAL and err.value.exit_code == ExitCode.JOB
    assert "SystemExit" in err.value.message and "SystemExit" in (err.value.traceback or "")
    assert_empty(tmp_path / "b")
    with pytest.raises(JobFailed) as err:
        client.run(make_job(tmp_path / "missing.wav", tmp_path / "c"))
    assert err.value.code == p.E_INPUT_NOT_FOUND and err.value.exit_code == ExitCode.INPUT
    client.run(make_job(short_wav, tmp_path / "d"))
    assert client.pid == pid and client.alive
    client.close()
    assert not client.alive


def test_worker_killed_mid_job(start: Any, tmp_path: Path, short_wav: Path) -> None:
    client = start()

    def kill_on_first_chunk(event: dict[str, Any]) -> None:
        if event.get("stage") == "separate":
            os.kill(client.pid, signal.SIGKILL)

    job = make_job(short_wav, tmp_path, model_type="test_fault", settings={"chunks": 20, "chunk_seconds": 0.2})
    with pytest.raises(WorkerError) as err:
        client.run(job, kill_on_first_chunk)
    assert err.value.code == "E_WORKER_CRASHED" and err.value.exit_code == ExitCode.WORKER
    assert "SIGKILL" in err.value.message and "memory" in err.value.hint
    assert_empty(tmp_path)


def test_frozen_worker_hits_the_silence_timeout(start: Any, tmp_path: Path, short_wav: Path) -> None:
    client = start(silence=2.0, heartbeat=0.3)
    with pytest.raises(WorkerTimeout) as err:
        client.run(make_job(short_wav, tmp_path, model_type="test_fault", settings={"fault": "freeze"}))
    assert err.value.code == "E_WORKER_SILENT" and err.value.exit_code == ExitCode.TIMEOUT
    assert "silent for 2 s" in err.value.message
    assert not client.alive
    assert_empty(tmp_path)


def test_job_timeout_while_heartbeats_continue(start: Any, tmp_path: Path, short_wav: Path) -> None:
    client = start(silence=1.0, heartbeat=0.2, job=2.5)
    with pytest.raises(WorkerTimeout) as err:
        client.run(make_job(short_wav, tmp_path, model_type="test_fault", settings={"fault": "sleep"}))
    assert err.value.code == "E_JOB_TIMEOUT" and err.value.exit_code == ExitCode.TIMEOUT
    assert not client.alive
    assert_empty(tmp_path)


def test_garbage_on_fd1_from_c_does_not_corrupt_the_protocol(start: Any, tmp_path: Path, short_wav: Path) -> None:
    client = start()
    result = client.run(make_job(short_wav, tmp_path, model_type="test_fault", settings={"fault": "c_garbage"}))
    assert len(result["stems"]) == 2
    tail = client.stderr_tail
    assert "GARBAGE from fd 1" in tail and "garbage from C puts()" in tail and "garbage from print()" in tail


@pytest.mark.parametrize("fault, code", [
    ("oversized", p.E_PROTOCOL_LINE_TOO_LONG),
    ("malformed", p.E_PROTOCOL_MALFORMED),
    ("unknown_type", p.E_PROTOCOL_UNKNOWN_TYPE),
])
def test_broken_protocol_lines_stop_the_worker_with_a_clear_error(start: Any, tmp_path: Path, short_wav: Path,
                                                                  fault: str, code: str) -> None:
    client = start()
    with pytest.raises(WorkerError) as err:
        client.run(make_job(short_wav, tmp_path, model_type="test_fault", settings={"fault": fault, "chunks": 50,
                                                                                    "chunk_seconds": 0.1}))
    assert err.value.code == code and err.value.exit_code == ExitCode.WORKER
    assert "broke the protocol" in err.value.message
    assert not client.alive
    assert_empty(tmp_path)


def test_ctrl_c_cancels_between_chunks(start: Any, tmp_path: Path, short_wav: Path, host_stop_signals: None) -> None:
    client = start()

    def ctrl_c(event: dict[str, Any]) -> None:
        if event.get("stage") == "separate":
            os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT to this (host) process

    job = make_job(short_wav, tmp_path, model_type="test_fault", settings={"chunks": 50, "chunk_seconds": 0.1})
    with pytest.raises(Cancelled) as err:
        client.run(job, ctrl_c)
    assert err.value.exit_code == ExitCode.CANCELLED
    assert client.alive, "a worker that stopped cleanly between chunks stays usable"
    assert_empty(tmp_path)
    client.run(make_job(short_wav, tmp_path / "next"))


def _code_copy(worker_code: WorkerCode, tmp_path: Path, version: int) -> WorkerCode:
    root = tmp_path / "code"
    shutil.copytree(worker_code.root, root)
    proto = root / "runtimes" / "protocol.py"
    proto.write_text(proto.read_text().replace("PROTOCOL_VERSION = 1\n", f"PROTOCOL_VERSION = {version}\n"))
    return WorkerCode(root, "stale")


def test_protocol_version_mismatch_names_both_versions(dsp_env: Any, worker_code: WorkerCode, tmp_path: Path) -> None:
    stale = WorkerClient(dsp_env.python, "stemsep-legacy", _code_copy(worker_code, tmp_path, 7))
    with pytest.raises(WorkerError) as err:
        stale.start()
    assert err.value.code == p.E_PROTOCOL_VERSION and err.value.exit_code == ExitCode.WORKER
    assert f"host speaks {p.PROTOCOL_VERSION}, worker speaks 7" in err.value.message
    assert not stale.alive
    newer_host = WorkerClient(dsp_env.python, "stemsep-legacy", worker_code, protocol_version=9)
    with pytest.raises(WorkerError) as err:
        newer_host.start()
    assert f"host speaks 9, worker speaks {p.PROTOCOL_VERSION}" in err.value.message


def test_unknown_runtime_fails_at_start(dsp_env: Any, worker_code: WorkerCode) -> None:
    client = WorkerClient(dsp_env.python, "no-such-runtime", worker_code)
    with pytest.raises(WorkerError) as err:
        client.start()
    assert err.value.code == p.E_RUNTIME_UNKNOWN and "stemsep-legacy" in err.value.hint


def test_worker_answers_bad_host_lines_and_keeps_working(dsp_env: Any, worker_code: WorkerCode, tmp_path: Path,
                                                         short_wav: Path) -> None:
    """Raw stdio: whatever the host sends, the worker answers with protocol errors and never crashes."""
    job = {"type": "separate", **make_job(short_wav, tmp_path)}
    lines = [b"not json\n", b"\xff\xfe\n", b"[1, 2]\n", b'{"type": "dance"}\n', b'{"type": "cancel"}\n',
             b'{"type": "separate", "job": 5}\n', b"x" * (p.MAX_LINE_BYTES + 10) + b"\n", p.encode(job)]
    proc = subprocess.run([str(dsp_env.python), "-s", "-m", "runtimes.worker", "--runtime", "stemsep-legacy",
                           "--host-protocol", str(p.PROTOCOL_VERSION)], input=b"".join(lines),
                          capture_output=True, cwd=worker_code.root, env=worker_env(worker_code.root), timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    out = [p.decode(line) for line in proc.stdout.splitlines(keepends=True)]
    errors = [m["code"] for m in out if m["type"] == "error"]
    assert errors == [p.E_PROTOCOL_MALFORMED, p.E_PROTOCOL_MALFORMED, p.E_PROTOCOL_MALFORMED,
                      p.E_PROTOCOL_UNKNOWN_TYPE, p.E_PROTOCOL_BAD_FIELD, p.E_PROTOCOL_BAD_FIELD,
                      p.E_PROTOCOL_LINE_TOO_LONG]
    assert out[-1]["type"] == "result" and out[-1]["job"] == job["job"]


def test_ready_timeout_when_the_runtime_imports_hang(dsp_env: Any, worker_code: WorkerCode, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    hook = tmp_path / "slow_import_hook.py"
    hook.write_text("import time\ntime.sleep(60)\n")  # runs between hello and ready, like a stuck `import torch`
    monkeypatch.setenv(TEST_HOOK_ENV, str(hook))
    client = WorkerClient(dsp_env.python, "stemsep-legacy", worker_code, timeouts=Timeouts(ready=1.5, exit_grace=1.0))
    with pytest.raises(WorkerTimeout) as err:
        client.start()
    assert err.value.code == "E_HANDSHAKE_TIMEOUT" and "ready" in err.value.message
    assert err.value.exit_code == ExitCode.TIMEOUT
    assert client.hello is not None and not client.alive


def test_ctrl_c_on_a_job_stuck_in_a_chunk_escalates_to_terminate(start: Any, tmp_path: Path, short_wav: Path,
                                                                  host_stop_signals: None) -> None:
    client = start(cancel_grace=1.0)

    def ctrl_c(event: dict[str, Any]) -> None:
        if event.get("stage") == "separate":
            os.kill(os.getpid(), signal.SIGINT)

    job = make_job(short_wav, tmp_path, model_type="test_fault", settings={"fault": "sleep"})
    with pytest.raises(Cancelled) as err:
        client.run(job, ctrl_c)  # the chunk never ends, so `cancel` cannot be honoured: SIGTERM follows
    assert err.value.exit_code == ExitCode.CANCELLED
    assert not client.alive
    assert_empty(tmp_path)
