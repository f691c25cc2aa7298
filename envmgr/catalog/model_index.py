"""The listing index: one small row per model, derived from the validated typed registry and cached.

`stemsep models list` runs often and must start fast; validating the registry needs pydantic, whose
import and class building would cost most of that start (scripts/bench/README.md). So the rows are
cached in `<cache dir>/model-index.json`, keyed by the registry files' paths, sizes and mtimes, by the
code that derives the rows and by the installed pydantic. A warm list reads only that JSON:
no pydantic, no numpy. Any change to a registry file or to this code rebuilds it (with full validation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from registry.errors import ExitCode, StemSepError
from registry.stamps import installed_version, rule_code_files, stamp

VERDICT_NAME = "registry-verdict.json"  # the loader's remembered clean validation (registry.loader)
from registry.vocab import ARCHITECTURE_FAMILIES, ROLES, RUNTIME_IDS

if TYPE_CHECKING:  # the loader types the registry: only a rebuild of the index loads it
    from registry.loader import BrokenOverlay, Registry
    from registry.view import ModelView

INDEX_FORMAT = 2  # 2: the overlays left out are kept beside the rows
INDEX_NAME = "model-index.json"


def index_key(paths: Sequence[Path], overlays: Sequence[Path]) -> dict[str, Any]:
    """The registry files' and the deriving code's stamps, and the installed pydantic (it types the rows'
    entries): any change rebuilds the index."""
    return {"format": INDEX_FORMAT, "base": stamp(paths), "overlays": stamp(overlays),
            "code": stamp([Path(__file__), *rule_code_files()]), "pydantic": installed_version("pydantic")}


def entry_row(entry: ModelView) -> dict[str, Any]:
    """The row of one typed entry, but for what depends on the whole registry (`build_rows` adds it)."""
    return {
        "id": entry.id,
        "name": entry.name,
        "architecture": entry.architecture,
        "family": ARCHITECTURE_FAMILIES.get(entry.architecture, "other"),
        "type": entry.type,
        "roles": list(entry.capabilities.roles),
        "stems": list(entry.capabilities.stems),
        "runtimes": list(entry.runtime.allowed),
        "preferred": entry.runtime.preferred or (entry.runtime.allowed[0] if entry.runtime.allowed else None),
        "phase_fix_reference": entry.phase_fix.is_valid_reference is True,
        "catalog_only": entry.runtime.catalog_only,
    }


def build_rows(registry: Registry) -> list[dict[str, Any]]:
    """Rows in registry order, from the loader's `derive=entry_row` results (else by typing each entry)."""
    return [dict(registry.derived.get(model_id) or entry_row(registry.models[model_id]),
                 default=model_id == registry.default_model, source=str(registry.sources[model_id]))
            for model_id in registry.models]


def load_listing(paths: Sequence[Path], overlays: Sequence[Path], cache_dir: Optional[Path], *,
                 isolate: Sequence[Path] = ()) -> tuple[list[dict[str, Any]], list[BrokenOverlay]]:
    """(rows for every model, overlays left out); from the cache when it matches, else from a full (validating)
    load. `isolate`: the overlays left out when broken; any other broken file raises (registry.loader)."""
    key = dict(index_key(paths, overlays), isolate=[str(p) for p in isolate])
    cache = cache_dir / INDEX_NAME if cache_dir else None
    if cache is not None:
        try:
            cached = json.loads(cache.read_text(encoding="utf-8"))
            if cached.get("key") == key:
                from registry.loader import BrokenOverlay

                return cached["rows"], [BrokenOverlay.from_dict(b) for b in cached["broken"]]
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            pass  # absent, unreadable or stale: rebuild below
    from registry.loader import load_registry

    registry = load_registry(paths, overlays, verdict_cache=cache_dir / VERDICT_NAME if cache_dir else None,
                             isolate=isolate, derive=entry_row)
    rows = build_rows(registry)
    if cache is not None:
        _write_quietly(cache, json.dumps({"key": key, "rows": rows, "broken": [b.to_dict() for b in registry.broken]},
                                         ensure_ascii=False))
    return rows, registry.broken


def _write_quietly(path: Path, text: str) -> None:
    """A cache that cannot be written only costs speed: failures are ignored."""
    from envmgr.fsutil import atomic_write_text
    from registry.errors import StemSepError

    try:
        atomic_write_text(path, text)
    except (StemSepError, OSError):
        pass


class FilterError(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_BAD_FILTER"


def _check(value: Optional[str], known: Iterable[str], what: str) -> None:
    known = sorted(set(known))
    if value is None or value.lower() in {k.lower() for k in known}:
        return
    import difflib

    near = difflib.get_close_matches(value, known, n=3, cutoff=0.5)
    raise FilterError(f"unknown {what} {value!r}", hint=(f"did you mean {', '.join(near)}? " if near else "")
                      + f"known: {', '.join(known)}")


def filter_rows(rows: list[dict[str, Any]], *, role: Optional[str] = None, runtime: Optional[str] = None,
                arch: Optional[str] = None, stem: Optional[str] = None,
                phase_fix_reference: bool = False) -> list[dict[str, Any]]:
    """Rows matching every given filter. `arch` matches an architecture name or a family (e.g. roformer),
    case-insensitively. Unknown filter values are errors (with the nearest known values)."""
    _check(role, ROLES, "role")
    _check(runtime, RUNTIME_IDS, "runtime")
    _check(arch, [r["architecture"] for r in rows] + list(ARCHITECTURE_FAMILIES)
           + list(ARCHITECTURE_FAMILIES.values()), "architecture")
    _check(stem, [s for r in rows for s in r["stems"]], "stem")
    out = []
    for row in rows:
        if role and role.lower() not in row["roles"]:
            continue
        if runtime and runtime.lower() not in row["runtimes"]:
            continue
        if arch and arch.lower() not in (row["architecture"].lower(), row["family"]):
            continue
        if stem and stem.lower() not in row["stems"]:
            continue
        if phase_fix_reference and not row["phase_fix_reference"]:
            continue
        out.append(row)
    return out
