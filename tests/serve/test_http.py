"""`stemsep serve --http` as an app uses it: a real server process, the packaged default model in the session's
real DSP env. The demo mix separates through HTTP with progress events and the same stem files `stemsep
separate` writes; the event stream resumes with Last-Event-ID; stems come with range requests; cancel,
pause, resume and reorder act on the real queue; and every security refusal the issue names is proved."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
import soundfile as sf

from envmgr.worker.process import TEST_HOOK_ENV
from tests.serve.server import Server
from tests.support.cli import home_sharing_session_envs, run_cli, write_user_registry
from tests.support.wait import wait_for
from tests.worker.conftest import DEMO_MIX, FAULT_HOOK
from tests.worker.test_separate_cli import SLOW_MODEL

DEFAULT_MODEL = "builtin-center-split"
# Two separate steps (the default model and its slow twin) and an ensemble of their vocals: the light env only.
DSP_RECIPE = {"id": "test-dsp-ensemble", "name": "test: two DSP splits averaged", "steps": [
    {"id": "a", "op": "separate", "inputs": ["mix"], "params": {"model": DEFAULT_MODEL}},
    {"id": "b", "op": "separate", "inputs": ["mix"], "params": {"model": "test-quick-fault"}},
    {"id": "avg", "op": "ensemble", "inputs": ["a.vocals", "b.vocals"], "params": {"algorithm": "avg_wave"}}],
    "outputs": {"vocals": "avg.vocals"}}
# A recipe whose one step names a model no registry has: its preflight refuses it (E_UNKNOWN_MODEL, step a).
BROKEN_RECIPE = {"id": "test-broken-recipe", "name": "test: a step on an unknown model", "steps": [
    {"id": "a", "op": "separate", "inputs": ["mix"], "params": {"model": "no-such-model"}}],
    "outputs": {"vocals": "a.vocals"}}
# A recipe whose second step's worker fails inside the job: its debug bundle must hold that step's job and lock.
FAILING_RECIPE = {"id": "test-failing-recipe", "name": "test: a step that fails in its worker", "steps": [
    {"id": "a", "op": "separate", "inputs": ["mix"], "params": {"model": DEFAULT_MODEL}},
    {"id": "b", "op": "separate", "inputs": ["a.vocals"], "params": {"model": "test-exit-fault"}}],
    "outputs": {"vocals": "b.vocals"}}
QUICK_MODEL = {**SLOW_MODEL, "id": "test-quick-fault", "name": "test: two quick chunks",
               "test_fault": {"chunks": 2, "chunk_seconds": 0.01}}
# A library's sys.exit() inside the job (tests/worker/fault_hook.py): the job fails, the worker answers.
FAILING_MODEL = {**SLOW_MODEL, "id": "test-exit-fault", "name": "test: exits inside the job",
                 "test_fault": {"fault": "exit"}}


@pytest.fixture(scope="module")
def serve_env(tmp_path_factory: pytest.TempPathFactory, dsp_env: Any) -> dict[str, str]:
    home = tmp_path_factory.mktemp("serve-home")
    write_user_registry(home, "test-models", [SLOW_MODEL, FAILING_MODEL, QUICK_MODEL])
    recipes = home / "config" / "recipes"
    recipes.mkdir(parents=True)
    (recipes / "test-recipes.json").write_text(json.dumps({"schema_version": 1,
                                                           "recipes": [DSP_RECIPE, BROKEN_RECIPE,
                                                                       FAILING_RECIPE]}))
    return {**home_sharing_session_envs(home), TEST_HOOK_ENV: str(FAULT_HOOK)}


@pytest.fixture(scope="module")
def server(serve_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(serve_env, "--max-upload-mb", "1", cwd=tmp_path_factory.mktemp("serve-cwd"))
    yield running
    assert running.stop() == 143  # SIGTERM ends it as it ends every command (E_TERMINATED)


def state_dir(env: dict[str, str]) -> Path:
    return Path(env["STEMSEP_HOME"]) / "state" / "serve"


def test_demo_mix_through_http_equals_separate(server: Server, serve_env: dict[str, str], tmp_path: Path) -> None:
    job_id = server.submit(inputs=[str(DEMO_MIX)])
    events = list(server.events(job_id))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "completed" and "progress" in kinds and "started" in kinds
    assert [e["sse_id"] for e in events] == [e["seq"] for e in events] == list(range(1, len(events) + 1))
    job = server.job(job_id)
    assert job["state"] == "completed" and job["last_seq"] == len(events)

    # the same files `stemsep separate` writes: names, format and samples (libsndfile stamps float WAVs with
    # the time they were written, so the bytes of two runs differ there)
    proc = run_cli("separate", DEMO_MIX, "-o", tmp_path / "cli", env=serve_env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert sorted(job["result"]["stems"]) == expected == [f"demo_mix_({s})_{DEFAULT_MODEL}.wav"
                                                            for s in ("instrumental", "vocals")]
    for name in expected:
        served = server.http.get(f"/v1/jobs/{job_id}/stems/{name}")
        assert served.status_code == 200
        assert_same_audio(served.content, (tmp_path / "cli" / name).read_bytes())
        assert Path(job["result"]["stems"][name]).parent == state_dir(serve_env) / "outputs" / job_id

    # a range of a stem, by its stem name
    whole = Path(job["result"]["stems"][expected[1]]).read_bytes()
    part = server.http.get(f"/v1/jobs/{job_id}/stems/vocals", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"

    # a client that reconnects with Last-Event-ID gets exactly the rest
    middle = len(events) // 2
    assert [e["seq"] for e in server.events(job_id, last_event_id=middle)] == [e["seq"] for e in events[middle:]]


def assert_same_audio(one: bytes, other: bytes) -> None:
    a, b = sf.SoundFile(io.BytesIO(one)), sf.SoundFile(io.BytesIO(other))
    assert (a.format, a.subtype, a.samplerate, a.channels, a.frames) == (b.format, b.subtype, b.samplerate,
                                                                         b.channels, b.frames)
    assert np.array_equal(a.read(), b.read())


def test_upload_then_separate(server: Server, serve_env: dict[str, str]) -> None:
    uploaded = server.http.post("/v1/uploads", params={"filename": "../../my song.flac"}, content=DEMO_MIX.read_bytes())
    assert uploaded.status_code == 201, uploaded.text
    body = uploaded.json()
    stored = state_dir(serve_env) / "uploads" / body["id"] / "my song.flac"  # the client's dirs are dropped
    assert body["name"] == "my song.flac" and stored.read_bytes() == DEMO_MIX.read_bytes()
    job = server.wait_final(server.submit(inputs=[body["input"]]))
    assert job["state"] == "completed", job
    assert sorted(job["result"]["stems"]) == [f"my song_({s})_{DEFAULT_MODEL}.wav" for s in ("instrumental", "vocals")]
    # the upload goes once its job has ended (envmgr/serve/retention.py); the stems stay
    wait_for(lambda: not stored.parent.exists(), what="the finished job's upload to be removed", timeout=10)
    assert all(Path(p).is_file() for p in job["result"]["stems"].values())


def test_a_recipe_job_runs_its_graph_and_returns_its_outputs(server: Server) -> None:
    """A recipe job runs as `stemsep run` runs it: steps announced, one final output per recipe output, in place;
    the intermediates are gone."""
    job_id = server.submit(kind="recipe", recipe=DSP_RECIPE["id"], inputs=[str(DEMO_MIX)])
    events = list(server.events(job_id))
    job = server.job(job_id)
    assert job["state"] == "completed", job
    assert [e["step"] for e in events if e["type"] == "step"] == ["a", "b", "avg"]
    (path,) = job["result"]["stems"].values()
    assert Path(path).name == f"demo_mix_(vocals)_{DSP_RECIPE['id']}.wav" and Path(path).is_file()
    assert sf.info(path).frames == sf.info(str(DEMO_MIX)).frames
    assert not list(Path(path).parent.glob(".stemsep-recipe-*"))


def test_a_failed_job_has_a_debug_bundle_with_its_worker(server: Server) -> None:
    """Server jobs get the bundle `stemsep separate` writes on failure (issue 17, "everywhere a job runs"): its
    path in the job's error, the job's facts and the warm worker's transcript in it."""
    import zipfile

    job = server.wait_final(server.submit(inputs=[str(DEMO_MIX)], models=[FAILING_MODEL["id"]]))
    assert job["state"] == "failed" and job["error"]["code"] == "E_WORKER_INTERNAL", job
    bundle = Path(job["error"]["debug_bundle"])
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        facts = json.loads(archive.read("bundle.json"))
    assert "REPORT.md" in names and any("transcript" in n for n in names), names
    assert facts["command"][:3] == ["stemsep", "serve", "job"] and job["id"] in facts["command"], facts["command"]
    assert server.job(server.submit(inputs=[str(DEMO_MIX)]))  # the server goes on


def test_a_failed_recipe_job_has_a_bundle_with_its_steps_jobs_and_locks(server: Server) -> None:
    """A server recipe job's bundle is `stemsep run`'s: each step model's job, env lock and the input the step read
    (the upstream stem, not the mix), so `debug replay` can rebuild and re-run the failing step."""
    import zipfile

    job = server.wait_final(server.submit(kind="recipe", recipe=FAILING_RECIPE["id"], inputs=[str(DEMO_MIX)]))
    assert job["state"] == "failed" and job["error"]["code"] == "E_WORKER_INTERNAL", job
    with zipfile.ZipFile(job["error"]["debug_bundle"]) as archive:
        names = set(archive.namelist())
        failing = json.loads(archive.read("models/test-exit-fault/job.json"))
        events = [json.loads(line) for line in archive.read("events.jsonl").decode().splitlines()]
    # step a may be a step-cache hit (an earlier test ran it on the mix): then its env was never needed, so no lock
    assert {f"models/{DEFAULT_MODEL}/job.json", "models/test-exit-fault/lock.txt"} <= names, sorted(names)
    assert failing["step"]["reads"] == "a.vocals" and failing["step_inputs"], failing
    assert any(e["type"] == "preflight" for e in events), [e["type"] for e in events]


def test_cancel_a_running_job_and_the_queue_goes_on(server: Server) -> None:
    slow = server.submit(inputs=[str(DEMO_MIX)], models=[SLOW_MODEL["id"]])
    after = server.submit(inputs=[str(DEMO_MIX)])
    stream = server.events(slow)
    assert any(event["type"] == "progress" for event in stream)  # stops reading at its first progress
    stream.close()
    cancelled = server.http.delete(f"/v1/jobs/{slow}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] in ("cancelling", "cancelled")
    job = server.wait_final(slow, timeout=60)
    assert job["state"] == "cancelled" and list(server.events(slow))[-1]["type"] == "cancelled"
    assert server.wait_final(after)["state"] == "completed"
    again = server.http.delete(f"/v1/jobs/{slow}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "E_JOB_FINISHED"


def test_pause_reorder_resume(server: Server) -> None:
    assert server.http.post("/v1/queue/pause").json() == {"paused": True}
    first, second, third = (server.submit(inputs=[str(DEMO_MIX)]) for _ in range(3))
    reordered = server.http.post("/v1/queue/reorder", json={"job_ids": [third, first]})
    assert reordered.json()["queued"] == [third, first, second]
    assert all(server.job(j)["state"] == "queued" for j in (first, second, third))
    assert server.http.post("/v1/queue/resume").json() == {"paused": False}
    finished = {j: server.wait_final(j)["started"] for j in (first, second, third)}
    assert sorted(finished, key=lambda j: finished[j]) == [third, first, second]


def test_catalog_health_preflight_openapi(server: Server) -> None:
    assert server.http.get("/v1/health").json()["ok"] is True
    models = server.http.get("/v1/models").json()["models"]
    assert DEFAULT_MODEL in {m["id"] for m in models}
    assert server.http.get(f"/v1/models/{DEFAULT_MODEL}").json()["id"] == DEFAULT_MODEL
    assert server.http.get("/v1/models/no-such-model").status_code == 404
    assert isinstance(server.http.get("/v1/recipes").json()["recipes"], list)
    report = server.http.post("/v1/preflight", json={"inputs": [str(DEMO_MIX)]}).json()
    assert report["can_proceed"] is True and report["report"]["model"] == DEFAULT_MODEL
    document = server.http.get("/v1/openapi.json").json()
    assert document["openapi"].startswith("3.") and "/v1/jobs/{job_id}/events" in document["paths"]


def test_preflight_judges_a_recipes_whole_graph(server: Server) -> None:
    """`{"recipe": id}` gets the graph's report, the one the recipe job's own preflight gives (`stemsep run`'s)."""
    good = server.http.post("/v1/preflight", json={"recipe": DSP_RECIPE["id"], "inputs": [str(DEMO_MIX)]})
    assert good.status_code == 200, good.text
    report = good.json()["report"]
    assert good.json()["can_proceed"] is True and report["recipe"] == DSP_RECIPE["id"] and not report["errors"]
    assert report["order"] == ["a", "b", "avg"] and report["outputs"] == DSP_RECIPE["outputs"]
    assert [s["preflight"]["model"] for s in report["steps"] if s["op"] == "separate"] == [DEFAULT_MODEL,
                                                                                         "test-quick-fault"]

    broken = server.http.post("/v1/preflight", json={"recipe": BROKEN_RECIPE["id"], "inputs": [str(DEMO_MIX)]})
    assert broken.status_code == 200 and broken.json()["can_proceed"] is False
    errors = broken.json()["report"]["errors"]
    assert ("E_UNKNOWN_MODEL", "a") in [(e["code"], e["step"]) for e in errors]
    assert all(e["blocking"] and e["hint"] for e in errors)  # each says what to do
    job = server.wait_final(server.submit(kind="recipe", recipe=BROKEN_RECIPE["id"], inputs=[str(DEMO_MIX)]))
    assert job["state"] == "failed"
    (ran,) = [e["report"] for e in server.events(job["id"]) if e["type"] == "preflight"]
    assert [(e["code"], e["step"]) for e in ran["errors"]] == [(e["code"], e["step"]) for e in errors]

    unknown = server.http.post("/v1/preflight", json={"recipe": "no-such-recipe", "inputs": [str(DEMO_MIX)]})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "E_UNKNOWN_RECIPE")
    both = server.http.post("/v1/preflight", json={"recipe": DSP_RECIPE["id"], "models": [DEFAULT_MODEL],
                                                   "inputs": [str(DEMO_MIX)]})
    assert (both.status_code, both.json()["error"]["code"]) == (400, "E_JOB_SPEC")


def test_models_carry_their_state_here_and_badge_facts(server: Server) -> None:
    """GET /v1/models: installed / downloadable / import / blocked per model, with the facts the page's badges show
    (real registry entries: htdemucs's checkpoint needs full unpickling; unwa-hyperace has manual steps that
    its runtime automates; the packaged default model has no file to fetch)."""
    rows = {m["id"]: m for m in server.http.get("/v1/models").json()["models"]}
    assert {m["state"] for m in rows.values()} <= {"installed", "downloadable", "import", "blocked"}
    assert rows[DEFAULT_MODEL]["state"] == "installed" and rows[DEFAULT_MODEL]["missing_artifacts"] == []
    blocked = [m for m in rows.values() if m["catalog_only"]]
    assert blocked and all(m["state"] == "blocked" and m["blocked_reason"] for m in blocked)
    assert rows["htdemucs"]["unsafe_pickle"] is True and rows[DEFAULT_MODEL]["unsafe_pickle"] is False
    assert rows["htdemucs"]["state"] == "downloadable" and rows["htdemucs"]["missing_artifacts"]
    assert rows["unwa-hyperace"]["manual_steps"] == 2 and rows["unwa-hyperace"]["manual_steps_open"] == 0
    one = server.http.get("/v1/models/htdemucs").json()
    assert one["state"] == "downloadable" and one["unsafe_pickle"] is True


def test_a_models_artifacts_env_and_settings_for_its_page(server: Server, dsp_env: Any) -> None:
    """GET /v1/models/{id} adds what the model page shows: each artifact's state in the store and its source,
    the env it would use (from the cached lock: the default model's is the session's built DSP env), and the
    settings per runtime in native terms (htdemucs: a real entry)."""
    default = server.http.get(f"/v1/models/{DEFAULT_MODEL}").json()
    assert default["artifacts"] == []
    assert default["env"] == {"runtime": "stemsep-legacy", "env_id": dsp_env.id, "state": "ready", "built": True,
                              "problem": None, "python": dsp_env.versions["python"],
                              "python_spec": default["env"]["python_spec"], "torch": None,
                              "setup": f"stemsep setup {DEFAULT_MODEL}"}

    one = server.http.get("/v1/models/htdemucs").json()
    checkpoint = next(a for a in one["artifacts"] if a["kind"] == "checkpoint")
    assert checkpoint["state"] == "downloadable" and checkpoint["present"] is False and checkpoint["used_here"]
    assert checkpoint["source"] == "dl.fbaipublicfiles.com" and checkpoint["pinned"]
    assert checkpoint["sha256"] == one["explain"]["artifacts"][0]["sha256"] and checkpoint["size_bytes"] > 0
    assert [a["filename"] for a in one["artifacts"]] == [a["filename"] for a in one["explain"]["artifacts"]]
    env = one["env"]
    assert env["runtime"] == one["runtime"] == "audio-separator" and env["setup"] == "stemsep setup htdemucs"
    assert env["built"] is (env["state"] == "ready") and (env["env_id"] is None) is (env["state"] == "not_resolved")
    assert env["torch"]["requirement"].startswith("torch")
    rows = {r["setting"]: r for r in one["settings"]["audio-separator"]["rows"]}
    assert rows["overlap"]["param"] == "demucs_params.overlap" and rows["overlap"]["value"] == 0.5
    assert rows["overlap"]["meaning"].startswith("ratio") and rows["overlap"]["provenance"] == "registry"
    assert rows["segment_size"]["value"] is None and rows["segment_size"]["meaning"] == "seconds"
    assert set(one["settings"]) == set(one["explain"]["settings"]["per_runtime"])


def test_openapi_lists_exactly_the_routes(tmp_path: Path) -> None:
    from starlette.routing import Route

    from envmgr.config import load_config
    from envmgr.serve.http_app import OPENAPI, create_app
    from envmgr.serve.http_page import is_page_path
    from envmgr.serve.paths import PathPolicy
    from envmgr.serve.queue import JobQueue
    from envmgr.serve.scheduler import Scheduler

    config = load_config()
    queue = JobQueue(tmp_path)
    try:
        app = create_app(Scheduler(queue, config, PathPolicy.from_config(config, 1)), config, "t" * 20)
        routes = {(r.path.replace(":path}", "}"), m.lower()) for r in app.routes if isinstance(r, Route)
                  and not is_page_path(r.path) for m in (r.methods or ()) if m != "HEAD"}  # the page: not API
        documented = {(path, method) for path, ops in OPENAPI["paths"].items() for method in ops}
        assert routes == documented
    finally:
        queue.close()


# --- refusals ----------------------------------------------------------------------------------------------
def test_every_route_refuses_a_request_without_the_token(server: Server) -> None:
    from envmgr.serve.http_app import OPENAPI

    for path, ops in OPENAPI["paths"].items():
        url = path.replace("{job_id}", "x").replace("{model_id}", "x").replace("{name}", "x")
        for method in ops:
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": server.token}):
                response = httpx.request(method.upper(), server.url + url, headers=headers, timeout=30)
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"]["code"] == "E_UNAUTHORIZED"


def test_token_file_is_private_and_is_the_printed_token(server: Server, serve_env: dict[str, str]) -> None:
    path = state_dir(serve_env) / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == server.token


@pytest.mark.parametrize("args, message", [
    (("--host", "0.0.0.0"), "needs an explicit token"),
    (("--host", "192.0.2.1"), "needs an explicit token"),
    (("--token", "short"), "shorter than"),
])
def test_another_address_needs_host_and_an_explicit_token(serve_env: dict[str, str], tmp_path: Path,
                                                          args: tuple[str, ...], message: str) -> None:
    proc = run_cli("serve", "--port", "0", *args, env=serve_env, unset=["STEMSEP_SERVE_TOKEN"], cwd=tmp_path,
                   timeout=60)
    assert proc.returncode == 2 and "E_SERVE_INSECURE" in proc.stderr and message in proc.stderr, proc.stderr


def test_paths_outside_what_the_client_names_and_the_config_allows_are_refused(
        server: Server, serve_env: dict[str, str], tmp_path: Path) -> None:
    allowed = state_dir(serve_env) / "outputs"
    allowed.mkdir(parents=True, exist_ok=True)
    (allowed / "escape").symlink_to(tmp_path)  # a link inside the allowed dir pointing out of it
    before = sorted(os.listdir(tmp_path))
    cases = [
        ({"inputs": ["scripts/demo/demo_mix.flac"]}, 403, "E_PATH_REFUSED"),  # relative: whose cwd?
        ({"inputs": [str(tmp_path)]}, 403, "E_PATH_NOT_FILE"),  # a dir
        ({"inputs": [str(tmp_path / "missing.flac")]}, 403, "E_PATH_NOT_FILE"),
        ({"inputs": ["upload:0123456789abcdef0123456789abcdef"]}, 404, "E_UPLOAD_UNKNOWN"),
        ({"inputs": ["upload:../../token"]}, 404, "E_UPLOAD_UNKNOWN"),
        ({"inputs": [str(DEMO_MIX)], "output_dir": str(tmp_path / "out")}, 403, "E_OUTPUT_NOT_ALLOWED"),
        ({"inputs": [str(DEMO_MIX)], "output_dir": str(allowed / ".." / "x")}, 403, "E_OUTPUT_NOT_ALLOWED"),
        ({"inputs": [str(DEMO_MIX)], "output_dir": str(allowed / "escape" / "x")}, 403, "E_OUTPUT_NOT_ALLOWED"),
        ({"inputs": [str(DEMO_MIX)], "output_dir": "out"}, 403, "E_PATH_REFUSED"),
        ({"inputs": [str(DEMO_MIX)], "format": "exe"}, 400, "E_JOB_SPEC"),
        ({"kind": "recipe", "recipe": "no-such-recipe", "inputs": [str(DEMO_MIX)]}, 400, "E_UNKNOWN_RECIPE"),
    ]
    jobs_before = len(server.http.get("/v1/jobs").json()["jobs"])
    for spec, status, code in cases:
        response = server.http.post("/v1/jobs", json={"kind": "separate", **spec})
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), spec
    assert len(server.http.get("/v1/jobs").json()["jobs"]) == jobs_before  # nothing was queued
    assert sorted(os.listdir(tmp_path)) == before  # nothing was written there
    # a job's stems are only the files its result names
    done = server.wait_final(server.submit(inputs=[str(DEMO_MIX)]))
    for name in ("..%2F..%2Ftoken", "token", "/etc/passwd"):
        assert server.http.get(f"/v1/jobs/{done['id']}/stems/{name}").status_code == 404


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(server: Server, serve_env: dict[str, str]) -> None:
    uploads = state_dir(serve_env) / "uploads"
    before = sorted(os.listdir(uploads)) if uploads.exists() else []
    big = b"\0" * ((1 << 20) + 1)  # the server runs with --max-upload-mb 1
    response = server.http.post("/v1/uploads", params={"filename": "big.wav"}, content=big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "E_UPLOAD_TOO_LARGE"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while the body streams in
        for _ in range(5):
            yield b"\0" * (300 << 10)
    response = server.http.post("/v1/uploads", params={"filename": "big.wav"}, content=chunks())
    assert response.status_code == 413
    assert (sorted(os.listdir(uploads)) if uploads.exists() else []) == before


def test_the_cli_start_up_does_not_load_the_server() -> None:
    import subprocess
    import sys

    code = ("import sys, envmgr.cli.main; print([m for m in ('starlette', 'uvicorn', 'sqlite3', 'envmgr.serve.queue') "
            "if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
