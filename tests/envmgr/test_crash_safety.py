"""Crashes and concurrency: a builder SIGKILLed at any point leaves nothing that is ever used, and the
next request succeeds; four processes asking for the same cold env cause exactly one build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from envmgr.config import load_config
from envmgr.envs.manager import EnvManager
from envmgr.envs.request import request_for_model
from envmgr.envs.store import MARKER, Store
from tests.support.wait import poll

from .conftest import light_entry, spawn_ensure

pytestmark = pytest.mark.envs


@pytest.fixture(scope="module")
def request_json() -> str:
    """The light env's request, resolved once so every child builds (not resolves) it."""
    config = load_config()
    req = request_for_model(light_entry(), "stemsep-legacy", config)
    EnvManager(config).lock(req)
    return json.dumps(req.as_dict())


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def uv_children(pid: int) -> list[int]:
    def is_uv(child: int) -> bool:
        try:
            return "uv" in Path(f"/proc/{child}/comm").read_text(errors="ignore")
        except OSError:  # it exited since children() listed it
            return False
    return [c for c in children(pid) if is_uv(c)]


def read_until(proc: subprocess.Popen, marker: str, timeout: float = 300) -> list[str]:
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.strip() == marker:
            return lines
    raise AssertionError(f"child never printed {marker!r}: {lines} {proc.stderr.read() if proc.poll() is not None else ''}")


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def kill_during_sync(request_json: str, store: Path) -> bool:
    """SIGKILL the builder while `uv pip sync` runs. False when the sync finished before it was caught."""
    proc = spawn_ensure(request_json, store)
    read_until(proc, "STAGE sync")
    uv = poll(lambda: uv_children(proc.pid), timeout=10, interval=0.002)
    if uv:
        os.kill(uv[0], signal.SIGSTOP)  # freeze uv mid-install, then kill the whole builder group
    kill_group(proc)
    return uv is not None


@pytest.mark.parametrize("stage", ["sync", "health", "marker", "rename"])
def test_builder_killed_at_any_point_leaves_nothing_usable_and_next_request_succeeds(request_json, tmp_path, stage):
    store = tmp_path / "envs"
    if stage == "sync":
        for attempt in range(5):
            if kill_during_sync(request_json, store):
                break
            subprocess.run(["rm", "-rf", str(store)], check=True)
        else:
            pytest.fail("could not catch uv while it was syncing in 5 tries")
    else:
        proc = spawn_ensure(request_json, store, pause_at=stage)
        read_until(proc, "PAUSED")
        kill_group(proc)
    config = load_config(env_store=store, log_dir=tmp_path / "logs")
    manager = EnvManager(config)
    req = request_for_model(light_entry(), "stemsep-legacy", config)
    env_id = manager.env_id(req)
    leftovers = list((store / ".tmp").glob(f"{env_id}.*"))
    assert leftovers, "the killed build should have left its temp dir behind"
    assert manager.status(req) == "needs_build"  # the half-built env is not visible under its id
    env = manager.ensure(req)
    assert (env.path / MARKER).is_file()
    out = subprocess.run([str(env.python), "-c", "import numpy, soundfile; print('ok')"], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
    assert not list((store / ".tmp").glob(f"{env_id}.*"))  # the dead builder's leftovers were cleared
    assert [b["env_id"] for b in Store(store, tmp_path / "logs").builds()] == [env_id]


def test_four_processes_requesting_the_same_cold_env_build_it_once(request_json, tmp_path):
    store = tmp_path / "envs"
    procs = [spawn_ensure(request_json, store) for _ in range(4)]
    results = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    ids = {r[0].strip().splitlines()[-1] for r in results}
    assert len(ids) == 1 and next(iter(ids)).startswith("OK stemsep-legacy-")
    builds = Store(store, tmp_path / "logs").builds()
    assert len(builds) == 1, builds
    # The three that waited saw the finished env (no build stages after the lock).
    stage_lists = [[l for l in r[0].splitlines() if l.startswith("STAGE")] for r in results]
    assert sum("STAGE sync" in stages for stages in stage_lists) == 1
