"""One job per device by default: with two GPUs listed by nvidia-smi, `stemsep serve` runs two slots, each pinned
to its GPU, and each slot's worker process runs with CUDA_VISIBLE_DEVICES=<its index>; --concurrency overrides.

The limit of this test: the machine has no GPU, so `nvidia-smi` is a fake script on PATH that lists two. The
test proves what the server decides and what each worker process is given (read from /proc/<pid>/environ of
the real workers), not that a CUDA runtime then places the model on that GPU; that needs a machine with two
GPUs (the worker's `ready.device` would say `cuda` there)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.serve.server import Server
from tests.support.cli import home_sharing_session_envs, write_user_registry
from tests.worker.conftest import DEMO_MIX
from tests.worker.test_separate_cli import SLOW_MODEL

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/environ")

FAKE_SMI = """#!/bin/sh
# a fake nvidia-smi listing two GPUs, answering only the query stemsep serve makes
echo "0, Fake GPU A, 24576, 550.54"
echo "1, Fake GPU B, 24576, 550.54"
"""
# a second or so per job: both slots are busy at once
STEADY_MODEL = {**SLOW_MODEL, "id": "test-steady-fault", "test_fault": {"chunks": 10, "chunk_seconds": 0.1}}


def fake_smi_env(tmp_path: Path, script: str) -> dict[str, str]:
    """A home of its own (with the steady test model) and PATH starting with a fake nvidia-smi."""
    from envmgr.worker.process import TEST_HOOK_ENV
    from tests.worker.conftest import FAULT_HOOK

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(script)
    smi.chmod(0o755)
    home = tmp_path / "home"
    write_user_registry(home, "test-models", [STEADY_MODEL])
    return {**home_sharing_session_envs(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            TEST_HOOK_ENV: str(FAULT_HOOK)}


def worker_cuda_env(pid: int) -> str | None:
    """CUDA_VISIBLE_DEVICES as the live worker process has it (None: not set)."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [e.split(b"=", 1)[1].decode() for e in entries if e.startswith(b"CUDA_VISIBLE_DEVICES=")]
    return found[0] if found else None


def first_worker_event(server: Server, job_id: str) -> dict[str, Any]:
    """The job's `worker` event, read from its live event stream (left as soon as it comes)."""
    for event in server.events(job_id):
        if event["type"] == "worker":
            return event
    raise AssertionError(f"job {job_id} ended without a worker event")


def test_two_gpus_two_pinned_slots_each_worker_its_own_gpu(tmp_path: Path, dsp_env: Any) -> None:
    env = fake_smi_env(tmp_path, FAKE_SMI)
    server = Server(env, cwd=tmp_path)
    try:
        health = server.http.get("/v1/health").json()
        assert [(s["slot"], s["gpu"]) for s in health["slots"]] == [(0, 0), (1, 1)]
        ids = [server.submit(inputs=[str(DEMO_MIX)], models=[STEADY_MODEL["id"]]) for _ in range(2)]
        workers = [first_worker_event(server, job_id) for job_id in ids]
        assert sorted(w["gpu"] for w in workers) == [0, 1]  # the job's device facts name its GPU
        assert workers[0]["pid"] != workers[1]["pid"]  # one slot would have run both on its one warm worker
        for worker in workers:  # and the worker process itself has it (it stays warm after the job)
            assert worker_cuda_env(worker["pid"]) == str(worker["gpu"])
        for job_id in ids:
            assert server.wait_final(job_id)["state"] == "completed"
    finally:
        server.stop()

    again = Server(env, "--concurrency", "3", cwd=tmp_path)  # the flag overrides; slots take the GPUs in turn
    try:
        assert [(s["slot"], s["gpu"]) for s in again.http.get("/v1/health").json()["slots"]] == [(0, 0), (1, 1), (2, 0)]
    finally:
        again.stop()

    narrowed = Server({**env, "CUDA_VISIBLE_DEVICES": "1"}, cwd=tmp_path)  # the user's own limit is kept
    try:
        assert [(s["slot"], s["gpu"]) for s in narrowed.http.get("/v1/health").json()["slots"]] == [(0, 1)]
    finally:
        narrowed.stop()


def test_no_gpu_one_unpinned_slot(tmp_path: Path, dsp_env: Any) -> None:
    server = Server(fake_smi_env(tmp_path, "#!/bin/sh\nexit 0\n"), cwd=tmp_path)  # nvidia-smi lists no GPU
    try:
        assert server.http.get("/v1/health").json()["slots"] == [{"slot": 0, "gpu": None, "job": None}]
        job = server.wait_final(server.submit(inputs=[str(DEMO_MIX)]))
        assert job["state"] == "completed"
        (worker,) = [e for e in server.events(job["id"]) if e["type"] == "worker"]
        assert worker["gpu"] is None
    finally:
        server.stop()
