"""The early worker (envmgr.worker.prewarm) through real `stemsep separate` processes: the second run with the
same model arguments adopts the worker started before planning and gives the same stems; an early
worker the plan does not want is stopped (no process left); nothing outside our env store is ever
started from a remembered command; `prewarm = false` turns it off."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.support.cli import json_events, run_cli, spawn_cli
from tests.worker.conftest import DEMO_MIX
from tests.worker.test_separate_cli import cli_env  # noqa: F401 - the fixture: a CLI home with the session's envs


@pytest.fixture()
def env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:  # noqa: F811
    """A cache dir of its own, so remembered workers start empty."""
    return dict(cli_env, STEMSEP_CACHE_DIR=str(tmp_path / "cache"))


def separate(env: dict[str, str], out: Path, *args: str) -> list[dict[str, Any]]:
    proc = run_cli("separate", "--json", DEMO_MIX, "-o", out, *args, env=env, timeout=300, cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return json_events(proc.stdout)


def worker_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    [event] = [e for e in events if e["type"] == "worker"]
    return event


def hint_file(env: dict[str, str]) -> Path:
    [path] = (Path(env["STEMSEP_CACHE_DIR"]) / "prewarm").glob("*.json")
    return path


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains `marker` (Linux /proc)."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit():
            try:
                if marker.encode() in (proc_dir / "cmdline").read_bytes():
                    found.append(int(proc_dir.name))
            except OSError:
                continue
    return found


def test_second_run_adopts_the_early_worker_and_gives_the_same_stems(env: dict[str, str], tmp_path: Path) -> None:
    first = separate(env, tmp_path / "a")
    assert worker_event(first)["prestarted"] is False  # nothing remembered yet
    assert worker_event(first)["prewarm"] == "none"
    hint = json.loads(hint_file(env).read_text())
    assert hint["cmd"][1:4] == ["-s", "-m", "runtimes.worker"] and "--env-id" in hint["cmd"]
    second = separate(env, tmp_path / "b")
    assert worker_event(second)["prestarted"] is True
    assert worker_event(second)["prewarm"] == "adopted"
    stems = {e["name"]: Path(e["path"]) for e in first if e["type"] == "stem"}
    again = {e["name"]: Path(e["path"]) for e in second if e["type"] == "stem"}
    assert set(stems) == set(again) == {"vocals", "instrumental"}
    for name in stems:  # same samples (the files' headers carry a date)
        assert np.array_equal(sf.read(str(stems[name]))[0], sf.read(str(again[name]))[0])
    # Other model arguments are remembered separately: -m with the default's id starts cold once.
    third = separate(env, tmp_path / "c", "-m", "builtin-center-split")
    assert worker_event(third)["prestarted"] is False
    assert len(list((Path(env["STEMSEP_CACHE_DIR"]) / "prewarm").glob("*.json"))) == 2


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_an_early_worker_the_plan_does_not_want_is_stopped(env: dict[str, str], tmp_path: Path) -> None:
    separate(env, tmp_path / "a")
    path = hint_file(env)
    hint = json.loads(path.read_text())
    marker = f"prewarm-test-{uuid.uuid4().hex[:8]}"
    cmd = hint["cmd"]
    cmd[cmd.index("--env-id") + 1] = marker  # a real worker, but not the one the plan starts
    path.write_text(json.dumps(hint))
    events = []
    proc = spawn_cli("separate", "--json", DEMO_MIX, "-o", tmp_path / "b", env=env, cwd=tmp_path, stderr=None)
    assert proc.stdout is not None
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "worker":  # the plan's worker runs; the early one is already gone
            assert processes_with(marker) == []
    assert proc.wait(timeout=60) == 0
    # The host's own word that the early worker was started and then killed unused (when the test would
    # look at /proc during planning is up to the scheduler, so it does not).
    assert worker_event(events)["prestarted"] is False
    assert worker_event(events)["prewarm"] == "stopped"
    assert processes_with(marker) == []
    assert marker not in path.read_text()  # the worker actually used is remembered instead


def test_nothing_outside_the_env_store_is_started_and_prewarm_can_be_off(env: dict[str, str], tmp_path: Path) -> None:
    separate(env, tmp_path / "a")
    path = hint_file(env)
    good = json.loads(path.read_text())
    # A remembered command whose interpreter is not one of our envs' never runs, even shaped like a worker.
    trap = Path(env["STEMSEP_CACHE_DIR"]) / "worker-code" / "trap"  # passes the code-dir check on purpose
    (trap / "runtimes").mkdir(parents=True)
    ran = tmp_path / "ran.txt"
    (trap / "runtimes" / "__init__.py").write_text("")
    (trap / "runtimes" / "worker.py").write_text(f"open({str(ran)!r}, 'w').write('ran')\n")
    path.write_text(json.dumps({**good, "cmd": [sys.executable, *good["cmd"][1:]], "cwd": str(trap)}))
    assert worker_event(separate(env, tmp_path / "b"))["prewarm"] == "none"  # not even started
    assert not ran.exists()
    # Off: even the right command is not started early.
    assert json.loads(path.read_text()) == good  # the run remembered its real worker again
    off = dict(env, STEMSEP_PREWARM="false")
    assert worker_event(separate(off, tmp_path / "c"))["prewarm"] == "none"
    assert worker_event(separate(env, tmp_path / "d"))["prestarted"] is True


def test_a_remembered_env_that_is_gone_costs_nothing(env: dict[str, str], tmp_path: Path) -> None:
    separate(env, tmp_path / "a")
    path = hint_file(env)
    hint = json.loads(path.read_text())
    store = Path(hint["cmd"][0]).parents[2]  # <env store>/<env id>/bin/python
    hint["cmd"][0] = str(store / "stemsep-legacy-0000000000000000" / "bin" / "python")
    path.write_text(json.dumps(hint))
    assert worker_event(separate(env, tmp_path / "b"))["prewarm"] == "none"  # the spawn failed: nothing started
    assert os.path.exists(json.loads(path.read_text())["cmd"][0])
