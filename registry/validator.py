"""Registry validator: JSON Schema (registry/schema.json, generated from the typed model) plus the
semantic rules of `registry.rules`, each finding with a rule id, a JSON path and a fix hint.

`validate_document` never raises on any JSON value: whatever it cannot read becomes a finding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from registry.errors import ExitCode, StemSepError
from registry.findings import Finding, json_path
from registry.jsonfile import read_json
from registry.vocab import MODES

SCHEMA_PATH = Path(__file__).with_name("schema.json")
MAX_MESSAGE = 240  # schema messages quote the offending value; keep them readable


class RegistryInvalidError(StemSepError):
    """A registry file breaks the schema or a semantic rule."""

    exit_code = ExitCode.INVALID
    code = "E_REGISTRY_INVALID"

    def __init__(self, message: str, *, findings: Sequence[Finding] = (), **kw: Any) -> None:
        super().__init__(message, **kw)
        self.findings = list(findings)


@dataclass
class DocumentResult:
    findings: list[Finding]
    entries: list[tuple[int, Any]]  # (index in `models`, ModelEntry or its id) for every model that fits the schema

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


@dataclass
class FileResult:
    path: str
    findings: list[Finding]
    model_count: int


@dataclass
class ValidationReport:
    mode: str
    files: list[FileResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # across files (duplicate ids between files)

    def all_findings(self) -> list[Finding]:
        return [f for r in self.files for f in r.findings] + self.findings

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.all_findings())

    def to_dict(self) -> dict[str, Any]:
        found = self.all_findings()
        return {
            "ok": self.ok,
            "mode": self.mode,
            "errors": sum(f.severity == "error" for f in found),
            "warnings": sum(f.severity == "warning" for f in found),
            "files": [{"path": r.path, "models": r.model_count} for r in self.files],
            "findings": [f.to_dict() for f in found],
        }


@lru_cache(maxsize=1)
def _schema_validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _model_id_at(data: Any, parts: Sequence[Any]) -> Optional[str]:
    if len(parts) >= 2 and parts[0] == "models" and isinstance(parts[1], int) and isinstance(data, dict):
        models = data.get("models")
        if isinstance(models, list) and parts[1] < len(models) and isinstance(models[parts[1]], dict):
            mid = models[parts[1]].get("id")
            return mid if isinstance(mid, str) else None
    return None


def _cause(error: Any) -> Any:
    """The error that says what is wrong: for anyOf failures (our nullable fields are `X or null`), the
    deepest failure of the non-null branch."""
    from jsonschema.exceptions import best_match

    while error.context:
        candidates = [c for c in error.context if not (c.validator == "type" and c.validator_value == "null")]
        if not candidates:
            break
        depth = max(len(c.absolute_path) for c in candidates)
        error = best_match([c for c in candidates if len(c.absolute_path) == depth])
    return error


def schema_findings(data: Any) -> list[Finding]:
    """JSON Schema errors, each with the JSON path of its deepest cause."""
    out = []
    for error in _schema_validator().iter_errors(data):
        cause = _cause(error)
        parts = list(cause.absolute_path)
        out.append(Finding("schema", "error", json_path(parts), _short(cause.message),
                           "make the value match registry/schema.json (see the model's field descriptions)",
                           _model_id_at(data, parts)))
    return out


def _pydantic_findings(exc: Any, index: int, model_id: Optional[str]) -> list[Finding]:
    out = []
    for err in exc.errors(include_url=False):
        parts = ["models", index, *[p for p in err["loc"] if not _is_validator_tag(p)]]
        out.append(Finding("schema", "error", json_path(parts), _short(err["msg"]),
                           "make the value match registry/schema.json", model_id))
    return out


def _is_validator_tag(part: Any) -> bool:
    # pydantic puts union member names (e.g. `ManualStep`, `str`) into error locations
    return isinstance(part, str) and (part[:1].isupper() or part in ("str", "int", "float", "bool"))


def validate_document(data: Any, *, mode: str = "strict", file: Optional[str] = None, schema: bool = True,
                      known_ids: Iterable[str] = (), keep_entries: bool = True,
                      on_entry: Optional[Callable[[int, Any], None]] = None) -> DocumentResult:
    """Check one registry document. `schema=False` skips jsonschema (the loader: pydantic checks the same
    structure). `known_ids`: ids of other files validated together (for default_model).

    `keep_entries=False` leaves `DocumentResult.entries` holding each typed entry's index and id only
    (`(index, id)`): a typed entry weighs ~25 KB, so a large file is checked one entry at a time and its
    typed entries are dropped (the loader types them again on use). `on_entry(index, entry)` sees each
    typed entry that passed the schema while it is alive (the loader derives its listing rows there)."""
    from pydantic import ValidationError

    from registry.model import ModelEntry
    from registry.rules import RULES, DocumentContext, ModelContext

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    findings: list[Finding] = schema_findings(data) if schema else []
    schema_paths = {f.path for f in findings}
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        if not schema:
            findings.append(Finding("schema", "error", "$", "a registry is an object with a `models` list",
                                    'write {"schema_version": "2", "models": [...]}'))
        return DocumentResult([f.in_file(file) for f in findings], [])

    model_rules = [r for r in RULES.values() if r.scope == "model"]
    items: list[tuple[int, Any, bool]] = []
    entries: list[tuple[int, Any]] = []
    ids = set(known_ids)
    for index, item in enumerate(data["models"]):
        model_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
        try:
            entry = ModelEntry.model_validate(item)
        except ValidationError as exc:
            prefix = json_path(["models", index])
            if not any(p == prefix or p.startswith(prefix + ".") or p.startswith(prefix + "[")
                       for p in schema_paths):
                findings.extend(_pydantic_findings(exc, index, model_id))
            items.append((index, item, False))
            continue
        items.append((index, item, True))
        entries.append((index, entry if keep_entries else entry.id))
        ids.add(entry.id)
        ctx = ModelContext(mode, index)
        for rule in model_rules:
            for hit in rule.check(entry, ctx):
                findings.append(Finding(rule.id, rule.severity_in(mode), json_path(["models", index, *hit.path]),
                                        hit.message, hit.hint or rule.hint, entry.id))
        if on_entry is not None:
            on_entry(index, entry)

    doc_ctx = DocumentContext(mode, data, items, frozenset(ids))
    for rule in RULES.values():
        if rule.scope == "document":
            for hit in rule.check(doc_ctx):
                findings.append(Finding(rule.id, rule.severity_in(mode), json_path(hit.path), hit.message,
                                        hit.hint or rule.hint, _model_id_at(data, hit.path)))
    return DocumentResult([f.in_file(file) for f in findings], entries)


def validate_files(paths: Sequence[Path], *, mode: str = "strict", overlays: Sequence[Path] = (),
                   overlay_mode: str = "compat") -> ValidationReport:
    """Validate registry files as one registry (ids unique across them): `paths` in `mode`, user
    `overlays` in `overlay_mode` (as the loader reads them). Unreadable files raise `RegistryReadError`
    (exit 2)."""
    documents = [(Path(p), read_json(Path(p)), mode) for p in paths]
    documents += [(Path(p), read_json(Path(p)), overlay_mode) for p in overlays]
    all_ids = set()
    for _p, data, _m in documents:
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            all_ids |= {m["id"] for m in data["models"] if isinstance(m, dict) and isinstance(m.get("id"), str)}
    report = ValidationReport(mode)
    owner: dict[str, str] = {}
    for path, data, file_mode in documents:
        result = validate_document(data, mode=file_mode, file=str(path), known_ids=all_ids)
        report.files.append(FileResult(str(path), result.findings, len(result.entries)))
        for index, entry in result.entries:
            if entry.id in owner and owner[entry.id] != str(path):
                report.findings.append(Finding(
                    "id-unique", "error", json_path(["models", index, "id"]),
                    f"id {entry.id!r} is already defined in {owner[entry.id]}",
                    "rename the model in one of the files; user registries may add models, not replace them",
                    entry.id, str(path)))
            owner.setdefault(entry.id, str(path))
    return report
