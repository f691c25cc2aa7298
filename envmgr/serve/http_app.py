"""The loopback HTTP API of `stemsep serve --http`: Starlette routes over the shared queue and scheduler.

Starlette + uvicorn (the `serve` extra) rather than FastAPI: the job spec is checked by envmgr/serve/spec.py,
which the stdio front end shares, so FastAPI's pydantic request models would be a second schema to keep in
step; Starlette is the small, well-kept ASGI toolkit FastAPI itself is built on (anyio its one dependency),
has range requests in FileResponse and streaming responses for Server-Sent Events. The OpenAPI document is
written out here (`OPENAPI`) and a test checks it lists exactly the routes the app has.

Every /v1 request needs `Authorization: Bearer <token>`; errors are `{"error": {code, message, why, hint}}`.
The web page at `/` (http_page.py) checks a cookie set from the printed link instead, then calls /v1 the same way.
Blocking work (SQLite, preflight) runs in Starlette's thread pool (sync endpoints).
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from envmgr.errors import UsageError
from envmgr.serve.http_page import is_page_path, page_routes
from envmgr.serve.paths import UPLOAD_PREFIX, UploadTooLarge
from envmgr.serve.queue import FINAL, QUEUED, RUNNING, QueueError
from registry.errors import StemSepError

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.serve.scheduler import Scheduler

API_VERSION = "v1"
SSE_KEEPALIVE = 15.0  # seconds between comment lines on a quiet event stream (proxies close idle ones)
_STATUS = {"E_UNAUTHORIZED": 401, "E_JOB_UNKNOWN": 404, "E_UNKNOWN_MODEL": 404, "E_STEM_UNKNOWN": 404,
           "E_UPLOAD_UNKNOWN": 404, "E_JOB_FINISHED": 409, "E_JOB_NOT_QUEUED": 409, "E_PATH_REFUSED": 403,
           "E_PATH_NOT_FILE": 403, "E_OUTPUT_NOT_ALLOWED": 403, "E_UPLOAD_TOO_LARGE": 413}


def create_app(scheduler: Scheduler, config: MachineConfig, token: str) -> Starlette:
    api = _Api(scheduler, config)
    routes = [
        Route("/v1/health", api.health, methods=["GET"]),
        Route("/v1/openapi.json", api.openapi, methods=["GET"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", api.model, methods=["GET"]),
        Route("/v1/recipes", api.recipes, methods=["GET"]),
        Route("/v1/preflight", api.preflight, methods=["POST"]),
        Route("/v1/uploads", api.upload, methods=["POST"]),
        Route("/v1/jobs", api.submit, methods=["POST"]),
        Route("/v1/jobs", api.jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id}", api.job, methods=["GET"]),
        Route("/v1/jobs/{job_id}", api.cancel, methods=["DELETE"]),
        Route("/v1/jobs/{job_id}/events", api.events, methods=["GET"]),
        Route("/v1/jobs/{job_id}/stems/{name}", api.stem, methods=["GET"]),
        Route("/v1/queue/pause", api.pause, methods=["POST"]),
        Route("/v1/queue/resume", api.resume, methods=["POST"]),
        Route("/v1/queue/reorder", api.reorder, methods=["POST"]),
        *page_routes(token),  # the web page (http_page.py): its own cookie-or-link check
    ]
    app = Starlette(routes=routes, exception_handlers={StemSepError: _error_response})
    app.add_middleware(_BearerToken, token=token)
    return app


def _error_response(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, StemSepError)
    return JSONResponse({"error": err.to_dict()}, status_code=_STATUS.get(err.code, 400))


class _BearerToken:
    """Refuses every request without the server's token (constant-time compare), before any route runs."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_page_path(scope["path"]):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                err = UsageError("missing or wrong bearer token", code="E_UNAUTHORIZED",
                                 why="every request to stemsep serve needs the token it printed at start",
                                 hint="send `Authorization: Bearer <token>`; the token is in <state_dir>/serve/token")
                response = JSONResponse({"error": err.to_dict()}, status_code=401,
                                        headers={"WWW-Authenticate": 'Bearer realm="stemsep"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Api:
    def __init__(self, scheduler: Scheduler, config: MachineConfig) -> None:
        self.scheduler, self.queue, self.config, self.paths = scheduler, scheduler.queue, config, scheduler.paths

    # --- catalog and checks ------------------------------------------------------------------------
    def health(self, request: Request) -> JSONResponse:
        jobs = self.queue.list((QUEUED, RUNNING))
        return JSONResponse({"ok": True, "api": API_VERSION, "paused": self.queue.paused,
                             "queued": sum(j.state == QUEUED for j in jobs),
                             "running": sum(j.state == RUNNING for j in jobs), "slots": self.scheduler.slots()})

    def openapi(self, request: Request) -> JSONResponse:
        return JSONResponse(OPENAPI)

    def models(self, request: Request) -> JSONResponse:
        return JSONResponse({"models": self._with_state(_model_rows())})

    def model(self, request: Request) -> JSONResponse:
        model_id = request.path_params["model_id"]
        row = next((r for r in _model_rows() if r["id"] == model_id), None)
        if row is None:
            raise UsageError(f"no model {model_id!r}", code="E_UNKNOWN_MODEL", hint="GET /v1/models lists them")
        row = self._with_state([row])[0]  # this model's state only: not the whole registry's store status
        explain = _explain(model_id)
        return JSONResponse({**row, "explain": explain, **self._details(model_id, row, explain)})

    def _details(self, model_id: str, row: dict[str, Any], explain: dict[str, Any]) -> dict[str, Any]:
        """The model page's facts beyond `models show` (envmgr/serve/model_details.py): artifacts with their state
        in the store, the env it would use, settings per runtime as rows."""
        from envmgr.artifacts.store import ArtifactStore
        from envmgr.serve.model_details import artifact_rows, env_summary, setting_rows

        registry = self.scheduler.registry()
        if model_id not in registry.models:  # listed, not loadable here: what `models show` says is all there is
            return {}
        entry, runtime = registry.view(model_id), row.get("runtime")
        return {"artifacts": artifact_rows(entry, ArtifactStore(self.config.model_store), runtime),
                "env": env_summary(entry, runtime, self.config), "settings": setting_rows(explain["settings"])}

    def recipes(self, request: Request) -> JSONResponse:
        try:
            from envmgr.catalog import recipe_files
        except ImportError:  # the recipe registry (issue 16) is not in this build yet
            return JSONResponse({"recipes": []})
        return JSONResponse({"recipes": [{"id": rid, **loaded.recipe.model_dump(mode="json", exclude_none=True)}
                                         for rid, loaded in recipe_files.load().items()]})

    def preflight(self, request: Request) -> JSONResponse:
        """The preflight report for inputs and a model, as `stemsep preflight --json` gives it; for a recipe
        (`{"recipe": id}`), the whole graph's report, as `stemsep run` checks it before any step starts."""
        from envmgr.preflight.run import PreflightRequest, run_preflight
        from envmgr.serve.spec import parse_spec

        body = _json_body(request)
        kind = "recipe" if body.get("recipe") is not None or body.get("kind") == "recipe" else "separate"
        spec = parse_spec({"kind": kind, **{k: v for k, v in body.items() if k != "kind"}})
        inputs = [self.paths.input_path(given) for given in spec.inputs]
        if spec.recipe is not None:
            from envmgr.catalog.recipe_files import get_recipe
            from envmgr.preflight.recipe import run_recipe_preflight

            graph = run_recipe_preflight(get_recipe(spec.recipe), inputs, spec.job_options(), config=self.config,
                                         registry=self.scheduler.registry())
            return JSONResponse({"can_proceed": graph.can_proceed, "report": graph.report})
        checked = run_preflight(PreflightRequest(inputs=inputs, model_id=spec.models[0] if spec.models else None,
                                                 runtime=spec.runtime, options=spec.job_options()), config=self.config)
        return JSONResponse({"can_proceed": checked.can_proceed, "report": checked.report})

    def _with_state(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Listing rows (`stemsep models list --json`), each with its state on this machine
        (envmgr/serve/model_state.py: installed / downloadable / import / blocked, badge facts)."""
        from envmgr.artifacts.store import ArtifactStore
        from envmgr.serve.model_state import model_state

        registry, store = self.scheduler.registry(), ArtifactStore(self.config.model_store)
        return [{**row, **model_state(registry.view(row["id"]), store)} if row["id"] in registry.models else row
                for row in rows]

    # --- jobs ------------------------------------------------------------------------------------------
    async def upload(self, request: Request) -> JSONResponse:
        """The request body is the file; `?filename=` names it (the stems are named after it)."""
        limit = self.paths.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        upload_id, path = self.paths.new_upload(request.query_params.get("filename") or "upload")
        size = 0
        try:
            with open(path, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            path.parent.rmdir()
            raise
        return JSONResponse({"id": upload_id, "input": UPLOAD_PREFIX + upload_id, "name": path.name, "size": size},
                            status_code=201)

    def submit(self, request: Request) -> JSONResponse:
        job_id = self.scheduler.submit(_json_body(request))
        return JSONResponse(self.queue.get(job_id).to_json(), status_code=201,
                            headers={"Location": f"/v1/jobs/{job_id}"})

    def jobs(self, request: Request) -> JSONResponse:
        states = [s for s in request.query_params.getlist("state") if s]
        return JSONResponse({"jobs": [j.to_json() for j in self.queue.list(states)], "paused": self.queue.paused})

    def job(self, request: Request) -> JSONResponse:
        return JSONResponse(self.queue.get(request.path_params["job_id"]).to_json())

    def cancel(self, request: Request) -> JSONResponse:
        return JSONResponse(self.queue.cancel(request.path_params["job_id"]).to_json())

    def pause(self, request: Request) -> JSONResponse:
        self.queue.pause()
        return JSONResponse({"paused": True})

    def resume(self, request: Request) -> JSONResponse:
        self.queue.resume()
        self.scheduler.wake()
        return JSONResponse({"paused": False})

    def reorder(self, request: Request) -> JSONResponse:
        ids = _json_body(request).get("job_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise QueueError('"job_ids" must be a list of job ids', hint='send {"job_ids": ["...", "..."]}')
        return JSONResponse({"queued": [j.id for j in self.queue.reorder(ids)]})

    async def events(self, request: Request) -> StreamingResponse:
        """Server-Sent Events: every event of the job after Last-Event-ID (or ?after=), then live ones; each
        with `id: <seq>`. The stream ends after the job's terminal event."""
        import anyio.to_thread

        job_id = request.path_params["job_id"]
        after = _after(request)
        await anyio.to_thread.run_sync(self.queue.get, job_id)  # an unknown job is a 404, not an empty stream

        async def stream() -> AsyncIterator[str]:
            seq = after
            while True:
                batch = await anyio.to_thread.run_sync(self.queue.events, job_id, seq, 500)
                for event in batch:
                    seq = event["seq"]
                    yield f"id: {seq}\nevent: {event['type']}\ndata: {json.dumps(event, default=str)}\n\n"
                    if event["type"] in FINAL:
                        return
                if not batch and not await anyio.to_thread.run_sync(self.queue.wait_events, job_id, seq,
                                                                     SSE_KEEPALIVE):
                    yield ": keepalive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def stem(self, request: Request) -> Response:
        """A stem file of a job: by file name, or by stem name when one file has it. Range requests work."""
        job = self.queue.get(request.path_params["job_id"])
        name = request.path_params["name"]
        files = (job.result or {}).get("stems", {})
        path = files.get(name)
        if path is None:
            by_stem = [p for o in (job.result or {}).get("outputs", []) for s, p in o["stems"].items() if s == name]
            path = by_stem[0] if len(by_stem) == 1 else None
        if path is None or not Path(path).is_file():
            raise UsageError(f"job {job.id} has no stem {name!r}", code="E_STEM_UNKNOWN",
                             why=f"its stems: {', '.join(files) or 'none (yet)'}",
                             hint="use a file name from the job's result.stems")
        return FileResponse(path, filename=Path(path).name)


def _model_rows() -> list[dict[str, Any]]:
    from envmgr.catalog.registry_files import listing

    return listing()[0]


def _explain(model_id: str) -> dict[str, Any]:
    """`stemsep models show --json`'s content: where it runs and why not elsewhere, requirements, settings."""
    from envmgr.catalog.model_explain import explain_model
    from envmgr.catalog.registry_files import load

    reg = load(())
    entry = reg.get(model_id)
    return explain_model(entry, source=reg.sources[entry.id], default_model=reg.default_model, raw=reg.raw[entry.id])


def _json_body(request: Request) -> dict[str, Any]:
    """The JSON object a sync endpoint was sent (read through the request's own loop)."""
    import anyio.from_thread

    from envmgr.serve.spec import SpecError

    raw = anyio.from_thread.run(request.body)
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise SpecError(f"the request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise SpecError("the request body must be a JSON object")
    return body


def _after(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    return int(raw) if raw.isdigit() else 0


def _too_large(limit: int) -> UploadTooLarge:
    return UploadTooLarge(f"the upload is larger than this server's limit of {limit // (1 << 20)} MiB",
                          hint="send a smaller file, or start the server with a higher --max-upload-mb")


def _op(summary: str, *, body: str | None = None, ok: str = "200", sse: bool = False, audio: bool = False,
        params: tuple[str, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": [{"bearer": []}],
                          "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                         for p in params]}
    if body:
        op["requestBody"] = {"required": True, "content": {
            "application/octet-stream" if body == "file" else "application/json":
                {"schema": {"type": "string", "format": "binary"} if body == "file" else {"$ref": body}}}}
    media = "text/event-stream" if sse else "audio/*" if audio else "application/json"
    op["responses"] = {ok: {"description": "ok", "content": {media: {"schema": {}}}},
                       "4XX": {"description": "refused: {error: {code, message, why, hint}}",
                               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "stemsep serve", "version": API_VERSION,
             "description": "Loopback HTTP API of StemSep Runtime (docs/serve.md)."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "why": {"type": "string"},
                "hint": {"type": "string"}}}}},
            "JobSpec": {"type": "object", "required": ["inputs"], "properties": {
                "kind": {"enum": ["separate", "recipe"], "default": "separate"},
                "inputs": {"type": "array", "items": {"type": "string"},
                           "description": "absolute paths of existing files, or upload:<id>"},
                "models": {"type": "array", "items": {"type": "string"}, "description": "empty: the default model"},
                "model": {"type": "string", "description": "one model (same as models: [model])"},
                "recipe": {"type": "string", "description": "a recipe id, for kind recipe (POST /v1/preflight "
                                                            "takes it as kind recipe)"},
                "runtime": {"type": "string"},
                "output_dir": {"type": "string", "description": "inside one of the config's serve_output_dirs"},
                "format": {"enum": ["wav", "flac"], "default": "wav"},
                "options": {"type": "object", "properties": {
                    "enforcement": {"enum": ["strict", "soft", "report"]}, "dev_override": {"type": "boolean"},
                    "confirm_manual_steps": {"type": "boolean"}, "allow_unsafe_pickle": {"type": "boolean"},
                    "require_hashes": {"type": "boolean"}, "download": {"type": "boolean"},
                    "settings": {"type": "object", "description": "setting overrides, in the runtime's native "
                                                                  "meaning unless setting_meanings names another"},
                    "setting_meanings": {"type": "object", "description": 'e.g. {"overlap": "ratio"}'},
                    "env": {"type": "string", "description": "an adopted env's name (as stemsep separate --env)"}}}}},
            "Reorder": {"type": "object", "required": ["job_ids"],
                        "properties": {"job_ids": {"type": "array", "items": {"type": "string"}}}},
        },
    },
    "paths": {
        "/v1/health": {"get": _op("Liveness, queue counts and the slots (their GPU, their job)")},
        "/v1/openapi.json": {"get": _op("This document")},
        "/v1/models": {"get": _op("Every model of the registry (the rows `stemsep models list` shows), each with its "
                                  "state here: installed, downloadable, import (a file without a URL) or blocked "
                                  "(blocked_reason), and unsafe_pickle, manual_steps, manual_steps_open")},
        "/v1/models/{model_id}": {"get": _op("One model's row, with `explain` (`stemsep models show --json`), "
                                              "`artifacts` (each with its state in the model store, size, source), "
                                              "`env` (the env it would use: id from the cached lock or not resolved "
                                              "yet, built or not, the `stemsep setup` command) and `settings` per "
                                              "runtime as rows in native terms", params=("model_id",))},
        "/v1/recipes": {"get": _op("Every recipe this machine knows")},
        "/v1/preflight": {"post": _op("Preflight report for inputs and a model; with `recipe`, the recipe's whole "
                                      "graph as `stemsep run` checks it: {can_proceed, report}",
                                      body="#/components/schemas/JobSpec")},
        "/v1/uploads": {"post": _op("Store an input file (the body; ?filename=NAME); returns its upload:<id>",
                                    body="file", ok="201")},
        "/v1/jobs": {"post": _op("Queue a job", body="#/components/schemas/JobSpec", ok="201"),
                     "get": _op("Every job in queue order (?state= filters)")},
        "/v1/jobs/{job_id}": {"get": _op("One job", params=("job_id",)),
                              "delete": _op("Cancel a queued or running job", params=("job_id",))},
        "/v1/jobs/{job_id}/events": {"get": _op("The job's events as Server-Sent Events (id: seq; resume with "
                                                "Last-Event-ID or ?after=)", sse=True, params=("job_id",))},
        "/v1/jobs/{job_id}/stems/{name}": {"get": _op("A stem file (Range requests supported)", audio=True,
                                                      params=("job_id", "name"))},
        "/v1/queue/pause": {"post": _op("Start no queued job until resumed")},
        "/v1/queue/resume": {"post": _op("Start queued jobs again")},
        "/v1/queue/reorder": {"post": _op("Put these queued jobs first, in this order",
                                          body="#/components/schemas/Reorder")},
    },
}
