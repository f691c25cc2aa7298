"""`separation_preflight` for StemSep's desktop app: our preflight (envmgr/preflight) mapped onto the report
the app reads (the reference's §2.3): always a report, never a failure reply; `can_proceed`, `errors` and
`warnings` as `"CODE: message"` strings keeping our codes, `missing_models`, `resolved`, `plan`.

Model ids come from the request as the app's backend resolves them: a recipe named by `model_id` (its
separate steps' models), else `ensemble_config.models`, else `model_id`; plus `post_processing_steps` and
an inline `workflow`'s models. Each known model gets our full preflight with the input; our reports are
kept under `reports` for a client that wants every field. The app's job fields (overlap, device, stems ...)
are read as run_selection_job reads them (stdio_fields.py): the settings go into our preflight in the app's
meaning, and what run_selection_job would refuse is an error here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envmgr.serve.stdio_catalog import Catalog, recipes


def separation_preflight(payload: dict[str, Any], catalog: Catalog, config: Any,
                         server_gpus: list[int] | None = None) -> dict[str, Any]:
    from envmgr.preflight.rules.codes import Finding
    from envmgr.preflight.run import PreflightRequest, run_preflight
    from envmgr.serve.stdio_fields import read_fields, setting_refusals
    from registry.errors import StemSepError

    errors: list[str] = []
    warnings: list[str] = []
    file_path = _first(payload, "file_path", "filePath", "inputFile")
    if not file_path:
        errors.append("Missing required parameter: file_path")
    recipe, workflow, model_ids = _model_ids(payload)
    known = [m for m in model_ids if m in catalog.registry.models]
    # the app's job fields as run_selection_job reads them: what it would refuse is an error here too
    fields = read_fields(payload, model_stems=list(catalog.model(known[0]).capabilities.stems)
                         if known and recipe is None else None, is_recipe=recipe is not None,
                         server_gpus=server_gpus or [])
    errors += [f"{err.code}: {err.message}; {err.hint}" for err in fields.refused]
    options = fields.options()
    reports: dict[str, Any] = {}
    if recipe is not None:  # the whole graph, as `stemsep run` checks it; its models are checked below too
        from envmgr.catalog.recipe_files import get_recipe
        from envmgr.preflight.recipe import run_recipe_preflight

        try:
            graph = run_recipe_preflight(get_recipe(recipe["id"]), [Path(file_path)] if file_path else [],
                                         options, config=config, registry=catalog.registry)
        except StemSepError as err:  # an env name that is not adopted: a finding of the report, not a failure
            errors.append(f"{err.code}: {err.message}")
        else:
            reports["recipe"] = graph.report
            errors += [f"{e['code']}: {e['message']}" for e in graph.report.get("errors", [])]
    missing = [m for m in model_ids if m not in known or not catalog.installation("model", m)["installed"]]
    targets: list[str | None] = list(known) or ([None] if not model_ids else [model_ids[0]])
    for model_id in targets:  # an unknown id: our E_UNKNOWN_MODEL
        inputs = [Path(file_path)] if file_path else []
        try:
            checked = run_preflight(PreflightRequest(inputs=inputs, model_id=model_id, options=options), config=config)
        except StemSepError as err:
            if f"{err.code}: {err.message}" not in errors:
                errors.append(f"{err.code}: {err.message}")
            continue
        report = checked.report
        reports[report.get("model") or str(model_id)] = report
        ignored = [f for f in report.get("warnings", []) if f.get("code") == "W_SETTING_IGNORED"
                   and f.get("subject") in fields.settings]  # refused by run_selection_job: an error here
        refused = setting_refusals([Finding(f["code"], f["message"], f.get("why") or "", f.get("hint") or "",
                                            f["subject"]) for f in ignored], fields)
        errors += [line for line in (f"{err.code}: {err.message}; {err.hint}" for err in refused) if line not in errors]
        errors += [_line(f) for f in report.get("errors", []) if _line(f) not in errors]
        warnings += [_line(f) for f in report.get("warnings", []) if _line(f) not in warnings and f not in ignored]
    first: dict[str, Any] = next(iter(reports.values()), {})
    resolved_model: str | None = first.get("model")
    effective: list[str] = known or ([resolved_model] if resolved_model and resolved_model in catalog.registry.models else [])
    audio = next((i for i in first.get("inputs", []) if i.get("state") == "ok"), None)
    required = [catalog.model_row(catalog.model(m)) for m in effective]
    blocking = [e for r in reports.values() for e in r.get("errors", [])]
    runtime = (first.get("resolved") or {}).get("runtime") or {}
    return {
        "can_proceed": not errors, "errors": errors, "warnings": warnings,
        "audio": {"valid": True, "path": audio["path"], "ext": Path(audio["path"]).suffix.lstrip("."),
                  "sample_rate": audio.get("sample_rate"), "channels": audio.get("channels"),
                  "duration_s": audio.get("duration_s")} if audio else None,
        "missing_models": missing, "torch_available": _torch_available(first), "memory": None,
        "resolved": {"model_id": resolved_model, "recipe": recipe, "workflow": workflow,
                     "stems": payload.get("stems") or (required[0]["stems"] if required else []),
                     "device": payload.get("device") or "auto", "runtime": runtime.get("id"),
                     "settings": (first.get("resolved") or {}).get("settings"),
                     "output_format": fields.output_format},
        "plan": {"workflow_name": (recipe or workflow or {}).get("name") or resolved_model,
                 "workflow_type": "pipeline" if (recipe or workflow) else "ensemble" if len(model_ids) > 1 else "single",
                 "effective_model_id": resolved_model, "effective_model_ids": effective,
                 "required_models": [_required(row) for row in required],
                 "runtime_blocks": [_line(e) for e in blocking if _topic(e) in ("RUNTIME", "ENV", "TORCH")],
                 "recommended_adjustments": [e["hint"] for e in blocking if e.get("hint")],
                 "runtime_adapter": runtime.get("id"), "runtime_reason": runtime.get("why"),
                 "missing_runtime_assets": [a for row in required for a in row["installation"]["missing_artifacts"]],
                 "resolved_device": payload.get("device") or "auto", "estimated_vram_gb": None},
        "reports": reports,
    }


def _model_ids(payload: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]:
    ids: list[Any] = []
    recipe = workflow = None
    model_id = _first(payload, "model_id", "modelId")
    recipe_row = next((r for r in recipes() if r["id"] == model_id), None) if model_id else None
    raw_workflow = payload.get("workflow")
    ensemble = payload.get("ensemble_config")
    if isinstance(raw_workflow, dict):
        workflow = {"id": raw_workflow.get("id"), "name": raw_workflow.get("name"), "kind": raw_workflow.get("kind")}
        ids += [m.get("model_id") for m in raw_workflow.get("models", []) if isinstance(m, dict)]
        ids += [s.get("model_id") or s.get("source_model") for s in raw_workflow.get("steps", []) if isinstance(s, dict)]
    elif recipe_row is not None:
        recipe = {"id": recipe_row["id"], "name": recipe_row["name"], "type": recipe_row["type"],
                  "steps": [{"step_name": s["id"], "action": s["op"], "model_id": s.get("params", {}).get("model"),
                             "input_source": s.get("inputs")} for s in recipe_row.get("steps", [])]}
        ids += recipe_row["required_model_ids"]
    elif isinstance(ensemble, dict) and isinstance(ensemble.get("models"), list):
        ids += [m.get("model_id") for m in ensemble["models"] if isinstance(m, dict)]
    elif model_id:
        ids.append(model_id)
    for step in payload.get("post_processing_steps") or []:
        if isinstance(step, dict):
            ids.append(step.get("modelId") or step.get("model_id"))
    return recipe, workflow, list(dict.fromkeys(i for i in ids if isinstance(i, str) and i))


def _required(row: dict[str, Any]) -> dict[str, Any]:
    runtime = row["runtime"]
    return {"id": row["id"], "name": row["name"], "installed": row["installed"], "curated": True,
            "install_mode": row["install_policy"], "runtime_engine": runtime["preferred"],
            "runtime_adapter": runtime["preferred"], "runtime_allowed": runtime["allowed"],
            "runtime_preferred": runtime["preferred"], "blocking_reason": runtime["blocking_reason"],
            "blocked_reason": runtime["blocking_reason"] if runtime["catalog_only"] else None,
            "requires_manual_assets": row["download"]["install_mode"] == "manual",
            "missing_assets": row["installation"]["missing_artifacts"],
            "required_files": row["installation"]["relative_paths"], "target_roles": row["stems"]}


def _line(finding: dict[str, Any]) -> str:
    return f"{finding.get('code')}: {finding.get('message')}"


def _topic(finding: dict[str, Any]) -> str:
    """E_ENV_NOT_BUILT -> ENV: what a code is about."""
    parts = str(finding.get("code", "")).split("_")
    return parts[1] if len(parts) > 1 else ""


def _first(payload: dict[str, Any], *names: str) -> Any:
    return next((payload[n] for n in names if payload.get(n)), None)


def _torch_available(report: dict[str, Any]) -> bool:
    torch = ((report.get("resolved") or {}).get("requirements_status") or {}).get("torch")
    return bool(torch and torch.get("version"))
