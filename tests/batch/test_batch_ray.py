"""`stemsep batch` on a real local Ray cluster (two raylets started by ray's cluster utilities, once for the
module) against `--engine local`: the same files byte for byte, each input exactly once; an actor killed with
SIGKILL mid-batch is restarted by Ray and its inputs re-run with no duplicate or partial file; a driver killed
mid-batch leaves a ledger from which re-submission runs only the rest; the model's env is never touched by Ray.

Twenty items: ten short inputs over two models (the built-in DSP split and a user-registry copy of it under
another id: both run on stemsep-legacy, the one runtime cheap enough to build here; the torch runtimes take
minutes to build on CI). FLAC output: libsndfile stamps float WAVs with their write time, so only FLAC files
can be compared as bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import home_sharing_session_envs, json_events, run_cli, spawn_cli, write_user_registry
from tests.worker.conftest import DEMO_MIX, dsp_env  # noqa: F401  (fixture, registered by import)

ray = pytest.importorskip("ray", reason="the ray extra: pip install -e '.[ray]'")
sf = pytest.importorskip("soundfile")

pytestmark = pytest.mark.envs
MODELS = ("builtin-center-split", "batch-test-split")
N_INPUTS = 10


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node and a second raylet on this machine, one CPU each; its GCS address."""
    from ray.cluster_utils import Cluster

    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    made.add_node(num_cpus=1)
    made.wait_for_nodes()
    try:
        yield made.address
    finally:
        made.shutdown()


@pytest.fixture(scope="module")
def batch_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A CLI home sharing the session's envs, with the second model in its user registry."""
    home = tmp_path_factory.mktemp("batch-home")
    packaged = json.loads((Path(__file__).resolve().parents[2] / "registry" / "models.json").read_text())
    entry = next(m for m in packaged["models"] if m["id"] == "builtin-center-split")
    write_user_registry(home, "batch", [{**entry, "id": MODELS[1], "name": "Batch test split"}])
    return home, home_sharing_session_envs(home)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("batch-inputs")
    audio, rate = sf.read(str(DEMO_MIX), frames=int(1.5 * 44100) + N_INPUTS * 2000, dtype="float32")
    lines = []
    for i in range(N_INPUTS):
        sf.write(str(folder / f"in{i:02d}.flac"), audio[i * 2000: i * 2000 + int(1.5 * 44100)], rate)
        lines += [json.dumps({"input": f"in{i:02d}.flac", "model": model}) for model in MODELS]
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def batch(batch_home: tuple[Path, dict[str, str]], *args: Any) -> subprocess.CompletedProcess[str]:
    home, env = batch_home
    return run_cli("batch", *args, "--format", "flac", "--json", env=env, cwd=home, timeout=300)


@pytest.fixture(scope="module")
def reference(batch_home: tuple[Path, dict[str, str]], manifest: Path, dsp_env: Any,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What `--engine local` makes: stem file name -> bytes."""
    out = tmp_path_factory.mktemp("local") / "out"
    proc = batch(batch_home, manifest, "-o", out, "--engine", "local")
    assert proc.returncode == 0, proc.stderr
    files = stems_in(out)
    assert len(files) == N_INPUTS * len(MODELS) * 2
    return files


def spawn_batch(batch_home: tuple[Path, dict[str, str]], manifest: Path, out: Path,
                cluster: str) -> subprocess.Popen[str]:
    home, env = batch_home
    return spawn_cli("batch", manifest, "-o", out, "--engine", "ray", "--address", cluster, "--format", "flac",
                     "--json", env=env, cwd=home)


def stems_in(out: Path) -> dict[str, bytes]:
    """Every entry of the output dir but the ledger folder; a staging dir or temp file fails the test."""
    found = {}
    for entry in out.iterdir():
        if entry.name == ".stemsep-batch":
            continue
        assert entry.is_file() and not entry.name.startswith("."), f"{entry} is not a whole stem"
        found[entry.name] = entry.read_bytes()
    return found


def done_records(out: Path) -> list[dict[str, Any]]:
    lines = (out / ".stemsep-batch" / "ledger.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["status"] == "done"]


def lock_identity(env: Any) -> tuple[str, str]:
    return env.id, hashlib.sha256((Path(env.path) / "stemsep-lock.txt").read_bytes()).hexdigest()


def test_ray_makes_the_local_engine_s_files_each_once_and_leaves_the_env_alone(
        batch_home: tuple[Path, dict[str, str]], manifest: Path, reference: dict[str, bytes], cluster: str,
        dsp_env: Any, tmp_path: Path) -> None:
    before = lock_identity(dsp_env)
    out = tmp_path / "out"
    proc = batch(batch_home, manifest, "-o", out, "--engine", "ray", "--address", cluster)
    assert proc.returncode == 0, proc.stderr
    events = json_events(proc.stdout)
    items = [e for e in events if e["type"] == "item"]
    assert sorted((e["input"], e["model"]) for e in items) == sorted(
        (str(manifest.parent / f"in{i:02d}.flac"), m) for i in range(N_INPUTS) for m in MODELS)
    assert all(e["status"] == "done" for e in items)
    assert len({e["node"] for e in items}) == 2  # spread over both raylets
    assert stems_in(out) == reference  # the same names and the same bytes
    assert len(done_records(out)) == len(items)  # each input recorded once
    assert lock_identity(dsp_env) == before  # same env id, same lock
    probe = subprocess.run([str(dsp_env.python), "-c", "import ray"], capture_output=True)
    assert probe.returncode != 0  # Ray runs in the host's environment, never in the model's


def test_an_actor_killed_mid_batch_is_restarted_and_its_inputs_rerun(
        batch_home: tuple[Path, dict[str, str]], manifest: Path, reference: dict[str, bytes], cluster: str,
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = spawn_batch(batch_home, manifest, out, cluster)
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    actors: dict[int, dict[str, Any]] = {}
    killed = None
    with proc:  # a failing test must not leave a driver holding the cluster's CPUs
        try:
            for line in proc.stdout:
                event = json.loads(line)
                events.append(event)
                if event["type"] == "actor":
                    actors[event["pid"]] = event
                if event["type"] == "item" and killed is None:
                    killed = event["pid"]  # the actor that has just finished one still has inputs queued
                    os.kill(killed, signal.SIGKILL)
            _, stderr = proc.communicate(timeout=300)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert killed in actors
    after = events[next(i for i, e in enumerate(events) if e["type"] == "item") + 1:]
    reruns = [e for e in after if e["type"] == "item" and e["node"] == actors[killed]["node"]
              and e["model"] == actors[killed]["model"] and e["pid"] != killed]
    assert reruns, "no input ran on the restarted actor"
    items = [e for e in events if e["type"] == "item"]
    assert len(items) == N_INPUTS * len(MODELS) and all(e["status"] == "done" for e in items)
    assert len({(e["input"], e["model"]) for e in items}) == len(items)  # no input reported twice
    assert stems_in(out) == reference  # no duplicate, no half file, no staging dir left


def test_resubmitting_after_a_killed_driver_runs_only_what_was_left(
        batch_home: tuple[Path, dict[str, str]], manifest: Path, reference: dict[str, bytes], cluster: str,
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = spawn_batch(batch_home, manifest, out, cluster)
    assert proc.stdout is not None
    seen = 0
    with proc:
        try:
            for line in proc.stdout:
                if json.loads(line)["type"] == "item":
                    seen += 1
                    if seen == 5:
                        break
        finally:
            proc.kill()
        proc.communicate(timeout=60)
    done_before = {(r["input"], r["model"]) for r in done_records(out)}
    assert 5 <= len(done_before) < N_INPUTS * len(MODELS)
    again = batch(batch_home, manifest, "-o", out, "--engine", "ray", "--address", cluster)
    assert again.returncode == 0, again.stderr
    events = json_events(again.stdout)
    summary = next(e for e in events if e["type"] == "batch")
    assert summary["already_done"] == len(done_before)
    ran = {(e["input"], e["model"]) for e in events if e["type"] == "item"}
    assert not ran & done_before and len(ran) + len(done_before) == N_INPUTS * len(MODELS)
    assert stems_in(out) == reference


def test_collect_returns_the_stems_to_the_driver(batch_home: tuple[Path, dict[str, str]], manifest: Path,
                                                 reference: dict[str, bytes], cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = batch(batch_home, manifest, "-o", out, "--engine", "ray", "--address", cluster, "--collect")
    assert proc.returncode == 0, proc.stderr
    assert stems_in(out) == reference
    assert {p for r in done_records(out) for p in r["stems"]} == {str(out / name) for name in reference}

