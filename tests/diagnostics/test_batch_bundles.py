"""Debug bundles of `stemsep batch` (local engine): real CLI processes, the session's DSP env, a worker that fails
through the fault hook (tests/worker/fault_hook.py).

- an input that fails in its worker gets its own bundle under `<output dir>/.stemsep-batch/bundles/`, named in its
  `item` event's error, its ledger line and the human line; `debug show` reads it and `debug replay` reproduces
  the recorded error code;
- a group preflight blocks gets one bundle (of its planning), and so does a runner that cannot start (its model
  file cannot be fetched): each of the group's inputs names it;
- with --collect (no shared output path) the runner's bundle comes back to the driver, into the same folder;
- a recipe item whose model step fails while it runs gets its own bundle too (also with --collect).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from envmgr.worker.process import TEST_HOOK_ENV
from tests.artifacts.httpserver import FileServer
from tests.preflight.conftest import dsp, write_audio
from tests.recipes.conftest import recipe, sep, write_recipes
from tests.support.cli import home_sharing_session_envs, json_events, run_cli, write_user_registry
from tests.worker.conftest import FAULT_HOOK, dsp_env  # noqa: F401 (the session's DSP env, built once)

pytestmark = pytest.mark.envs
FAILING = dsp("batch-bundle-error", test_fault={"fault": "exit"})  # each job dies in a library's sys.exit()
BLOCKED = dsp("batch-bundle-blocked", runtime={"allowed": [], "preferred": None, "catalog_only": True,
                                                "blocking_reason": "every runtime: test model that nothing can run"})


@pytest.fixture
def home(tmp_path: Path, dsp_env: Any) -> Path:  # noqa: F811
    home = tmp_path / "home"
    write_user_registry(home, "batch-bundles", [FAILING, BLOCKED])
    return home


def cli_env(home: Path) -> dict[str, str]:
    return {**home_sharing_session_envs(home), TEST_HOOK_ENV: str(FAULT_HOOK), "COLUMNS": "200"}


def manifest(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps({"input": str(write_audio(tmp_path / name)), "model": model}) + "\n"
                            for name, model in rows))
    return path


def test_each_failed_input_has_a_bundle_and_a_blocked_group_shares_one(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rows = [("a.wav", FAILING["id"]), ("b.wav", FAILING["id"]), ("c.wav", BLOCKED["id"]), ("d.wav", BLOCKED["id"])]
    proc = run_cli("batch", manifest(tmp_path, rows), "-o", out, "--json", env=cli_env(home), cwd=tmp_path,
                   timeout=300)
    events = json_events(proc.stdout)
    items = {Path(e["input"]).name: e for e in events if e["type"] == "item"}
    assert proc.returncode != 0 and sorted(items) == ["a.wav", "b.wav", "c.wav", "d.wav"], proc.stderr
    assert all(e["status"] == "failed" for e in items.values())
    bundles = {name: Path(e["error"]["debug_bundle"]) for name, e in items.items()}
    folder = out / ".stemsep-batch" / "bundles"
    assert all(b.parent == folder and b.is_file() for b in bundles.values()), bundles
    assert bundles["a.wav"] != bundles["b.wav"]  # one per input that ran
    assert bundles["c.wav"] == bundles["d.wav"]  # one for the group preflight blocked
    assert str(folder) in events[-1]["hint"]

    ledger = [json.loads(line) for line in (out / ".stemsep-batch" / "ledger.jsonl").read_text().splitlines()]
    assert {Path(r["input"]).name: r["error"]["debug_bundle"] for r in ledger} == {
        "a.wav": str(bundles["a.wav"]), "b.wav": str(bundles["b.wav"])}

    with zipfile.ZipFile(bundles["a.wav"]) as z:
        facts, names = json.loads(z.read("bundle.json")), set(z.namelist())
        inputs = json.loads(z.read("inputs.json"))
        preflight = json.loads(z.read(f"models/{FAILING['id']}/preflight.json"))
    assert facts["outcome"]["error"]["code"] == "E_WORKER_INTERNAL" and facts["command"][:2] == ["stemsep", "batch"]
    assert {f"models/{FAILING['id']}/lock.txt", "workers/1/transcript.jsonl", "workers/1/stderr.log"} <= names
    assert [Path(i["path"]).name for i in inputs] == ["a.wav"] and preflight["model"] == FAILING["id"]
    with zipfile.ZipFile(bundles["c.wav"]) as z:
        blocked = json.loads(z.read("bundle.json"))
    assert blocked["stopped_at"] == "planning" and blocked["outcome"]["error"]["code"] == items["c.wav"]["error"]["code"]

    shown = run_cli("debug", "show", bundles["a.wav"], env=cli_env(home), cwd=tmp_path)
    assert shown.returncode == 0 and "E_WORKER_INTERNAL" in shown.stdout, shown.stderr
    replay = run_cli("debug", "replay", bundles["a.wav"], "--json", env=cli_env(home), cwd=tmp_path, timeout=300)
    replayed = json_events(replay.stdout)
    assert replay.returncode == 11 and replayed[-1]["code"] == "E_WORKER_INTERNAL", replay.stderr
    assert [Path(e["input"]).name for e in replayed if e["type"] == "job"] == ["a.wav"]


def test_the_human_line_names_the_bundle(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("batch", manifest(tmp_path, [("c.wav", BLOCKED["id"])]), "-o", out, env=cli_env(home),
                   cwd=tmp_path, timeout=120)
    (bundle,) = (out / ".stemsep-batch" / "bundles").glob("*.zip")
    assert proc.returncode != 0 and f"debug bundle: {bundle}" in proc.stderr, proc.stderr


def test_with_collect_the_bundle_comes_back_to_the_driver(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("batch", manifest(tmp_path, [("a.wav", FAILING["id"])]), "-o", out, "--collect", "--json",
                   env=cli_env(home), cwd=tmp_path, timeout=300)
    (item,) = [e for e in json_events(proc.stdout) if e["type"] == "item"]
    bundle = Path(item["error"]["debug_bundle"])
    assert bundle.parent == out / ".stemsep-batch" / "bundles", proc.stderr
    with zipfile.ZipFile(bundle) as z:
        assert json.loads(z.read("bundle.json"))["outcome"]["error"]["code"] == "E_WORKER_INTERNAL"


def test_a_runner_that_cannot_start_writes_one_bundle_for_its_inputs(home: Path, tmp_path: Path) -> None:
    """Its model file is a 404 (preflight sees a source; the runner's fetch fails): no worker ever starts."""
    server = FileServer().start()
    try:
        unfetchable = dsp("batch-bundle-unfetchable", artifacts={"primary": {
            "kind": "checkpoint", "filename": "gone.ckpt", "url": server.url("gone.ckpt")}})
        write_user_registry(home, "batch-bundles-unfetchable", [unfetchable])
        out = tmp_path / "out"
        proc = run_cli("batch", manifest(tmp_path, [("a.wav", unfetchable["id"]), ("b.wav", unfetchable["id"])]),
                       "-o", out, "--json", env=cli_env(home), cwd=tmp_path, timeout=300)
    finally:
        server.stop()
    items = [e for e in json_events(proc.stdout) if e["type"] == "item"]
    assert len(items) == 2 and all(e["status"] == "failed" for e in items), proc.stderr
    (bundle,) = {e["error"]["debug_bundle"] for e in items}
    assert list((out / ".stemsep-batch" / "bundles").glob("*.zip")) == [Path(bundle)]
    with zipfile.ZipFile(bundle) as z:
        facts = json.loads(z.read("bundle.json"))
    assert facts["outcome"]["error"]["code"] == items[0]["error"]["code"] and facts["stopped_at"] == "run"


def test_a_recipe_item_that_fails_while_it_runs_has_its_own_bundle(home: Path, tmp_path: Path) -> None:
    """A user recipe whose model step dies in its worker (the fault hook), then an audio op it never reaches."""
    failing = recipe(sep("split", FAILING["id"]), {"id": "hp", "op": "high_pass", "inputs": ["split.vocals"],
                                                    "params": {"cutoff_hz": 120}},
                     outputs={"vocals": "hp.vocals"}, recipe_id="batch_bundle_recipe")
    write_recipes(tmp_path / "failing.json", failing)
    rows = tmp_path / "recipes.jsonl"
    rows.write_text("".join(json.dumps({"input": str(write_audio(tmp_path / name)), "recipe": "failing.json"}) + "\n"
                            for name in ("a.wav", "b.wav")))
    out = tmp_path / "out"
    proc = run_cli("batch", rows, "-o", out, "--json", env=cli_env(home), cwd=tmp_path, timeout=300)
    items = {Path(e["input"]).name: e for e in json_events(proc.stdout) if e["type"] == "item"}
    assert proc.returncode == 11 and sorted(items) == ["a.wav", "b.wav"], proc.stderr
    assert {e["status"] for e in items.values()} == {"failed"}
    assert {e["error"]["code"] for e in items.values()} == {"E_WORKER_INTERNAL"}
    bundles = {name: Path(e["error"]["debug_bundle"]) for name, e in items.items()}
    folder = out / ".stemsep-batch" / "bundles"
    assert sorted(folder.glob("*.zip")) == sorted(bundles.values()) and bundles["a.wav"] != bundles["b.wav"]
    ledger = [json.loads(line) for line in (out / ".stemsep-batch" / "ledger.jsonl").read_text().splitlines()]
    assert {Path(r["input"]).name: r["error"]["debug_bundle"] for r in ledger} == {
        name: str(b) for name, b in bundles.items()}

    with zipfile.ZipFile(bundles["b.wav"]) as z:
        facts, names = json.loads(z.read("bundle.json")), set(z.namelist())
        inputs = json.loads(z.read("inputs.json"))
        job = json.loads(z.read(f"models/{FAILING['id']}/job.json"))
        events = [json.loads(line) for line in z.read("events.jsonl").decode().splitlines()]
    assert facts["outcome"]["error"]["code"] == "E_WORKER_INTERNAL" and facts["command"][:2] == ["stemsep", "batch"]
    assert facts["stopped_at"] == "run" and facts["models"] == [FAILING["id"]]
    assert {f"models/{FAILING['id']}/preflight.json", f"models/{FAILING['id']}/lock.txt", "workers/1/transcript.jsonl",
            "workers/1/stderr.log"} <= names
    assert [Path(i["path"]).name for i in inputs] == ["b.wav"] and [Path(p).name for p in job["inputs"]] == ["b.wav"]
    assert {Path(e["input"]).name for e in events if "input" in e} == {"b.wav"}  # its own events only
    assert any(e["type"] == "preflight" and e["report"].get("recipe") for e in events)  # the recipe's report

    shown = run_cli("debug", "show", bundles["b.wav"], env=cli_env(home), cwd=tmp_path)
    assert shown.returncode == 0 and "E_WORKER_INTERNAL" in shown.stdout and "b.wav" in shown.stdout, shown.stderr

    collect = tmp_path / "collect"
    proc = run_cli("batch", rows, "-o", collect, "--collect", "--json", env=cli_env(home), cwd=tmp_path, timeout=300)
    bundles = {Path(e["error"]["debug_bundle"]) for e in json_events(proc.stdout) if e["type"] == "item"}
    assert len(bundles) == 2 and all(b.parent == collect / ".stemsep-batch" / "bundles" for b in bundles)
    assert all(json.loads(zipfile.ZipFile(b).read("bundle.json"))["outcome"]["error"]["code"] == "E_WORKER_INTERNAL"
               for b in bundles), proc.stderr
