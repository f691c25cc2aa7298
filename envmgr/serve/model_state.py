"""Each model's state on this machine, for the catalog of the HTTP API and the web page: installed,
downloadable, to import by hand, or blocked; and the facts its list badges show (unsafe pickle, manual steps).

Cheap on purpose: GET /v1/models judges the whole registry on every catalog load. Routing is pure, and the
store's status reads one manifest per model and stats its files without hashing (the stored manifest's record,
as `stemsep models list` and the stdio catalog judge installation); preflight verifies before a job runs.
The files judged are those of the runtime `separate` would choose (what `stemsep models download` fetches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from registry.errors import StemSepError

if TYPE_CHECKING:
    from envmgr.artifacts.store import ArtifactStatus, ArtifactStore
    from registry.view import ModelView

INSTALLED, DOWNLOADABLE, IMPORT, BLOCKED = "installed", "downloadable", "import", "blocked"
STATES = (INSTALLED, DOWNLOADABLE, IMPORT, BLOCKED)


def missing_artifacts(statuses: Sequence[ArtifactStatus]) -> list[str]:
    """`<model>/<file>` of each artifact not present and matching its pins: a model is installed when empty."""
    return [f"{st.model_id}/{st.filename}" for st in statuses if st.state.value != "present"]


def model_state(entry: ModelView, store: ArtifactStore) -> dict[str, Any]:
    """{state, blocked_reason, runtime, missing_artifacts, unsafe_pickle, manual_steps, manual_steps_open}."""
    from registry.routing import choose_runtime
    from registry.view import artifacts_for

    runtime: Optional[str] = None
    blocked: Optional[str] = None
    try:
        runtime = choose_runtime(entry).runtime
    except StemSepError as err:  # no runtime can run it here: the reason the model page shows too
        blocked = entry.runtime.blocking_reason or " ".join(x for x in (err.message, err.why) if x)
    if entry.runtime.catalog_only:
        blocked = entry.runtime.blocking_reason or "listed for reference only (catalog_only): no runtime runs it"
    statuses = store.status(entry, runtime=runtime)
    missing = missing_artifacts(statuses)
    if blocked:
        state = BLOCKED
    elif not missing:
        state = INSTALLED
    elif all(st.downloadable for st in statuses if st.state.value != "present"):
        state = DOWNLOADABLE
    else:
        state = IMPORT  # a file without a URL (or an unsafe one in the store): `stemsep models import`
    steps = list(entry.requirements.manual_steps)
    return {"state": state, "blocked_reason": blocked, "runtime": runtime, "missing_artifacts": missing,
            "unsafe_pickle": any(a.unsafe_pickle for a in artifacts_for(entry, runtime)),
            "manual_steps": len(steps),
            "manual_steps_open": sum(1 for s in steps if isinstance(s, str) or not s.automated_by)}
