"""`stemsep batch` on a real local Ray cluster (two raylets started by ray's cluster utilities, once for the
module) against `--engine local`: the same files byte for byte, each input exactly once; an actor killed with
SIGKILL mid-batch is restarted by Ray and its inputs re-run with no duplicate or partial file; a driver killed
mid-batch leaves a ledger from which re-submission runs only the rest; the model's env is never touched by Ray;
recipe items make `stemsep run`'s bytes on both engines, also when a recipe actor is SIGKILLed mid-call.

Twenty items over two models from two runtimes: fourteen short inputs through the built-in DSP split
(stemsep-legacy's light env) and six through a tiny real BS-Roformer on msst (the session's msst env and tiny
checkpoint that tests/runtimes builds, its files served by a local HTTP server through a user registry, so CI
builds no extra env). FLAC output: libsndfile stamps float WAVs with their write time, so only FLAC files can be
compared as bytes. The torch model's stems are compared as bytes too: with one thread (OMP_NUM_THREADS=1 here;
Ray gives a 1-CPU actor the same) torch's CPU kernels are deterministic across processes, so the local worker and
each Ray actor's worker make the same samples.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.recipes.conftest import recipe, sep, write_recipes
from tests.runtimes.conftest import (  # noqa: F401  (fixtures, registered by import)
    model_entry,
    msst_env,
    single_threaded_torch,
    tiny_bs,
    workdir,
)
from tests.runtimes.test_side_by_side import served, server  # noqa: F401  (fixture)
from tests.support.cli import (
    home_sharing_session_envs,
    json_events,
    run_cli,
    spawn_cli,
    write_user_registry,
)
from tests.worker.conftest import DEMO_MIX, dsp_env  # noqa: F401  (fixture, registered by import)

ray = pytest.importorskip("ray", reason="the ray extra: pip install -e '.[ray]'")
sf = pytest.importorskip("soundfile")

pytestmark = pytest.mark.envs
DSP, TORCH = "builtin-center-split", "batch-test-roformer"
INPUTS = {DSP: 14, TORCH: 6}  # input count per model: 20 items; the torch model takes seconds per input
N_INPUTS = max(INPUTS.values())
N_ITEMS = sum(INPUTS.values())
N_STEMS = 2  # both models make vocals and other
# A user recipe of the DSP model and audio operations (the light env only), and one whose preflight blocks.
LIGHT = recipe(sep("split", DSP), {"id": "hp", "op": "high_pass", "inputs": ["split.vocals"],
                                   "params": {"cutoff_hz": 120}},
               {"id": "rest", "op": "invert", "inputs": ["mix", "hp.vocals"]},
               outputs={"vocals": "hp.vocals", "rest": "rest.rest"}, recipe_id="batch_light")
BLOCKED = recipe(sep("split", "no-such-model"), outputs={"vocals": "split.vocals"}, recipe_id="batch_blocked")
N_RECIPE = 6


@pytest.fixture(scope="module")
def cluster(stemsep_home: Path, dsp_env: Any, msst_env: Any) -> Iterator[str]:  # noqa: F811
    """A head node and a second raylet on this machine, one CPU each; its GCS address. Started after the session's
    home and envs exist: the actors inherit the raylets' environment (that home, OMP_NUM_THREADS=1)."""
    from ray.cluster_utils import Cluster

    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    made.add_node(num_cpus=1)
    made.wait_for_nodes()
    try:
        yield made.address
    finally:
        made.shutdown()


@pytest.fixture(scope="module")
def batch_home(tmp_path_factory: pytest.TempPathFactory, server: Any,  # noqa: F811
               tiny_bs: tuple[Path, Path]) -> tuple[Path, dict[str, str]]:  # noqa: F811
    """A CLI home sharing the session's envs, with the torch model in its user registry (files on `server`)."""
    home = tmp_path_factory.mktemp("batch-home")
    config, ckpt = tiny_bs
    entry = model_entry(TORCH, ["msst"])
    entry["artifacts"] = {"primary": served(server, TORCH, ckpt, "checkpoint"),
                          "config": served(server, TORCH, config, "config")}
    write_user_registry(home, "batch", [entry])
    return home, {**home_sharing_session_envs(home), "NO_PROXY": "127.0.0.1,localhost"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("batch-inputs")
    audio, rate = sf.read(str(DEMO_MIX), frames=int(1.5 * 44100) + N_INPUTS * 2000, dtype="float32")
    lines = []
    for i in range(N_INPUTS):
        sf.write(str(folder / f"in{i:02d}.flac"), audio[i * 2000: i * 2000 + int(1.5 * 44100)], rate)
        lines += [json.dumps({"input": f"in{i:02d}.flac", "model": model}) for model, n in INPUTS.items() if i < n]
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def batch(batch_home: tuple[Path, dict[str, str]], *args: Any) -> subprocess.CompletedProcess[str]:
    home, env = batch_home
    return run_cli("batch", *args, "--format", "flac", "--json", env=env, cwd=home, timeout=300)


@pytest.fixture(scope="module")
def reference(batch_home: tuple[Path, dict[str, str]], manifest: Path, dsp_env: Any, msst_env: Any,  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What `--engine local` makes: stem file name -> bytes."""
    out = tmp_path_factory.mktemp("local") / "out"
    proc = batch(batch_home, manifest, "-o", out, "--engine", "local")
    assert proc.returncode == 0, proc.stderr
    files = stems_in(out)
    assert len(files) == N_ITEMS * N_STEMS
    return files


@contextmanager
def running_batch(batch_home: tuple[Path, dict[str, str]], manifest: Path, out: Path,
                  cluster: str) -> Iterator[subprocess.Popen[str]]:
    """The batch on Ray, its --json read while it runs; killed and reaped on the way out, so a failing test does
    not leave a driver holding the cluster's CPUs."""
    home, env = batch_home
    proc = spawn_cli("batch", manifest, "-o", out, "--engine", "ray", "--address", cluster, "--format", "flac",
                     "--json", env=env, cwd=home)
    assert proc.stdout is not None
    with proc:
        try:
            yield proc
        finally:
            proc.kill()


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
        dsp_env: Any, msst_env: Any, tmp_path: Path) -> None:  # noqa: F811
    before = [lock_identity(env) for env in (dsp_env, msst_env)]
    out = tmp_path / "out"
    proc = batch(batch_home, manifest, "-o", out, "--engine", "ray", "--address", cluster)
    assert proc.returncode == 0, proc.stderr
    events = json_events(proc.stdout)
    items = [e for e in events if e["type"] == "item"]
    assert sorted((e["input"], e["model"]) for e in items) == sorted(
        (str(manifest.parent / f"in{i:02d}.flac"), m) for m, n in INPUTS.items() for i in range(n))
    assert all(e["status"] == "done" for e in items)
    assert len({e["node"] for e in items}) == 2  # spread over both raylets
    assert stems_in(out) == reference  # the same names and the same bytes
    assert len(done_records(out)) == len(items)  # each input recorded once
    assert len({e["node"] for e in items if e["model"] == TORCH}) == 2
    assert [lock_identity(env) for env in (dsp_env, msst_env)] == before  # same env ids, same locks
    for env in (dsp_env, msst_env):
        probe = subprocess.run([str(env.python), "-c", "import ray"], capture_output=True)
        assert probe.returncode != 0  # Ray runs in the host's environment, never in a model's


def test_an_actor_killed_mid_batch_is_restarted_and_its_inputs_rerun(
        batch_home: tuple[Path, dict[str, str]], manifest: Path, reference: dict[str, bytes], cluster: str,
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    events: list[dict[str, Any]] = []
    actors: dict[int, dict[str, Any]] = {}
    killed = None
    with running_batch(batch_home, manifest, out, cluster) as proc:
        for line in proc.stdout:
            event = json.loads(line)
            events.append(event)
            if event["type"] == "actor":
                actors[event["pid"]] = event
            if event["type"] == "item" and killed is None:
                killed = event["pid"]  # the actor that has just finished one still has inputs queued
                os.kill(killed, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert killed in actors
    after = events[next(i for i, e in enumerate(events) if e["type"] == "item") + 1:]
    reruns = [e for e in after if e["type"] == "item" and e["node"] == actors[killed]["node"]
              and e["model"] == actors[killed]["model"] and e["pid"] != killed]
    assert reruns, "no input ran on the restarted actor"
    items = [e for e in events if e["type"] == "item"]
    assert len(items) == N_ITEMS and all(e["status"] == "done" for e in items)
    assert len({(e["input"], e["model"]) for e in items}) == len(items)  # no input reported twice
    assert stems_in(out) == reference  # no duplicate, no half file, no staging dir left


def test_resubmitting_after_a_killed_driver_runs_only_what_was_left(
        batch_home: tuple[Path, dict[str, str]], manifest: Path, reference: dict[str, bytes], cluster: str,
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen = 0
    with running_batch(batch_home, manifest, out, cluster) as proc:  # leaving it kills the driver
        for line in proc.stdout:
            if json.loads(line)["type"] == "item":
                seen += 1
                if seen == 5:
                    break
    done_before = {(r["input"], r["model"]) for r in done_records(out)}
    assert 5 <= len(done_before) < N_ITEMS
    again = batch(batch_home, manifest, "-o", out, "--engine", "ray", "--address", cluster)
    assert again.returncode == 0, again.stderr
    events = json_events(again.stdout)
    summary = next(e for e in events if e["type"] == "batch")
    assert summary["already_done"] == len(done_before)
    ran = {(e["input"], e["model"]) for e in events if e["type"] == "item"}
    assert not ran & done_before and len(ran) + len(done_before) == N_ITEMS
    assert stems_in(out) == reference


def test_collect_returns_the_stems_to_the_driver(batch_home: tuple[Path, dict[str, str]], manifest: Path,
                                                 reference: dict[str, bytes], cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = batch(batch_home, manifest, "-o", out, "--engine", "ray", "--address", cluster, "--collect")
    assert proc.returncode == 0, proc.stderr
    assert stems_in(out) == reference
    # both raylets share this filesystem, so only the driver's own note tells that the bytes came through it
    items = [e for e in json_events(proc.stdout) if e["type"] == "item"]
    assert len(items) == N_ITEMS and all(e.get("collected") is True for e in items), items
    assert {p for r in done_records(out) for p in r["stems"]} == {str(out / name) for name in reference}



def test_py_executable_starts_the_actors_with_that_python(batch_home: tuple[Path, dict[str, str]], manifest: Path,
                                                         reference: dict[str, bytes], cluster: str,
                                                         tmp_path: Path) -> None:
    """Ray's runtime_env py_executable: a wrapper that notes its pid, then execs this Python (pid kept)."""
    pids = tmp_path / "pids"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\necho $$ >> {pids}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    dsp_only = tmp_path / "dsp.jsonl"
    dsp_only.write_text("".join(json.dumps({"input": str(manifest.parent / f"in{i:02d}.flac"), "model": DSP}) + "\n"
                                for i in range(2)))
    out = tmp_path / "out"
    proc = batch(batch_home, dsp_only, "-o", out, "--engine", "ray", "--address", cluster, "--py-executable", wrapper)
    assert proc.returncode == 0, proc.stderr
    actors = {e["pid"] for e in json_events(proc.stdout) if e["type"] == "actor"}
    assert actors and actors <= {int(line) for line in pids.read_text().split()}
    assert stems_in(out) == {name: data for name, data in reference.items() if name.startswith(("in00_", "in01_"))
                             and DSP in name}


@pytest.fixture(scope="module")
def recipe_manifest(batch_home: tuple[Path, dict[str, str]], manifest: Path) -> Path:
    """N_RECIPE inputs through the user recipe (by id), two through a recipe file whose preflight blocks."""
    write_recipes(batch_home[0] / "config" / "recipes" / "batch.json", LIGHT)
    write_recipes(manifest.parent / "blocked.json", BLOCKED)
    rows = [{"input": f"in{i:02d}.flac", "recipe": LIGHT["id"]} for i in range(N_RECIPE)]
    rows += [{"input": f"in{i:02d}.flac", "recipe": "blocked.json"} for i in range(2)]
    path = manifest.parent / "recipes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_recipe_items_make_the_same_bytes_on_both_engines_each_once(
        batch_home: tuple[Path, dict[str, str]], recipe_manifest: Path, dsp_env: Any, cluster: str,  # noqa: F811
        tmp_path: Path) -> None:
    made = {}
    runs = {"local": ("--engine", "local"), "ray": ("--engine", "ray", "--address", cluster),
            "collect": ("--engine", "ray", "--address", cluster, "--collect")}
    for engine, how in runs.items():
        out = tmp_path / engine
        proc = batch(batch_home, recipe_manifest, "-o", out, *how)
        items = [e for e in json_events(proc.stdout) if e["type"] == "item"]
        done = [e for e in items if e["status"] == "done"]
        assert sorted(e["input"] for e in done) == [str(recipe_manifest.parent / f"in{i:02d}.flac")
                                                    for i in range(N_RECIPE)], proc.stderr  # each input once
        assert {(e["recipe"], e["model"]) for e in done} == {(LIGHT["id"], f"recipe:{LIGHT['id']}")}
        failed = [e for e in items if e["status"] == "failed"]
        assert [e["error"]["code"] for e in failed] == ["E_UNKNOWN_MODEL"] * 2  # the recipe preflight's own code
        assert proc.returncode == failed[0]["error"]["exit_code"] != 0, proc.stderr  # the rest ran regardless
        if engine != "local":
            assert len({e["node"] for e in done}) == 2  # the recipe actors' shares, one per raylet
        made[engine] = stems_in(out)  # no job folder or staging dir left
        assert sorted(made[engine]) == sorted(f"in{i:02d}_({o})_{LIGHT['id']}.flac"
                                              for i in range(N_RECIPE) for o in ("vocals", "rest"))
        assert sorted(p for r in done_records(out) for p in r["stems"]) == sorted(str(out / n) for n in made[engine])
    assert made["ray"] == made["local"] == made["collect"]
    home, env = batch_home  # the same bytes as `stemsep run` makes
    inputs = [recipe_manifest.parent / f"in{i:02d}.flac" for i in range(N_RECIPE)]
    run = run_cli("run", LIGHT["id"], *inputs, "-o", tmp_path / "run", "--format", "flac", env=env, cwd=home)
    assert run.returncode == 0, run.stderr
    assert stems_in(tmp_path / "run") == made["local"]
    again = batch(batch_home, recipe_manifest, "-o", tmp_path / "ray", "--engine", "local")
    events = json_events(again.stdout)
    assert next(e for e in events if e["type"] == "batch")["already_done"] == N_RECIPE
    assert not [e for e in events if e["type"] == "item" and e["status"] == "done"]  # nothing ran again


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a recipe actor's workers: they run only while its call does)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_recipe_actor_killed_mid_call_is_restarted_and_its_share_reruns(
        batch_home: tuple[Path, dict[str, str]], recipe_manifest: Path, cluster: str, tmp_path: Path) -> None:
    """Inputs no earlier test ran through the recipe (the step cache has none of their steps). A recipe actor is
    SIGKILLed once it has a worker (its share's call is running): Ray restarts it and retries the call, which
    re-runs only the steps the node's step cache lacks. The reference is `stemsep run --no-cache`."""
    home, env = batch_home
    inputs = [recipe_manifest.parent / f"in{i:02d}.flac" for i in range(N_RECIPE, N_INPUTS)]
    rows = tmp_path / "recipe-kill.jsonl"
    rows.write_text("".join(json.dumps({"input": str(p), "recipe": LIGHT["id"]}) + "\n" for p in inputs))
    out = tmp_path / "out"
    events: list[dict[str, Any]] = []
    killed, mid_call = None, False
    with running_batch(batch_home, rows, out, cluster) as proc:
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["type"] == "actor" and killed is None:
                victim = events[-1]
                deadline = time.monotonic() + 120
                while not children_of(victim["pid"]) and time.monotonic() < deadline:
                    time.sleep(0.02)
                mid_call = bool(children_of(victim["pid"]))
                os.kill(victim["pid"], signal.SIGKILL)
                killed = victim
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and killed is not None and mid_call, stderr
    items = [e for e in events if e["type"] == "item"]
    assert sorted(e["input"] for e in items) == sorted(map(str, inputs)), items  # each input once
    assert all(e["status"] == "done" for e in items), items
    assert killed["pid"] not in {e["pid"] for e in items}, (killed, items)  # its share re-ran on the restarted actor
    made = stems_in(out)  # no job folder, staging dir or half file left
    assert sorted(p for r in done_records(out) for p in r["stems"]) == sorted(str(out / n) for n in made)
    run = run_cli("run", LIGHT["id"], *inputs, "-o", tmp_path / "run", "--format", "flac", "--no-cache", env=env,
                  cwd=home)
    assert run.returncode == 0, run.stderr
    assert made == stems_in(tmp_path / "run")  # the bytes of a run with no cache and no kill
