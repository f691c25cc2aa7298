"""`stemsep serve --stdio` against StemSep's desktop-app contract: one real server process walks the conformance
checklist of ../shared/reference/stemsep-app-backend-contract.md §5 (numbers in the test names), with the
packaged default DSP model in the session's real env. The demo mix separates through `run_selection_job`
with events, and its stems are the files `stemsep separate` writes."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envmgr.worker.process import TEST_HOOK_ENV
from tests.artifacts.httpserver import FileServer
from tests.preflight.conftest import dsp
from tests.serve.stdio_client import TERMINAL, StdioBackend
from tests.serve.test_http import DSP_RECIPE, QUICK_MODEL, assert_same_audio
from tests.support.cli import home_sharing_session_envs, run_cli, write_user_registry
from tests.worker.conftest import DEMO_MIX, FAULT_HOOK
from tests.worker.test_separate_cli import SLOW_MODEL

DEFAULT_MODEL = "builtin-center-split"
PAYLOAD = os.urandom(40_000)
FETCHED = dsp("stdio-fetched", artifacts={"additional": [{"kind": "other", "filename": "data.bin",
                                                          "url": "PLACEHOLDER", "sha256": hashlib.sha256(PAYLOAD).hexdigest(),
                                                          "size_bytes": len(PAYLOAD)}]})

# A Roformer on stemsep-legacy: overlap is a divisor there (inference.num_overlap), segment_size samples.
SETTINGS_MODEL: dict[str, Any] = {
    "id": "stdio-settings", "name": "test: a Roformer's settings", "architecture": "BS-Roformer",
    "runtime": {"allowed": ["stemsep-legacy"], "preferred": "stemsep-legacy", "model_type": "bs_roformer"},
    "capabilities": {"stems": ["vocals", "instrumental"]},
    "artifacts": {"primary": {"kind": "checkpoint", "filename": "m.ckpt", "url": "PLACEHOLDER"},
                  "config": {"kind": "config", "filename": "m.yaml", "url": "PLACEHOLDER"}},
    "recommended_settings": {"overlap": 4, "segment_size": 352800},
    "settings_semantics": {"overlap": {"meaning": "divisor"}, "segment_size": {"unit": "samples"}}}


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    server = FileServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stdio_env(tmp_path_factory: pytest.TempPathFactory, dsp_env: Any, files: FileServer) -> dict[str, str]:
    home = tmp_path_factory.mktemp("stdio-home")
    fetched = {**FETCHED, "artifacts": {"additional": [{**FETCHED["artifacts"]["additional"][0],
                                                        "url": files.file("/stdio/data.bin", PAYLOAD)}]}}
    settings_model = {**SETTINGS_MODEL, "artifacts": {  # 404s: the job ends at its download, after its plan
        kind: {**a, "url": files.url(f"/stdio/missing/{a['filename']}")} for kind, a in SETTINGS_MODEL["artifacts"].items()}}
    write_user_registry(home, "test-models", [SLOW_MODEL, fetched, QUICK_MODEL, settings_model])
    recipes = home / "config" / "recipes"
    recipes.mkdir(parents=True)
    (recipes / "test-recipes.json").write_text(json.dumps({"schema_version": 1, "recipes": [DSP_RECIPE]}))
    return {**home_sharing_session_envs(home), TEST_HOOK_ENV: str(FAULT_HOOK),
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@pytest.fixture(scope="module")
def backend(stdio_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioBackend]:
    running = StdioBackend(stdio_env, tmp_path_factory.mktemp("stdio-cwd"))
    # 1: a request written before bridge_ready is answered after it
    first = running.send("ping", request_id=1)
    running.reply(first, timeout=120)
    yield running
    # 2, 7: every line was one JSON object; no event looks like a reply
    assert running.not_json == []
    for line in running.lines:
        assert "type" in line or ("id" in line and isinstance(line.get("success"), bool)), line
        if "type" in line:
            assert not ("id" in line and isinstance(line.get("success"), bool)), line
    # 10: closing stdin ends the process, with exit 0
    assert running.close_stdin() == 0


def test_01_bridge_ready_is_the_first_line(backend: StdioBackend) -> None:
    ready = backend.lines[0]
    assert ready["type"] == "bridge_ready"
    assert isinstance(ready["models_count"], int) and ready["models_count"] > 0
    assert isinstance(ready["recipes_count"], int) and isinstance(ready["capabilities"], list)
    assert "models" in ready["capabilities"] and "separation" in ready["capabilities"]
    assert backend.lines[1] == {"id": 1, "success": True, "data": backend.lines[1]["data"]}


def test_04_05_08_09_ids_unknown_command_ping_status(backend: StdioBackend) -> None:
    assert backend.call("ping", request_id="text-id")["id"] == "text-id"
    assert backend.ok("ping")["status"] == "ok"
    answer = backend.call("no_such_command", request_id=77)
    assert answer == {"id": 77, "success": False, "error": "UNKNOWN_COMMAND: Unknown command: no_such_command"}
    assert backend.ok("ping")["status"] == "ok"  # still running
    status = backend.ok("get_backend_status")
    assert status["backend_ready"] is True and isinstance(status["queued_jobs"], list)


def test_06_malformed_lines_warn_and_the_stream_goes_on(backend: StdioBackend) -> None:
    start = len(backend.lines)
    backend.send_line("this is not json")
    backend.send_line('{"id": 4242, "no": "command"}')
    backend.send_line("[1, 2]")
    assert backend.ok("ping")["status"] == "ok"
    warnings = [m for m in backend.lines[start:] if m.get("type") == "backend_warning"]
    assert len(warnings) == 3 and all(w["message"].startswith("malformed request") for w in warnings)
    assert not any(m.get("id") == 4242 for m in backend.lines)


def test_11_12_13_14_catalog_models_recipes_status_gpus(backend: StdioBackend) -> None:
    catalog = backend.ok("get_catalog")
    assert catalog["schema_version"].startswith("catalog-runtime-v")
    models = {m["id"]: m for m in catalog["models"]}
    assert all(isinstance(m["installed"], bool) for m in models.values())
    assert models[DEFAULT_MODEL]["installed"] is True  # no artifacts: nothing to fetch
    assert models["stdio-fetched"]["installed"] is False
    assert models["stdio-fetched"]["download"]["artifacts"][0]["sources"][0]["url"].startswith("http://127.0.0.1")
    index = {(s["selection_type"], s["selection_id"]) for s in catalog["selection_index"]}
    assert ("model", DEFAULT_MODEL) in index
    assert [m["id"] for m in backend.ok("get_models")] == list(models)
    recipes = backend.ok("get_recipes")
    assert isinstance(recipes, list)
    for recipe in recipes:
        assert isinstance(recipe["id"], str) and isinstance(recipe["name"], str)
        assert isinstance(recipe["surface_blockers"], list) and recipe["simple_surface"] is False
        assert ("recipe", recipe["id"]) in index
    assert backend.ok("get_workflows") == {"workflows": []}
    status = backend.ok("get_catalog_status")
    assert {"fallback_kind", "signature_valid", "active_revision", "fetched_at"} <= set(status)
    gpus = backend.ok("get-gpu-devices")
    assert isinstance(gpus["gpus"], list) and gpus["system_info"]["cpu_count"] >= 1
    assert "memory_total_gb" in gpus["system_info"]


def test_15_16_preflight_keeps_our_codes(backend: StdioBackend) -> None:
    bad = backend.ok("separation_preflight", file_path="/no/such/file.wav", model_id="no-such-model",
                     post_processing_steps=[{"type": "phase_fix", "modelId": "missing-ref-model"}])
    assert bad["can_proceed"] is False
    assert isinstance(bad["errors"], list) and isinstance(bad["warnings"], list) and isinstance(bad["resolved"], dict)
    for key in ("required_models", "runtime_blocks", "recommended_adjustments"):
        assert isinstance(bad["plan"][key], list)
    assert any(e.startswith("E_INPUT_NOT_FOUND: ") for e in bad["errors"])
    assert any(e.startswith("E_UNKNOWN_MODEL: ") for e in bad["errors"])
    assert {"no-such-model", "missing-ref-model"} <= set(bad["missing_models"])

    good = backend.ok("separation_preflight", file_path=str(DEMO_MIX), model_id=DEFAULT_MODEL)
    assert good["can_proceed"] is True, good["errors"]
    assert good["audio"]["valid"] is True and good["plan"]["runtime_adapter"] == "stemsep-legacy"
    assert good["plan"]["required_models"][0]["id"] == DEFAULT_MODEL and good["missing_models"] == []


def test_17_execution_plan(backend: StdioBackend) -> None:
    plan = backend.ok("resolve_execution_plan", selection_type="model", selection_id=DEFAULT_MODEL, config={})
    assert plan["selection_type"] == "model" and plan["selection_id"] == DEFAULT_MODEL
    assert plan["resolved_bundle"]["required_model_ids"] == [DEFAULT_MODEL]
    unknown = backend.call("resolve_execution_plan", selection_type="model", selection_id="nope", config={})
    assert unknown["success"] is False and unknown["error"].startswith("NOT_FOUND: ")


def test_18_20_21_22_demo_mix_through_run_selection_job(backend: StdioBackend, stdio_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "app-out"
    reply = backend.call("run_selection_job", inputFile=str(DEMO_MIX), modelId=DEFAULT_MODEL, outputDir=str(out),
                         selectionType="model", selectionId=DEFAULT_MODEL, outputFormat="wav",
                         # the app's neutral values are accepted: every stem, auto device, no shifts, tta or steps
                         stems=["instrumental", "vocals"], device="auto", shifts=0, tta=False, postProcessingSteps=[])
    assert reply["success"] is True, reply
    job_id = reply["data"]["job_id"]
    assert isinstance(job_id, str) and reply["data"]["job"]["jobId"] == job_id and reply["data"]["job"]["status"]
    terminal = backend.wait_terminal(job_id)
    events = backend.job_events(job_id)
    assert backend.index_of(reply) < backend.index_of(events[0])  # the reply precedes the job's events
    kinds = [e["type"] for e in events]
    assert kinds[0] == "separation_started" and kinds[-1] == "separation_complete" == terminal["type"]
    assert sum(k in TERMINAL for k in kinds) == 1
    progress = [e["progress"] for e in events if e["type"] == "separation_progress"]
    assert all(0 <= p <= 100 for p in progress) and progress == sorted(progress)
    chunks = [e for e in events if "chunk" in (e.get("message") or "")]
    assert chunks and chunks[-1]["meta"]["done"] == chunks[-1]["meta"]["total"]  # the worker's real chunks
    started = next(e for e in events if e["type"] == "separation_step_started")
    completed = next(e for e in events if e["type"] == "separation_step_completed")
    assert started["meta"]["phase"] == "pipeline" and started["meta"]["step"]["index"] == 0
    assert started["meta"]["step"]["model_id"] == DEFAULT_MODEL and completed["status"] == "completed"
    files = terminal["output_files"]
    assert sorted(files) == ["instrumental", "vocals"] and all(Path(p).parent == out for p in files.values())

    snap = backend.ok("get_selection_job", job_id=job_id)
    assert snap["status"] == "completed" and snap["outputFiles"] == files and snap["progress"] == 100
    missing = backend.call("get_selection_job", job_id="no-such-job")
    assert missing["success"] is False and missing["error"].startswith("NOT_FOUND: ")
    assert job_id in [j["jobId"] for j in backend.ok("list_selection_jobs")]

    # the same files `stemsep separate` writes
    proc = run_cli("separate", DEMO_MIX, "-o", tmp_path / "cli", env=stdio_env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert sorted(Path(p).name for p in files.values()) == expected
    for name in expected:
        assert_same_audio((out / name).read_bytes(), (tmp_path / "cli" / name).read_bytes())


def test_08_19_23_ping_while_running_resend_is_the_same_job_cancel_ends_with_an_event(
        backend: StdioBackend, tmp_path: Path) -> None:
    request: dict[str, Any] = {"inputFile": str(DEMO_MIX), "modelId": SLOW_MODEL["id"], "outputDir": str(tmp_path / "slow")}
    first = backend.ok("run_selection_job", **request)
    again = backend.ok("run_selection_job", **request)  # the app's retry after a timeout
    job_id = first["job_id"]
    assert again["job_id"] == job_id and again["deduplicated"] is True
    backend.wait(lambda m: m.get("job_id") == job_id and "chunk" in (m.get("message") or ""), "a chunk", 120)
    began = backend.lines[-1]
    assert backend.ok("ping", timeout=5)["status"] == "ok"  # answered while the job runs
    cancelled = backend.ok("cancel_selection_job", job_id=job_id)
    assert cancelled["job_id"] == job_id and cancelled["status"] in ("cancelling", "cancelled")
    terminal = backend.wait_terminal(job_id, timeout=60)
    assert terminal["type"] == "separation_cancelled" and backend.index_of(began) < backend.index_of(terminal)
    assert backend.ok("get_selection_job", job_id=job_id)["status"] == "cancelled"
    assert [e["type"] for e in backend.job_events(job_id)].count("separation_cancelled") == 1
    gone = backend.call("cancel_selection_job", job_id="no-such-job")
    assert gone["success"] is False and gone["error"].startswith("NOT_FOUND: ")


def test_26_pause_reorder_resume(backend: StdioBackend, tmp_path: Path) -> None:
    assert backend.ok("pause_queue") == {"paused": True}
    ids = [backend.ok("run_selection_job", inputFile=str(DEMO_MIX), modelId=DEFAULT_MODEL,
                      outputDir=str(tmp_path / name))["job_id"] for name in ("a", "b")]
    assert [j["status"] for j in backend.ok("get_backend_status")["queued_jobs"]] == ["pending", "pending"]
    assert backend.ok("reorder_queue", job_ids=[ids[1], ids[0]])["queued"] == [ids[1], ids[0]]
    bad = backend.call("reorder_queue", job_ids=["no-such-job"])
    assert bad["success"] is False and "no-such-job" in bad["error"]
    assert backend.ok("resume_queue") == {"paused": False}
    ends = [backend.wait_terminal(job_id) for job_id in ids]
    assert all(e["type"] == "separation_complete" for e in ends)
    starts = [backend.index_of(next(e for e in backend.job_events(j) if e["type"] == "separation_started"))
              for j in ids]
    assert starts[1] < starts[0]  # b ran first


def test_25_install_selection_downloads_with_events(backend: StdioBackend) -> None:
    before = backend.ok("get_selection_installation", selection_type="model", selection_id="stdio-fetched")
    assert before["installed"] is False and before["missing_model_ids"] == ["stdio-fetched"]
    data = backend.ok("install_selection", selection_type="model", selection_id="stdio-fetched")
    assert data["results"][0]["scheduled"] is True and data["failures"] == []
    done = backend.wait(lambda m: m.get("model_id") == "stdio-fetched" and m.get("type") in ("complete", "error"),
                        "the download's end")
    assert done["type"] == "complete" and done["verified"] is True, done
    assert Path(done["path"]).read_bytes() == PAYLOAD
    progress = [m for m in backend.lines if m.get("model_id") == "stdio-fetched" and m.get("type") == "progress"]
    assert progress[0]["stage"] == "downloading" and progress[-1]["progress"] == 100 and progress[-1]["verified"]
    assert backend.ok("get_selection_installation", selection_type="model", selection_id="stdio-fetched")["installed"]
    # already there: nothing to schedule
    again = backend.ok("install_selection", selection_type="model", selection_id=DEFAULT_MODEL)
    assert again["results"][0]["already_installed"] is True


def test_a_recipe_selection_runs_its_graph(backend: StdioBackend, tmp_path: Path) -> None:
    """A recipe selection is a recipe job (as `stemsep run`): one terminal event, the recipe's outputs as the job's
    output files."""
    assert DSP_RECIPE["id"] in [r["id"] for r in backend.ok("get_recipes")]
    verdict = backend.ok("separation_preflight", file_path=str(DEMO_MIX), model_id=DSP_RECIPE["id"])  # as the app
    assert verdict["can_proceed"] is True and verdict["reports"]["recipe"]["can_proceed"] is True, verdict
    out = tmp_path / "recipe-out"
    reply = backend.call("run_selection_job", inputFile=str(DEMO_MIX), selectionType="recipe",
                         selectionId=DSP_RECIPE["id"], outputDir=str(out))
    assert reply["success"] is True, reply
    terminal = backend.wait_terminal(reply["data"]["job_id"])
    assert terminal["type"] == "separation_complete", terminal
    (path,) = terminal["output_files"].values()
    assert Path(path) == out / f"demo_mix_(vocals)_{DSP_RECIPE['id']}.wav" and Path(path).is_file()


def test_a_failing_command_is_a_reply_not_a_crash(backend: StdioBackend) -> None:
    answer = backend.call("run_selection_job", inputFile="/no/such/song.flac", modelId=DEFAULT_MODEL)
    assert answer["success"] is False and answer["error"].startswith("START_FAILED: ")
    assert "E_PATH_NOT_FILE" in answer["error"]
    bad = backend.call("get_selection_job")
    assert bad["success"] is False and bad["error"] == "INVALID: job_id is required"
    assert backend.ok("ping")["status"] == "ok"


def test_21_22_a_job_that_fails_ends_with_separation_error(backend: StdioBackend, tmp_path: Path) -> None:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio at all")
    job_id = backend.ok("run_selection_job", inputFile=str(not_audio), modelId=DEFAULT_MODEL,
                        outputDir=str(tmp_path / "out"))["job_id"]
    terminal = backend.wait_terminal(job_id)
    assert terminal["type"] == "separation_error" and terminal["error"].startswith("E_")  # our code, then why
    assert [e["type"] for e in backend.job_events(job_id)].count("separation_error") == 1
    snap = backend.ok("get_selection_job", job_id=job_id)
    assert snap["status"] == "failed" and snap["error"] == terminal["error"] and not snap["outputFiles"]


def _stored_events(stdio_env: dict[str, str], job_id: str) -> list[dict[str, Any]]:
    """Our own events of a job, as the queue stored them (the app sees them mapped)."""
    import sqlite3

    (db,) = Path(stdio_env["STEMSEP_HOME"]).rglob("jobs.sqlite3")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT data FROM events WHERE job = ? ORDER BY seq", (job_id,)).fetchall()
    return [json.loads(data) for (data,) in rows]


def test_overlap_and_segment_size_reach_the_job_in_the_runtimes_meaning(backend: StdioBackend,
                                                                         stdio_env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    """The app's overlap is a ratio (or a percentage, or 2-50 as a divisor) and its segment size samples; the
    registry's settings semantics turn them into stemsep-legacy's divisor and chunk size."""
    native = {"inference": {"num_overlap": 2, "chunk_size": 176400}}  # ratio 0.5: a hop of half the chunk
    verdict = backend.ok("separation_preflight", file_path=str(DEMO_MIX), model_id=SETTINGS_MODEL["id"],
                         overlap=0.5, segment_size=176400)
    assert verdict["resolved"]["settings"]["native"] == native, verdict["errors"]
    overlap = verdict["resolved"]["settings"]["settings"]["overlap"]
    assert (overlap["provenance"], overlap["source_value"], overlap["source_meaning"]) == ("user", 0.5, "ratio")
    for given, divisor in ((75, 4), (8, 8)):  # 75: a percentage (ratio 0.75); 8: UVR's divisor, kept
        got = backend.ok("separation_preflight", file_path=str(DEMO_MIX), model_id=SETTINGS_MODEL["id"], overlap=given)
        assert got["resolved"]["settings"]["native"]["inference"]["num_overlap"] == divisor

    reply = backend.call("run_selection_job", inputFile=str(DEMO_MIX), modelId=SETTINGS_MODEL["id"],
                         outputDir=str(tmp_path / "out"), overlap=0.5, segmentSize=176400)
    assert reply["success"] is True, reply
    job_id = reply["data"]["job_id"]
    backend.wait_terminal(job_id)  # it fails at the download (404), after planning
    stored = _stored_events(stdio_env, job_id)
    (plan,) = [e for e in stored if e["type"] == "plan"]
    assert plan["settings"] == native  # what the worker's job message carries
    preflight = next(e for e in stored if e["type"] == "preflight")
    assert preflight["report"]["resolved"]["settings"]["native"] == native


def test_a_bad_overlap_is_refused_with_our_code(backend: StdioBackend, tmp_path: Path) -> None:
    before = len(backend.ok("list_selection_jobs"))
    for value in (-0.5, 150):
        answer = backend.call("run_selection_job", inputFile=str(DEMO_MIX), modelId=SETTINGS_MODEL["id"],
                              outputDir=str(tmp_path), overlap=value)
        assert answer["success"] is False and answer["error"].startswith("START_FAILED: overlap"), answer
        assert "[E_SETTINGS]" in answer["error"]
        verdict = backend.ok("separation_preflight", file_path=str(DEMO_MIX), model_id=SETTINGS_MODEL["id"],
                             overlap=value)
        assert verdict["can_proceed"] is False and any(e.startswith("E_SETTINGS: ") for e in verdict["errors"])
    assert len(backend.ok("list_selection_jobs")) == before  # nothing was queued


@pytest.mark.parametrize("field, value", [
    ("overlap", 0.25),  # the DSP model has no overlap
    ("ensembleConfig", {"models": [{"model_id": DEFAULT_MODEL}, {"model_id": "other"}], "algorithm": "average"}),
    ("postProcessingSteps", [{"type": "phase_fix", "modelId": DEFAULT_MODEL}]),
    ("stems", ["vocals"]),
    ("device", "cuda:7"),
    ("tta", True),
])
def test_a_field_that_cannot_be_honoured_is_refused_by_name(backend: StdioBackend, tmp_path: Path, field: str,
                                                            value: Any) -> None:
    before = len(backend.ok("list_selection_jobs"))
    answer = backend.call("run_selection_job", inputFile=str(DEMO_MIX), modelId=DEFAULT_MODEL,
                          outputDir=str(tmp_path), **{field: value})
    assert answer["success"] is False and answer["error"].startswith(f"INVALID: {field} "), answer
    assert "[E_APP_FIELD_UNSUPPORTED]" in answer["error"]
    assert len(backend.ok("list_selection_jobs")) == before
    snake = {"ensembleConfig": "ensemble_config", "postProcessingSteps": "post_processing_steps"}.get(field, field)
    verdict = backend.ok("separation_preflight", file_path=str(DEMO_MIX), model_id=DEFAULT_MODEL, **{snake: value})
    assert verdict["can_proceed"] is False
    assert any(e.startswith(f"E_APP_FIELD_UNSUPPORTED: {field} ") for e in verdict["errors"]), verdict["errors"]


def test_an_env_that_is_not_adopted_is_refused(backend: StdioBackend, tmp_path: Path) -> None:
    answer = backend.call("run_selection_job", inputFile=str(DEMO_MIX), modelId=DEFAULT_MODEL,
                          outputDir=str(tmp_path), env="no-such-env")
    assert answer["success"] is False and answer["error"].startswith("START_FAILED: ")
    assert "[E_UNKNOWN_ENV]" in answer["error"]
    verdict = backend.ok("separation_preflight", file_path=str(DEMO_MIX), model_id=DEFAULT_MODEL, env="no-such-env")
    assert verdict["can_proceed"] is False and any(e.startswith("E_UNKNOWN_ENV: ") for e in verdict["errors"])
