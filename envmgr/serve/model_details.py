"""What a model's web page shows besides `stemsep models show`: each artifact's state in the model store, the env
the model would run in, and its settings per runtime as rows of words.

Cheap, as a page view must be: the store's status reads the manifest and stats files (no hashing of recorded
files, as `stemsep models list` judges installation); the env is found from the cached lock only (no uv run to
resolve) and judged by the env store's cheap check (stats, no process), as `stemsep env list` states it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

from registry.errors import StemSepError

if TYPE_CHECKING:
    from envmgr.artifacts.store import ArtifactStore
    from envmgr.config import MachineConfig
    from registry.view import ModelView

NO_SOURCE = "import by hand"


def artifact_rows(entry: ModelView, store: ArtifactStore, runtime: Optional[str]) -> list[dict[str, Any]]:
    """Every artifact of the model with its state in the store (present / downloadable / missing / partial /
    hash_mismatch / unsafe), its size, where it comes from and whether `runtime` (the one `separate` would
    choose) uses it. `present` means in the store and matching the registry's pins."""
    from registry.view import artifacts_for

    used = {a.filename for a in artifacts_for(entry, runtime)}
    rows = []
    for st in store.status(entry):
        host = urlsplit(st.sources[0]).hostname if st.sources else None
        rows.append({"filename": st.filename, "kind": st.kind, "state": st.state.value,
                     "present": st.state.value == "present",
                     "size_bytes": st.size if st.size is not None else st.expected_size,
                     "sha256": st.sha256 or st.expected_sha256, "pinned": st.expected_sha256 is not None,
                     "source": host or NO_SOURCE, "stored_from": st.source, "detail": st.detail,
                     "used_here": st.filename in used})
    return rows


def env_summary(entry: ModelView, runtime: Optional[str], config: MachineConfig) -> dict[str, Any]:
    """{runtime, env_id, state, built, problem, python (the built env's), python_spec, torch, setup}: state is ready / needs_build / broken /
    not_resolved (no cached lock: its id is not known until a run or `stemsep setup` resolves it) / unknown
    (the request cannot be made here: `problem` says why). `setup` is the command that builds it."""
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.request import request_for_model

    if runtime is None:
        return {"runtime": None, "state": "blocked", "built": False, "env_id": None, "setup": None,
                "problem": "no runtime can run this model here", "python": None, "python_spec": None, "torch": None}
    out: dict[str, Any] = {"runtime": runtime, "env_id": None, "problem": None,
                           "setup": f"stemsep setup {entry.id}"}
    try:
        req = request_for_model(entry, runtime, config)
        manager = EnvManager(config)
        env_id, state = manager.cached_status(req)
    except StemSepError as err:  # no interpreter, a bad pin: nothing to build from as things are
        return {**out, "state": "unknown", "built": False, "problem": " ".join(x for x in (err.message, err.why) if x),
                "python": None, "python_spec": None, "torch": None}
    out.update(env_id=env_id, state=state, built=state == "ready", python=None, python_spec=req.python or None,
               torch={"requirement": req.torch, "backend": req.torch_backend} if req.torch else None)
    if env_id is not None and state != "needs_build":
        record = manager.store.record(env_id)
        out["problem"] = record.problem
        out["python"] = record.meta.get("python")
        if req.torch and record.meta.get("torch"):
            out["torch"] = {**out["torch"], **record.meta["torch"]}  # the built variant: version, cuda, hip
    return out


def setting_rows(settings: dict[str, Any]) -> dict[str, Any]:
    """`models show`'s settings per runtime as {runtime: {library_version, rows | error}}, each row a setting in
    the runtime's native terms (envmgr/catalog/model_explain.describe_setting, as the CLI prints it)."""
    from envmgr.catalog.model_explain import describe_setting

    out: dict[str, Any] = {}
    for runtime, res in settings["per_runtime"].items():
        if "error" in res:
            out[runtime] = {"error": res["error"]}
            continue
        rows = [d for name, item in res["settings"].items() if (d := describe_setting(name, item))]
        out[runtime] = {"library_version": res["library_version"], "rows": rows}
    return out
