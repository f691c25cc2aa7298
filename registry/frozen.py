"""Registry entries frozen for reading: what a typed entry answers, without pydantic.

Typing an entry with registry.model costs imports and class building (scripts/bench/README.md), most of what a
`stemsep separate` or `stemsep preflight` start spends before its work. So once the loader has validated
a set of registry files, it remembers every entry frozen (registry.loader), and commands that only read
one model (`Registry.view`) get a `Frozen` instead of a `ModelEntry`. A `Frozen` holds every field the typed
entry has (defaults filled in, nulls read as their defaults, unknown keys kept) and the results of the
typed classes' read-only methods named in their `frozen_calls` (`artifacts.all()`, `to_json()`...), so
code that reads entries works unchanged on either. Stdlib only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional


class Frozen:
    """A read-only typed registry object (a ModelEntry, its Artifacts...): fields and recorded method results."""

    __slots__ = ("_kind", "_values", "_calls")

    def __init__(self, kind: str, values: dict[str, Any], calls: dict[str, Any]) -> None:
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_calls", calls)

    def __getattr__(self, name: str) -> Any:
        # Reached only for names the class lacks: a method of the typed class (a recorded result) or a field.
        calls, values = object.__getattribute__(self, "_calls"), object.__getattribute__(self, "_values")
        if name in calls:
            result = calls[name]
            return lambda: copy.deepcopy(result)  # a typed method builds a new value per call; callers may edit it
        try:
            return values[name]
        except KeyError:
            raise AttributeError(f"{self._kind} has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a frozen {self._kind} cannot be changed")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frozen):
            return NotImplemented
        return (self._kind, self._values, self._calls) == (other._kind, other._values, other._calls)

    __hash__ = None  # type: ignore[assignment]  # like the typed models: mutable containers inside

    def __copy__(self) -> "Frozen":
        return self  # cannot be changed, so a copy may be the object itself

    def __deepcopy__(self, memo: dict) -> "Frozen":
        return self

    def __repr__(self) -> str:
        return f"Frozen {self._kind}({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


def freeze(value: Any) -> Any:
    """The frozen form of a typed registry object (duck-typed on pydantic's `model_fields`), recursively."""
    if value is None or isinstance(value, (str, int, float)):  # most of an entry: answered first
        return value
    fields = getattr(type(value), "model_fields", None)
    if fields is not None:
        values = {name: freeze(getattr(value, name)) for name in fields}
        values.update({key: freeze(item) for key, item in (value.model_extra or {}).items()})
        calls = {name: freeze(getattr(value, name)()) for name in getattr(type(value), "frozen_calls", ())}
        return Frozen(type(value).__name__, values, calls)
    if isinstance(value, dict):
        return {key: freeze(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [freeze(item) for item in value]
    return value


def save(root: Path, name: str, entries: Mapping[str, Any]) -> None:
    """Freeze typed `entries` (id -> ModelEntry) into `root/name/`, one small file per model (a command
    reads only the one it needs), and drop the folders of earlier registry versions. All or nothing: the
    folder appears complete (a rename) or not at all; an existing one already holds the same entries."""
    folder = root / name
    if not folder.is_dir():
        tmp = root / f".{name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for model_id, entry in entries.items():
            (tmp / _file_name(model_id)).write_text(encode(freeze(entry)), encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process saved it first
            shutil.rmtree(tmp, ignore_errors=True)
    for old in root.iterdir():
        if old.name != name and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)


def save_one(folder: Path, model_id: str, entry: Any) -> None:
    """Freeze one typed entry into an existing `folder` (an overlay's entry on its first read). Atomic: a
    reader sees the whole file or none; one that cannot be written only costs speed next time."""
    from registry.jsonfile import write_quietly

    write_quietly(folder / _file_name(model_id), encode(freeze(entry)))


def load(folder: Path, model_id: str) -> Optional[Frozen]:
    """The frozen entry saved for `model_id`, or None when it cannot be read (the caller types it instead)."""
    try:
        return decode((folder / _file_name(model_id)).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _file_name(model_id: str) -> str:
    return hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:32] + ".json"  # ids may hold any character


def encode(value: Any) -> str:
    """JSON text for a frozen value. Every object is tagged (`{"$": "dict"}` or the class's name), so a
    plain dict can never be mistaken for a typed object, whatever keys a registry file gives it."""
    return json.dumps(_tagged(value), ensure_ascii=False, separators=(",", ":"))


def decode(text: str) -> Any:
    return _untagged(json.loads(text))


def _tagged(value: Any) -> Any:
    if isinstance(value, Frozen):
        return {"$": value._kind, "v": _tagged_items(value._values), "c": _tagged_items(value._calls)}
    if isinstance(value, dict):
        return {"$": "dict", "v": _tagged_items(value)}
    if isinstance(value, list):
        return [_tagged(item) for item in value]
    return value


def _tagged_items(items: dict[str, Any]) -> dict[str, Any]:
    return {key: _tagged(item) for key, item in items.items()}


def _untagged(value: Any) -> Any:
    if isinstance(value, dict):
        items = _untagged_items(value["v"])
        return items if value["$"] == "dict" else Frozen(value["$"], items, _untagged_items(value["c"]))
    if isinstance(value, list):
        return [_untagged(item) for item in value]
    return value


def _untagged_items(items: dict[str, Any]) -> dict[str, Any]:
    return {key: _untagged(item) for key, item in items.items()}
