"""`install_selection` for StemSep's desktop app: the reply comes at once (what will be downloaded, what is
skipped), then a thread downloads each model's artifacts through the model store (envmgr/artifacts: resume,
mirrors, sha256 checks) and reports them as the app's download events keyed by `model_id`: `progress`
(0-100, `stage` downloading|verifying, the artifact it is on), then `complete` or `error`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from envmgr.serve.stdio_catalog import Catalog
from registry.errors import StemSepError

if TYPE_CHECKING:
    from envmgr.artifacts.events import ArtifactEvent

_in_flight: set[str] = set()
_in_flight_lock = threading.Lock()


def install_selection(catalog: Catalog, kind: str, selection_id: str,
                      write: Callable[[dict[str, Any]], None]) -> tuple[dict[str, Any], Callable[[], None]]:
    """(the reply's data, what starts the downloads once the reply is written)."""
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    todo = []
    for model_id in catalog.required_models(kind, selection_id):
        row = catalog.model_row(catalog.model(model_id))
        if row["installed"]:
            results.append({"scheduled": False, "model_id": model_id, "already_installed": True,
                            "download": row["download"], "installation": row["installation"]})
        elif row["download"]["install_mode"] == "manual" or row["install_policy"] == "unavailable":
            skipped.append({"model_id": model_id, "reason": "manual: some files have no URL; import them "
                            f"(stemsep models import {model_id})", "download": row["download"]})
        else:
            with _in_flight_lock:
                busy = model_id in _in_flight
                _in_flight.add(model_id)
            results.append({"scheduled": not busy, "model_id": model_id, "already_in_flight": busy,
                            "dest": str(catalog.store.layout.model_dir(model_id)),
                            "files": [a["filename"] for a in row["download"]["artifacts"]],
                            "download": row["download"], "installation": row["installation"]})
            if not busy:
                todo.append(model_id)
    data = {"success": True, "selection_type": kind, "selection_id": selection_id, "results": results,
            "skipped": skipped, "failures": [], "installation": catalog.installation(kind, selection_id)}

    def start() -> None:
        for model_id in todo:
            threading.Thread(target=_download, args=(catalog, model_id, write), daemon=True,
                             name=f"install-{model_id}").start()
    return data, start


def _download(catalog: Catalog, model_id: str, write: Callable[[dict[str, Any]], None]) -> None:
    entry = catalog.model(model_id)
    names = [a.filename for a in entry.artifacts.all()]
    last: dict[str, Any] = {}

    def fields(filename: str) -> dict[str, Any]:
        index = names.index(filename) + 1 if filename in names else 1
        return {"model_id": model_id, "artifactIndex": index, "artifactCount": len(names), "currentFile": filename,
                "currentRelativePath": f"{model_id}/{filename}"}

    def on_event(event: ArtifactEvent) -> None:
        base = {**fields(event.filename), "currentSource": event.url}
        if event.kind in ("start", "progress"):
            percent = int(100 * event.done / event.total) if event.total else 0
            if event.kind == "progress" and last.get(event.filename, -1) // 2 == percent // 2:
                return  # every 2 %, as the app's backend reports
            last[event.filename] = percent
            message = ("Resuming download" if event.done else "Starting download") if event.kind == "start" else None
            write({"type": "progress", **base, "progress": percent, "stage": "downloading", "verified": False,
                   **({"message": message} if message else {})})
        elif event.kind == "verify":
            write({"type": "progress", **base, "progress": 100, "stage": "verifying", "verified": False})

    try:
        paths = catalog.store.ensure(entry, progress=on_event)
    except StemSepError as err:
        text = f"{err.code}: {err.message}" + (f" ({err.hint})" if err.hint else "")
        write({"type": "error", **fields(names[0] if names else ""), "stage": "failed", "verified": False,
               "error": text})
    except Exception as exc:  # a bug: reported, the server goes on
        write({"type": "error", **fields(names[0] if names else ""), "stage": "failed", "verified": False,
               "error": f"INTERNAL: {type(exc).__name__}: {exc}"})
    else:
        files = [str(p) for p in paths.values()]
        write({"type": "progress", **fields(names[-1] if names else ""), "progress": 100, "stage": "verifying",
               "verified": True})
        write({"type": "complete", "model_id": model_id, "path": files[0] if files else None, "paths": files,
               "artifactCount": len(files), "stage": "installed", "verified": True})
    finally:
        with _in_flight_lock:
            _in_flight.discard(model_id)
