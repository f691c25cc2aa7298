"""Our registry, model store and recipes in the catalog shape StemSep's desktop app reads (the reference's
§2.3): models with `installed`, a `download` manifest and an `installation` status, a `selection_index`
of models and recipes, the recipes list, a selection's installation and execution plan.

The app's catalog is a signed remote file; ours is the local registry (packaged file plus the user's
overlays), so `catalog_status` says `bundled_fallback` with no signature and a revision that is the hash
of the registry files' stamps. Installation is judged from the model store without hashing (the stored
manifest's record), as `stemsep models list` does; preflight verifies before a job.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse


if TYPE_CHECKING:
    from envmgr.artifacts.store import ArtifactStatus, ArtifactStore
    from registry.view import ModelView

SCHEMA_VERSION = "catalog-runtime-v4"  # the version family the app checks for (`catalog-runtime-v`)


class AppError(Exception):
    """A reply the app reads as `"<app_code>: <message>"` (NOT_FOUND, INVALID, START_FAILED ...): a protocol
    answer, not one of our coded errors (`code`, when given, is ours and is shown after the message)."""

    def __init__(self, app_code: str, message: str, *, code: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.app_code, self.message, self.code, self.hint = app_code, message, code, hint


def catalog_status() -> dict[str, Any]:
    from envmgr.catalog.registry_files import registry_files
    from registry.stamps import stamp

    base, overlays = registry_files()
    revision = hashlib.sha256(json.dumps(stamp([*base, *overlays]), sort_keys=True, default=str).encode()).hexdigest()
    return {"active_revision": revision, "source_url": None, "fetched_at": None, "fallback_kind": "bundled_fallback",
            "stale": False, "signature_valid": False, "active_path": str(base[0]) if base else None,
            "source": "stemsep-registry", "files": [str(p) for p in (*base, *overlays)]}


def listing_counts() -> tuple[int, int]:
    """(models, recipes) for `bridge_ready`, from the cached listing (no registry validation)."""
    from envmgr.catalog.registry_files import listing

    return len(listing()[0]), len(recipes())


def recipes() -> list[dict[str, Any]]:
    """The recipe catalog as the app's `get_recipes` rows; empty while the recipe loader is not importable."""
    try:
        from envmgr.catalog import recipe_files
        loaded = recipe_files.load()
    except ImportError:
        return []
    rows = []
    for recipe_id, item in loaded.items():
        data = item.recipe.model_dump(mode="json", exclude_none=True)
        models = list(dict.fromkeys(step["params"]["model"] for step in data.get("steps", [])
                                    if step.get("op") == "separate" and step.get("params", {}).get("model")))
        rows.append({**data, "id": recipe_id, "name": data.get("name") or recipe_id, "type": "pipeline",
                     "selection_type": "recipe", "selection_id": recipe_id, "required_model_ids": models,
                     "simple_surface": False, "surface_policy": "advanced_only", "requires_verified_assets": False,
                     "requires_qa_pass": False, "qa_policy_ready": False, "quality_tradeoff": None,
                     "guide_topics": [], "required_model_statuses": [],
                     "surface_blockers": [], "source_path": str(item.path)})
    return rows


class Catalog:
    """One view of the registry and the store for a command (the registry itself is the scheduler's cache)."""

    def __init__(self, registry: Any, store: ArtifactStore) -> None:
        self.registry, self.store = registry, store

    def model(self, model_id: str) -> ModelView:
        entry = self.registry.models.get(model_id)
        if entry is None:
            raise AppError("NOT_FOUND", f"Unknown model_id: {model_id}", code="E_UNKNOWN_MODEL",
                           hint="get_models lists every model")
        return entry

    def models(self) -> list[dict[str, Any]]:
        return [self.model_row(entry) for entry in self.registry.models.values()]

    def catalog(self) -> dict[str, Any]:
        models, recipe_rows = self.models(), recipes()
        index = [_index_row("model", m["id"], m["name"], [m["id"]], m["runtime_adapter"], m["install_policy"])
                 for m in models]
        index += [_index_row("recipe", r["id"], r["name"], r["required_model_ids"], None, "advanced_only")
                  for r in recipe_rows]
        return {"schema_version": SCHEMA_VERSION, "models": models, "recipes": recipe_rows, "workflows": [],
                "selection_index": index, "catalog_status": catalog_status(),
                "default_model": self.registry.default_model}

    def model_row(self, entry: ModelView) -> dict[str, Any]:
        statuses = self.store.status(entry)
        download, installation = _download(entry, statuses), _installation(statuses)
        runtime = entry.runtime
        preferred = runtime.preferred or (runtime.allowed[0] if runtime.allowed else None)
        policy = "unavailable" if runtime.catalog_only else "manual" if download["install_mode"] == "manual" else "auto"
        return {"id": entry.id, "model_id": entry.id, "name": entry.name, "architecture": entry.architecture,
                "type": entry.type, "stems": list(entry.capabilities.stems), "description": entry.description,
                "default": entry.id == self.registry.default_model,
                "runtime": {"allowed": list(runtime.allowed), "preferred": preferred,
                            "catalog_only": runtime.catalog_only, "blocking_reason": runtime.blocking_reason},
                "runtime_adapter": preferred, "catalog_tier": "registry", "install_policy": policy,
                "source_kind": "registry", "selection_type": "model", "selection_id": entry.id,
                "selection_envelope": envelope("model", entry.id, policy),
                "installed": installation["installed"], "download": download, "installation": installation}

    def selection(self, payload: dict[str, Any]) -> tuple[str, str]:
        """(selection type, id) a request names, resolved as the app's backend resolves it."""
        raw_env = payload.get("selection_envelope")
        env: dict[str, Any] = raw_env if isinstance(raw_env, dict) else {}
        kind = payload.get("selection_type") or payload.get("selectionType") or env.get("selectionType")
        selection_id = (payload.get("selection_id") or payload.get("selectionId") or env.get("selectionId")
                        or payload.get("model_id") or payload.get("modelId") or payload.get("recipe_id"))
        if not isinstance(selection_id, str) or not selection_id:
            raise AppError("INVALID", "selection_id is required", code="E_JOB_SPEC")
        if kind is None:
            kind = "recipe" if selection_id not in self.registry.models and selection_id in _recipe_ids() else "model"
        if kind not in ("model", "recipe"):
            raise AppError("NOT_SUPPORTED", f"selection type {kind!r} is not supported by this backend",
                           hint="use a model or a recipe")
        if kind == "model":
            self.model(selection_id)
        elif selection_id not in _recipe_ids():
            raise AppError("NOT_FOUND", f"Unknown recipe: {selection_id}", code="E_UNKNOWN_RECIPE")
        return kind, selection_id

    def required_models(self, kind: str, selection_id: str) -> list[str]:
        if kind == "model":
            return [selection_id]
        row = next(r for r in recipes() if r["id"] == selection_id)
        return [m for m in row["required_model_ids"] if m in self.registry.models]

    def installation(self, kind: str, selection_id: str) -> dict[str, Any]:
        per_model = []
        for model_id in self.required_models(kind, selection_id):
            status = _installation(self.store.status(self.model(model_id)))
            per_model.append({"model_id": model_id, **status})
        missing = [m["model_id"] for m in per_model if not m["installed"]]
        return {"selection_type": kind, "selection_id": selection_id, "selection_envelope": envelope(kind, selection_id),
                "catalog_tier": "registry", "source_kind": "registry", "install_policy": "auto",
                "runtime_adapter": None, "verification": "sha256_when_pinned",
                "required_model_ids": [m["model_id"] for m in per_model], "required_model_installations": per_model,
                "missing_model_ids": missing,
                "missing_artifacts": [a for m in per_model for a in m["missing_artifacts"]],
                "installed": not missing, "canonical_ready": not missing, "legacy_fallback_used": False}

    def execution_plan(self, kind: str, selection_id: str, config: Any) -> dict[str, Any]:
        ids = self.required_models(kind, selection_id)
        required: list[dict[str, Any]] = [{"model_id": m, "model": self.model_row(self.model(m))} for m in ids]
        installation = self.installation(kind, selection_id)
        adapter = required[0]["model"]["runtime_adapter"] if kind == "model" and required else None
        bundle = {"selection_type": kind, "selection_id": selection_id, "required_model_ids": ids,
                  "runtime_adapter": adapter, "steps": [{"index": i, "name": "separate", "model_id": m}
                                                        for i, m in enumerate(ids)]}
        return {"selection_type": kind, "selection_id": selection_id, "selection_envelope": envelope(kind, selection_id),
                "selection": {"selection_type": kind, "selection_id": selection_id}, "required_model_ids": ids,
                "required_models": required, "install_plan": installation, "verification": "sha256_when_pinned",
                "runtime_adapter": adapter, "config": config if isinstance(config, dict) else {},
                "execution_constraints": {"manual_install": any(r["model"]["install_policy"] == "manual"
                                                                for r in required),
                                          "catalog_tier": "registry", "source_kind": "registry",
                                          "canonical_ready": installation["installed"], "legacy_fallback_used": False},
                "resolved_bundle": bundle, "runnable": kind == "model"}


def envelope(kind: str, selection_id: str, policy: str = "auto") -> dict[str, Any]:
    return {"selectionType": kind, "selectionId": selection_id, "catalogTier": "registry", "sourceKind": "registry",
            "installPolicy": policy, "verification": "sha256_when_pinned"}


def _index_row(kind: str, selection_id: str, name: str, models: list[str], adapter: str | None,
               policy: str) -> dict[str, Any]:
    return {"selection_type": kind, "selection_id": selection_id, "name": name, "required_model_ids": models,
            "catalog_tier": "registry", "install_policy": policy, "runtime_adapter": adapter}


def _recipe_ids() -> set[str]:
    return {r["id"] for r in recipes()}


def _download(entry: ModelView, statuses: list[ArtifactStatus]) -> dict[str, Any]:
    artifacts = [_artifact(st) for st in statuses]
    manual = [a for a in artifacts if a["manual"]]
    downloadable = [a for a in artifacts if a["sources"]]
    steps = list(getattr(entry.requirements, "manual_steps", None) or [])
    mode = "none" if not artifacts else "manual" if manual else "direct"
    return {"model_id": entry.id, "family": entry.architecture, "mode": mode, "strategy": "registry",
            "install_mode": "manual" if manual else "auto", "artifact_count": len(artifacts),
            "downloadable_artifact_count": len(downloadable), "source_policy": "registry_order",
            "availability": {"class": "manual" if manual else "available",
                             "reason": "import the files without a URL: stemsep models import" if manual else None},
            "sources": [s for a in artifacts for s in a["sources"]], "artifacts": artifacts,
            "manual_instructions": [getattr(s, "text", None) or str(s) for s in steps]}


def _artifact(st: ArtifactStatus) -> dict[str, Any]:
    present = st.state.value == "present"
    sources = [{"role": "primary" if i == 0 else "mirror", "url": url, "host": urlparse(url).hostname,
                "provider": _provider(url), "resolver": "direct_url", "manual": False, "channel": "registry",
                "priority": i, "auth": "none", "verified": st.expected_sha256 is not None}
               for i, url in enumerate(st.sources)]
    return {"kind": st.kind, "filename": st.filename, "relative_path": f"{st.model_id}/{st.filename}", "required": True,
            "manual": not st.sources, "exists": present, "canonical_present": present, "legacy_present": False,
            "resolved_path": str(st.path), "source": st.sources[0] if st.sources else None,
            "source_host": urlparse(st.sources[0]).hostname if st.sources else None, "sha256": st.expected_sha256,
            "size_bytes": st.expected_size, "sources": sources, "verified": present and st.expected_sha256 is not None,
            "state": st.state.value}


def _installation(statuses: list[ArtifactStatus]) -> dict[str, Any]:
    from envmgr.serve.model_state import missing_artifacts

    missing = missing_artifacts(statuses)
    return {"installed": not missing, "canonical_ready": not missing, "legacy_fallback_used": False,
            "verified_hashes": all(st.expected_sha256 for st in statuses), "missing_artifacts": missing,
            "relative_paths": [f"{st.model_id}/{st.filename}" for st in statuses], "source_resolution": [],
            "artifacts": [{"kind": st.kind, "filename": st.filename, "relative_path": f"{st.model_id}/{st.filename}",
                           "present": st.state.value == "present", "verified": st.state.value == "present",
                           "canonical_present": st.state.value == "present", "legacy_present": False,
                           "resolved_path": str(st.path), "required": True, "selected_source": st.source,
                           "state": st.state.value} for st in statuses]}


def _provider(url: str) -> str:
    host = urlparse(url).hostname or ""
    return next((name for name in ("github", "huggingface") if name in host), host or "unknown")
