"""A job's queue events (docs/serve.md) as StemSep's desktop app reads them: `separation_started`,
`separation_progress`, `separation_step_started`/`_completed` and exactly one of `separation_complete`,
`separation_error`, `separation_cancelled`; and the job snapshot its polling reads (JobSnapshot, camelCase).

`JobEvents` is fed a job's events in order (live, or replayed from the queue for a snapshot) and keeps what
the app's events need: overall progress (monotonic, 0-100, from the worker's real chunk progress), the
open step (one per model of the job: `meta.phase` "pipeline", `meta.step.{index, number, name, model_id,
total}`), the stems written. Pure: no I/O, so the live stream and polling read the same truth.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envmgr.serve.queue import Job

APP_STATUS = {"queued": "pending", "running": "running", "cancelling": "cancelling", "completed": "completed",
              "failed": "failed", "cancelled": "cancelled"}
# Where each worker stage sits within one input's share of the progress bar (docs/protocol.md's stages).
_STAGE_SPAN = {"read": (0.0, 0.05), "separate": (0.05, 0.92), "write": (0.92, 1.0)}
_HOST_MESSAGES = {"plan": "Planned {model} on {runtime}", "env_ready": "Environment ready for {model}"}


def error_text(error: dict[str, Any] | None, fallback: str = "Separation failed") -> str:
    """Our error dict as one line the app shows: `CODE: message (hint)`."""
    if not error:
        return fallback
    text = f"{error.get('code') or 'FAILED'}: {error.get('message') or fallback}"
    return f"{text} ({error['hint']})" if error.get("hint") else text


def output_files(outputs: list[dict[str, Any]]) -> dict[str, str]:
    """{stem: path} as the app wants it; with several inputs or models (stem names repeat) keyed by the
    file's name without suffix instead, so no stem hides another."""
    pairs = [(stem, path) for output in outputs for stem, path in (output.get("stems") or {}).items()]
    if len({stem for stem, _ in pairs}) == len(pairs):
        return dict(pairs)
    return {Path(path).stem: path for _, path in pairs}


class JobEvents:
    def __init__(self, job_id: str, models: list[str], inputs: int, selection: tuple[str, str | None]) -> None:
        self.job_id = job_id
        self.models = models  # as the spec names them; empty: the default model (known once planned)
        self.inputs = max(1, inputs)
        self.selection = selection
        self.progress = 0.0
        self.message: str | None = None
        self.error: dict[str, Any] | None = None
        self.outputs: list[dict[str, Any]] = []
        self.terminal: str | None = None
        self._started_units = 0  # inputs (of every model) started so far
        self._step: dict[str, Any] | None = None
        self._step_since = 0.0
        self._step_index = -1

    @property
    def _units(self) -> int:
        return self.inputs * max(1, len(self.models))

    def map(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The app's events for one of our events (often none)."""
        kind = event.get("type", "")
        handler = getattr(self, "_on_" + kind.replace(".", "_"), None)
        if handler is not None:
            return list(handler(event))
        if kind in _HOST_MESSAGES:
            return self._note(_HOST_MESSAGES[kind].format(model=event.get("model"), runtime=event.get("runtime")),
                              {kind: {k: v for k, v in event.items() if k not in ("seq", "time")}})
        if kind == "env" and event.get("message"):
            return self._note(f"Environment: {event['message']}", {"env_stage": event.get("stage")})
        if kind.startswith("artifact.") and kind in ("artifact.start", "artifact.done", "artifact.fallback"):
            return self._note(f"Model file {event.get('filename')}: {event.get('message') or kind[9:]}",
                              {"artifact": kind[9:], "model_id": event.get("model_id")})
        return []

    # --- our events --------------------------------------------------------------------------------
    def _on_started(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        self._started_units, self._step, self._step_index, self.progress = 0, None, -1, 0.0
        self.message = "Started"
        kind, selection_id = self.selection
        return [self._event("separation_started", meta={"attempt": event.get("attempt", 1),
                                                        "selection_type": kind, "selection_id": selection_id})]

    def _on_requeued(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return self._note(event.get("message") or "requeued", {"requeued": True})

    def _on_preflight(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        report = event.get("report") or {}
        warnings = [w.get("code") for w in report.get("warnings", [])]
        return self._note("Preflight passed" + (f" with warnings: {', '.join(map(str, warnings))}" if warnings else ""),
                          {"preflight": {"can_proceed": report.get("can_proceed"), "warnings": warnings}})

    def _on_worker(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        warm = event.get("warm")
        return self._note("Worker ready" + (" (warm)" if warm else ""),
                          {"worker": {"pid": event.get("pid"), "warm": warm, "device": event.get("device")}})

    def _on_job(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """An input starts: a new model opens a new step."""
        self._started_units += 1
        model = event.get("model") or ""
        out: list[dict[str, Any]] = []
        if self._step is None or self._step["model_id"] != model:
            out += self._close_step("completed")
            self._step_index += 1
            total = max(1, len(self.models))
            self._step = {"index": self._step_index, "number": self._step_index + 1, "name": "separate",
                          "model_id": model, "total": total}
            self._step_since = time.time()
            out.append(self._event("separation_step_started", ts=self._step_since, progress=self.progress,
                                   meta=self._meta()))
        self.message = f"Separating {Path(str(event.get('input'))).name} with {model}"
        return out + [self._progress_event(meta={"input": event.get("input")})]

    def _on_progress(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        stage, done, total = event.get("stage"), event.get("done") or 0, event.get("total") or 0
        low, high = _STAGE_SPAN.get(str(stage), (0.0, 1.0))
        within = low + (high - low) * (done / total if total else 0.0)
        unit = max(0, self._started_units - 1)
        self.progress = max(self.progress, min(99.0, 100.0 * (unit + within) / self._units))
        if stage == "separate":
            self.message = f"Separating: chunk {done}/{total}"
        elif stage == "write":
            self.message = f"Writing stems {done}/{total}"
        else:
            self.message = f"{str(stage).capitalize()} {done}/{total}"
        return [self._progress_event(meta={"stage": stage, "done": done, "total": total, "input": event.get("input")})]

    def _on_result(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        self.outputs.append({"input": event.get("input"), "model": self._step and self._step["model_id"],
                             "stems": {s["name"]: s["path"] for s in event.get("stems", [])}})
        return []

    def _on_error(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        self.error = {k: event.get(k) for k in ("code", "message", "why", "hint")}
        return self._note(f"Input failed: {error_text(self.error)}", {"input_error": self.error})

    def _on_completed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        outputs = event.get("outputs") or self.outputs
        self.outputs = outputs
        files = output_files(outputs)
        if not files:  # every input failed: the app needs an error, not an empty success
            return self._on_failed({**(self.error or {"code": "NO_OUTPUT", "message": "no stem was written"})})
        self.terminal, self.progress, self.message = "completed", 100.0, "Separation complete"
        return self._close_step("completed") + [self._event("separation_complete", output_files=files,
                                                            progress=100.0, meta={"outputs": outputs})]

    def _on_failed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        self.error = {k: event.get(k) for k in ("code", "message", "why", "hint")}
        self.terminal, self.message = "failed", event.get("message") or "Separation failed"
        text = error_text(self.error)
        return self._close_step("failed") + [self._event(
            "separation_error", error=text, message=self.message, error_code=self.error.get("code"),
            error_message=self.error.get("message"), error_details={"why": event.get("why"), "hint": event.get("hint")},
            meta=self._meta())]

    def _on_cancelled(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        self.terminal, self.message = "cancelled", event.get("message") or "Separation cancelled"
        return self._close_step("cancelled") + [self._event("separation_cancelled", message=self.message,
                                                            meta=self._meta())]

    # --- plumbing ----------------------------------------------------------------------------------
    def _note(self, message: str, meta: dict[str, Any]) -> list[dict[str, Any]]:
        if self.terminal:
            return []
        self.message = message
        return [self._progress_event(meta=meta)]

    def _progress_event(self, meta: dict[str, Any]) -> dict[str, Any]:
        return self._event("separation_progress", progress=round(self.progress, 2), message=self.message,
                           meta={**self._meta(), **meta})

    def _close_step(self, status: str) -> list[dict[str, Any]]:
        if self._step is None:
            return []
        now = time.time()
        closed = self._event("separation_step_completed", ts=now, duration_seconds=round(now - self._step_since, 3),
                             status=status, progress=self.progress, meta=self._meta())
        self._step = None
        return [closed]

    def _meta(self) -> dict[str, Any]:
        return {"phase": "pipeline", "step": dict(self._step)} if self._step else {}

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "job_id": self.job_id, **fields}


def job_events(job: Job) -> JobEvents:
    """A fresh mapper for a job (selection from its spec: a recipe, else its model)."""
    selection = ("recipe", job.spec.recipe) if job.spec.kind == "recipe" else \
        ("model", job.spec.models[0] if job.spec.models else None)
    return JobEvents(job.id, list(job.spec.models), len(job.spec.inputs), selection)


def snapshot(job: Job, events: list[dict[str, Any]], output_dir: str) -> dict[str, Any]:
    """The app's JobSnapshot of a job, from its stored events (the same truth the live stream had)."""
    mapper = job_events(job)
    for event in events:
        mapper.map(event)
    status = APP_STATUS.get(job.shown_state, job.shown_state)
    error = job.error or (mapper.error if status == "failed" else None)
    files = output_files((job.result or {}).get("outputs") or mapper.outputs) if status == "completed" else None
    kind, selection_id = mapper.selection
    return {"jobId": job.id, "status": status, "requestedAt": _iso(job.created), "startedAt": _iso(job.started),
            "finishedAt": _iso(job.finished), "progress": 100.0 if status == "completed" else round(mapper.progress, 2),
            "message": mapper.message, "error": error_text(error) if error else None,
            "modelId": job.spec.models[0] if job.spec.models else None, "selectionType": kind,
            "selectionId": selection_id, "filePath": job.spec.inputs[0], "outputDir": output_dir,
            "outputFiles": files, "attempts": job.attempts}


def _iso(stamp: float | None) -> str | None:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat() if stamp else None
