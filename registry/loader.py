"""Load the registry: the packaged `registry/models.json` (or given files) plus user overlay files.

Each file is read (bad JSON -> `RegistryReadError` with file, line and column; exit 2), parsed into the
typed model and checked by the semantic rules; any error-level finding -> `RegistryInvalidError`
(exit 1). Overlays are the user's own files (`<config dir>/registries/*.json`): they add models, are
read in compat mode (curation findings only warn), and may not reuse an id.

The semantic rules cost more than everything else a load does (scripts/bench/README.md), and the files rarely change:
with `verdict_cache`, a clean verdict is remembered per (files' stamps, modes, rule code, installed
pydantic: `verdict_key`), and later loads of the same files only parse the typed model. The verdict also
keeps every entry frozen (registry.frozen): `Registry.view` reads a model without importing pydantic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from registry.errors import ExitCode, StemSepError
from registry.findings import Finding
from registry.jsonfile import RegistryReadError, read_json
from registry.stamps import installed_version, rule_code_files, stamp
from registry.validator import RegistryInvalidError, validate_document

if TYPE_CHECKING:  # typed on first access only: pydantic stays out of a warm start
    from registry.model import ModelEntry
    from registry.view import ModelView

PACKAGED_REGISTRY = Path(__file__).with_name("models.json")
MAX_LISTED = 5  # findings quoted in an error message; `registry validate` lists them all

__all__ = ["PACKAGED_REGISTRY", "Registry", "RegistryInvalidError", "RegistryReadError", "UnknownModelError",
           "load_registry", "overlay_files", "verdict_key"]


class UnknownModelError(StemSepError):
    """No model has the requested id."""

    exit_code = ExitCode.USAGE
    code = "E_UNKNOWN_MODEL"

    def __init__(self, model_id: str, suggestions: Sequence[str], **kw: Any) -> None:
        hint = ("did you mean: " + ", ".join(suggestions) + "?") if suggestions else ""
        hint += ("  " if hint else "") + "`stemsep models list` shows every model"
        super().__init__(f"unknown model {model_id!r}", hint=hint, **kw)
        self.model_id = model_id
        self.suggestions = list(suggestions)


class TypedModels(Mapping[str, "ModelEntry"]):
    """id -> ModelEntry in file order. Entries of files with a remembered clean verdict are typed on first
    access: a command about one model does not pay for typing all of them."""

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}  # id -> ModelEntry, or the raw dict still to be typed
        self.frozen_dir: Optional[Path] = None  # where the remembered verdict's frozen entries are
        self.frozen: dict[str, Any] = {}  # id -> its Frozen, once read

    def add(self, model_id: str, item: Any) -> None:
        self._items[model_id] = item

    def __getitem__(self, model_id: str) -> ModelEntry:
        item = self._items[model_id]
        if isinstance(item, dict):
            from registry.model import ModelEntry

            item = self._items[model_id] = ModelEntry.model_validate(item)
        return item

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._items


@dataclass
class Registry:
    models: TypedModels  # id -> ModelEntry, in file order (packaged first, then overlays)
    sources: dict[str, Path]  # id -> the file the model came from
    files: tuple[Path, ...]
    default_model: Optional[str] = None
    findings: list[Finding] = field(default_factory=list)  # warnings found while loading
    raw: dict[str, dict] = field(default_factory=dict)  # id -> the model's JSON as read (unknown keys kept)

    def get(self, model_id: str) -> ModelEntry:
        try:
            return self.models[model_id]
        except KeyError:
            raise UnknownModelError(model_id, self.nearest(model_id)) from None

    def view(self, model_id: str) -> ModelView:
        """The model for reading: its remembered frozen form (registry.frozen: no pydantic), else the typed
        entry. For code that reads fields and calls the typed classes' `frozen_calls` methods, nothing else."""
        frozen = self.models.frozen.get(model_id)
        if frozen is None and self.models.frozen_dir is not None and model_id in self.models:
            from registry.frozen import load

            frozen = load(self.models.frozen_dir, model_id)
            if frozen is not None:
                self.models.frozen[model_id] = frozen
        return self.get(model_id) if frozen is None else frozen

    def nearest(self, model_id: str, n: int = 5) -> list[str]:
        import difflib

        return difflib.get_close_matches(model_id, list(self.models), n=n, cutoff=0.5)

    def source_of(self, model_id: str) -> Path:
        self.get(model_id)
        return self.sources[model_id]

    def __contains__(self, model_id: object) -> bool:
        return model_id in self.models

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)


def overlay_files(config_dir: Path) -> list[Path]:
    """The user's registry files: `<config dir>/registries/*.json`, sorted by name."""
    folder = Path(config_dir) / "registries"
    return sorted(p for p in folder.glob("*.json") if p.is_file()) if folder.is_dir() else []


def load_registry(paths: Optional[Sequence[Path]] = None, overlays: Sequence[Path] = (), mode: str = "strict",
                  overlay_mode: str = "compat", verdict_cache: Optional[Path] = None) -> Registry:
    """Load registry files into one `Registry`. `paths=None` reads the packaged registry/models.json.

    `mode` applies to `paths`; overlays are checked in `overlay_mode`. The last file that sets
    `default_model` decides it (a user file may choose its own default). `verdict_cache`: a file where
    a clean validation verdict for exactly these files is remembered (see the module docstring).
    """
    base = [Path(p) for p in paths] if paths else [PACKAGED_REGISTRY]
    files = [(p, mode) for p in base] + [(Path(p), overlay_mode) for p in overlays]
    key = verdict_key(files)
    remembered = _read_verdict(verdict_cache, key)
    documents = [(path, file_mode, read_json(path)) for path, file_mode in files]
    known = {m["id"] for _p, _m, data in documents if isinstance(data, dict) and isinstance(data.get("models"), list)
             for m in data["models"] if isinstance(m, dict) and isinstance(m.get("id"), str)}

    registry = Registry(TypedModels(), {}, tuple(p for p, _m in files))
    for path, file_mode, data in documents:
        if remembered is not None:  # the rules passed on exactly these files: type entries on first use
            entries = list(enumerate(data["models"]))
        else:
            result = validate_document(data, mode=file_mode, file=str(path), schema=False, known_ids=known)
            if result.errors:
                raise _invalid(path, result.errors)
            registry.findings.extend(f for f in result.findings if f.severity != "error")
            entries = result.entries
        for index, entry in entries:
            model_id = entry["id"] if isinstance(entry, dict) else entry.id
            if model_id in registry.models:
                raise RegistryInvalidError(
                    f"model id {model_id!r} in {path} is already defined in {registry.sources[model_id]}",
                    why="ids must be unique across the packaged registry and user registry files",
                    hint=f"rename the model in {path} (user files add models; they do not replace them)",
                    code="E_DUPLICATE_MODEL_ID")
            registry.models.add(model_id, entry)
            registry.sources[model_id] = path
            registry.raw[model_id] = data["models"][index]
        if isinstance(data.get("default_model"), str):
            registry.default_model = data["default_model"]
    if remembered is not None and verdict_cache is not None:  # a verdict is only ever read from a cache
        registry.findings = [Finding(**f) for f in remembered["findings"]]
        registry.models.frozen_dir = _frozen_root(verdict_cache) / remembered["frozen"]
    elif verdict_cache is not None:
        _write_verdict(verdict_cache, key, registry)
    return registry


def verdict_key(files: Sequence[tuple[Path, str]], pydantic: Optional[list[Any]] = None) -> dict[str, Any]:
    """What a remembered verdict holds for: the files (stamps) and their modes, the rule code, and the installed
    pydantic (it types the entries and runs part of the validation; `pydantic`: as `installed_version` gives it,
    default the one installed)."""
    return {"files": stamp(p for p, _m in files), "modes": [m for _p, m in files], "code": stamp(rule_code_files()),
            "pydantic": pydantic if pydantic is not None else installed_version("pydantic")}


def _read_verdict(cache: Optional[Path], key: dict) -> Optional[dict]:
    if cache is None:
        return None
    try:
        cached = json.loads(Path(cache).read_text(encoding="utf-8"))
        if cached.get("key") != key or not isinstance(cached["findings"], list) or not isinstance(cached["frozen"], str):
            return None
        return cached
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None  # absent, unreadable or stale: validate


def _frozen_root(cache: Path) -> Path:
    return Path(cache).with_name(Path(cache).stem + "-frozen")


def _write_verdict(cache: Path, key: dict, registry: Registry) -> None:
    """Atomically; a verdict that cannot be written only costs speed next time. The entries are saved
    frozen first (registry.frozen), in a folder named after the key, which the verdict then names."""
    import hashlib

    from registry.frozen import save

    cache = Path(cache)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    verdict = {"key": key, "findings": [f.to_dict() for f in registry.findings], "frozen": name}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save(_frozen_root(cache), name, registry.models)
        tmp.write_text(json.dumps(verdict), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _invalid(path: Path, errors: list[Finding]) -> RegistryInvalidError:
    listed = "\n".join(f.format() for f in errors[:MAX_LISTED])
    more = f"\n... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
    return RegistryInvalidError(f"registry file {path} is invalid ({len(errors)} error(s))",
                                why=listed + more, findings=errors,
                                hint=f"run `stemsep registry validate {path}` for every finding and its fix")
