"""Load the registry: the packaged `registry/models.json` (or given files) plus user overlay files.

Each file is read (bad JSON -> `RegistryReadError` with file, line and column; exit 2), parsed into the
typed model and checked by the semantic rules; any error-level finding -> `RegistryInvalidError`
(exit 1). Overlays are the user's own files (`<config dir>/registries/*.json`): they add models, are
read in compat mode (curation findings only warn), and may not reuse an id.

The semantic rules cost more than everything else a load does (scripts/bench/README.md), and the files rarely change:
with `verdict_cache`, a clean verdict is remembered per (files' stamps, modes, rule code, installed
pydantic: `verdict_key`), and later loads of the same files only parse the typed model. The verdict also
keeps entries frozen (registry.frozen): `Registry.view` reads a model without importing pydantic. The base
files' entries are frozen with the verdict; an overlay's on their first `view` (an overlay may hold tens of
thousands of models, and freezing them all costs more than validating them).

Large files are checked one entry at a time: typed entries are not kept (each weighs ~25 KB), only the raw
JSON, typed again on use; `derive` computes what a caller needs of every entry (the listing index's rows)
while its typed form is alive.

`isolate` (the CLI passes the user's overlays of `<config dir>/registries/`, unless `registry_strict`): an
overlay named there that cannot be read, breaks a rule or reuses an id is left out whole (`Registry.broken`, to be
reported once by the caller) instead of stopping the load; its models are unknown, and asking for one raises
that overlay's error. Any other broken file raises, as every broken file did before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

from registry.errors import ExitCode, StemSepError
from registry.findings import Finding
from registry.jsonfile import RegistryReadError, read_json, write_quietly
from registry.stamps import installed_version, rule_code_files, stamp
from registry.validator import RegistryInvalidError, validate_document

if TYPE_CHECKING:  # typed on first access only: pydantic stays out of a warm start
    from registry.model import ModelEntry
    from registry.view import ModelView

PACKAGED_REGISTRY = Path(__file__).with_name("models.json")
MAX_LISTED = 5  # findings quoted in an error message; `registry validate` lists them all

__all__ = ["PACKAGED_REGISTRY", "BrokenOverlay", "Registry", "RegistryInvalidError", "RegistryReadError",
           "UnknownModelError", "load_registry", "overlay_files", "verdict_key"]


class UnknownModelError(StemSepError):
    """No model has the requested id."""

    exit_code = ExitCode.USAGE
    code = "E_UNKNOWN_MODEL"

    def __init__(self, model_id: str, suggestions: Sequence[str], *, skipped: Sequence[Path] = (), **kw: Any) -> None:
        hint = ("did you mean: " + ", ".join(suggestions) + "?") if suggestions else ""
        hint += ("  " if hint else "") + "`stemsep models list` shows every model"
        why = (f"user registry file(s) {', '.join(map(str, skipped))} could not be read and were skipped; the "
               "model may be defined there") if skipped else ""
        super().__init__(f"unknown model {model_id!r}", why=why, hint=hint, **kw)
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


@dataclass(frozen=True)
class BrokenOverlay:
    """A user overlay left out of the registry: unreadable, breaking a rule, or reusing an id."""

    path: Path
    error: StemSepError  # what the strict load raises for it (code, exit code, message, why, hint)
    ids: tuple[str, ...] = ()  # the model ids it defines, as far as it could be read
    readable: bool = True  # False: its ids are unknown

    def warning(self) -> str:
        """The one report a command gives about this file."""
        count = f"its {len(self.ids)} model(s) are" if self.readable else "any models in it are"
        return (f"skipped user registry file {self.path}: {count} unavailable; everything else runs.\n"
                f"{self.error}\nTo fail on it instead, set registry_strict = true (STEMSEP_REGISTRY_STRICT=1).")

    def model_error(self, model_id: str) -> StemSepError:
        """The error for a model only this file defines: the file's own error, naming the model."""
        return StemSepError(f"model {model_id!r} is defined only in {self.path}, which was skipped: "
                            f"{self.error.message}", why=self.error.why, hint=self.error.hint,
                            code=self.error.code, exit_code=self.error.exit_code)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "error": self.error.to_dict(), "ids": list(self.ids),
                "readable": self.readable}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BrokenOverlay":
        err = data["error"]
        error = StemSepError(err["message"], why=err["why"], hint=err["hint"], code=err["code"],
                             exit_code=ExitCode(err["exit_code"]))
        return cls(Path(data["path"]), error, tuple(data["ids"]), bool(data["readable"]))


@dataclass
class Registry:
    models: TypedModels  # id -> ModelEntry, in file order (packaged first, then overlays)
    sources: dict[str, Path]  # id -> the file the model came from
    files: tuple[Path, ...]
    default_model: Optional[str] = None
    findings: list[Finding] = field(default_factory=list)  # warnings found while loading
    raw: dict[str, dict] = field(default_factory=dict)  # id -> the model's JSON as read (unknown keys kept)
    broken: list[BrokenOverlay] = field(default_factory=list)  # overlays left out (`isolate`)
    derived: dict[str, Any] = field(default_factory=dict)  # id -> load_registry's `derive(entry)`

    def get(self, model_id: str) -> ModelEntry:
        try:
            return self.models[model_id]
        except KeyError:
            raise self.unknown(model_id) from None

    def unknown(self, model_id: str) -> StemSepError:
        """The error for an id no loaded file defines: a skipped overlay's own error when it defines it."""
        for broken in self.broken:
            if model_id in broken.ids:
                return broken.model_error(model_id)
        return UnknownModelError(model_id, self.nearest(model_id),
                                 skipped=[b.path for b in self.broken if not b.readable])

    def view(self, model_id: str) -> ModelView:
        """The model for reading: its remembered frozen form (registry.frozen: no pydantic), else the typed
        entry. For code that reads fields and calls the typed classes' `frozen_calls` methods, nothing else."""
        frozen = self.models.frozen.get(model_id)
        if frozen is None and self.models.frozen_dir is not None and model_id in self.models:
            from registry.frozen import load

            frozen = load(self.models.frozen_dir, model_id)
            if frozen is None:  # an overlay's entry, frozen on its first view (module docstring)
                from registry.frozen import save_one

                entry = self.get(model_id)
                save_one(self.models.frozen_dir, model_id, entry)
                return entry
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
                  overlay_mode: str = "compat", verdict_cache: Optional[Path] = None, isolate: Sequence[Path] = (),
                  derive: Optional[Callable[[ModelEntry], Any]] = None) -> Registry:
    """Load registry files into one `Registry`. `paths=None` reads the packaged registry/models.json.

    `mode` applies to `paths`; overlays are checked in `overlay_mode`. The last file that sets
    `default_model` decides it (a user file may choose its own default). `verdict_cache`: a file where
    a clean validation verdict for exactly these files is remembered; `isolate`, `derive`: see the module
    docstring.
    """
    base = [Path(p) for p in paths] if paths else [PACKAGED_REGISTRY]
    files = [(p, mode) for p in base] + [(Path(p), overlay_mode) for p in overlays]
    key = verdict_key(files)
    remembered = _read_verdict(verdict_cache, key)
    registry = Registry(TypedModels(), {}, tuple(p for p, _m in files))
    may_skip = {str(Path(p)) for p in isolate}
    if remembered is not None:
        registry.broken = [BrokenOverlay.from_dict(b) for b in remembered.get("broken", [])]
        for broken in registry.broken:
            if str(broken.path) not in may_skip:
                raise broken.error  # now strict about it: what the first load of these files raised
    skipped = {str(b.path) for b in registry.broken}
    documents = []
    for number, (path, file_mode) in enumerate(files):
        if str(path) in skipped:
            continue
        try:
            documents.append((path, file_mode, read_json(path), number >= len(base)))
        except RegistryReadError as exc:
            if number < len(base) or str(path) not in may_skip:
                raise
            registry.broken.append(BrokenOverlay(path, exc, readable=False))
    known = {m["id"] for _p, _m, data, _o in documents for m in _models_of(data) if isinstance(m.get("id"), str)}

    for path, file_mode, data, is_overlay in documents:
        if remembered is not None:  # the rules passed on exactly these files: type entries on first use
            entries: list[tuple[int, Any]] = [(i, m) for i, m in enumerate(data["models"])]
            _add(registry, path, data, entries, derive)
            continue
        derived: dict[int, Any] = {}
        result = validate_document(
            data, mode=file_mode, file=str(path), schema=False, known_ids=known, keep_entries=not is_overlay,
            on_entry=None if derive is None else lambda index, entry: derived.__setitem__(index, derive(entry)))
        error = _invalid(path, result.errors) if result.errors else _reused_id(registry, path, data)
        if error is not None:
            if not is_overlay or str(path) not in may_skip:
                raise error
            ids = tuple(m["id"] for m in _models_of(data) if isinstance(m.get("id"), str))
            registry.broken.append(BrokenOverlay(path, error, ids))
            continue
        registry.findings.extend(f for f in result.findings if f.severity != "error")
        # Overlays' entries stay raw (typed again on use); the base files' typed ones are frozen below.
        entries = [(i, data["models"][i] if is_overlay else entry) for i, entry in result.entries]
        _add(registry, path, data, entries, None)
        registry.derived.update({data["models"][i]["id"]: derived[i] for i, _e in result.entries if i in derived})
    order = {str(path): number for number, (path, _m) in enumerate(files)}
    registry.broken.sort(key=lambda b: order.get(str(b.path), len(order)))  # reported in file order
    if remembered is not None and verdict_cache is not None:  # a verdict is only ever read from a cache
        registry.findings = [Finding(**f) for f in remembered["findings"]]
        registry.models.frozen_dir = _frozen_root(verdict_cache) / remembered["frozen"]
    elif verdict_cache is not None:
        _write_verdict(verdict_cache, key, registry, frozen_ids=[i for i, src in registry.sources.items()
                                                                 if src in base])
    return registry


def _models_of(data: Any) -> list[dict]:
    models = data.get("models") if isinstance(data, dict) else None
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def _reused_id(registry: Registry, path: Path, data: dict) -> Optional[RegistryInvalidError]:
    """An id of `path` that an earlier file already defines: the whole file is refused (checked before any
    of its models is added, so that a file left out leaves nothing behind)."""
    for entry in data["models"]:
        model_id = entry["id"]
        if model_id in registry.models:
            return RegistryInvalidError(
                f"model id {model_id!r} in {path} is already defined in {registry.sources[model_id]}",
                why="ids must be unique across the packaged registry and user registry files",
                hint=f"rename the model in {path} (user files add models; they do not replace them)",
                code="E_DUPLICATE_MODEL_ID")
    return None


def _add(registry: Registry, path: Path, data: dict, entries: list[tuple[int, Any]],
         derive: Optional[Callable[[ModelEntry], Any]]) -> None:
    """Add a file's models (raw dicts or typed entries); `derive` types raw ones just for it, without keeping them."""
    if derive is not None:
        from registry.model import ModelEntry
    for index, entry in entries:
        model_id = entry["id"] if isinstance(entry, dict) else entry.id
        if model_id in registry.models:  # within a file the rules caught it; across files _reused_id did
            raise RegistryInvalidError(f"model id {model_id!r} in {path} is already defined in "
                                       f"{registry.sources[model_id]}", code="E_DUPLICATE_MODEL_ID")
        registry.models.add(model_id, entry)
        registry.sources[model_id] = path
        registry.raw[model_id] = data["models"][index]
        if derive is not None:
            registry.derived[model_id] = derive(ModelEntry.model_validate(entry) if isinstance(entry, dict) else entry)
    if isinstance(data.get("default_model"), str):
        registry.default_model = data["default_model"]


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


def _write_verdict(cache: Path, key: dict, registry: Registry, frozen_ids: Sequence[str]) -> None:
    """Atomically; a verdict that cannot be written only costs speed next time. The `frozen_ids` entries are
    saved frozen first (registry.frozen), in a folder named after the key, which the verdict then names."""
    import hashlib

    from registry.frozen import save

    cache = Path(cache)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    verdict = {"key": key, "findings": [f.to_dict() for f in registry.findings], "frozen": name,
               "broken": [b.to_dict() for b in registry.broken]}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save(_frozen_root(cache), name, {model_id: registry.models[model_id] for model_id in frozen_ids})
    except OSError:
        return
    write_quietly(cache, json.dumps(verdict))


def _invalid(path: Path, errors: list[Finding]) -> RegistryInvalidError:
    listed = "\n".join(f.format() for f in errors[:MAX_LISTED])
    more = f"\n... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
    return RegistryInvalidError(f"registry file {path} is invalid ({len(errors)} error(s))",
                                why=listed + more, findings=errors,
                                hint=f"run `stemsep registry validate {path}` for every finding and its fix")
