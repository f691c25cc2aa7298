"""Every member of `registry.view.ModelView`, and of the views nested in it, exists on what `Registry.view`
hands out: the frozen form of every packaged entry (a warm start) and the typed entry (a cold one).

The frozen form answers by `__getattr__`, so a type checker cannot tell whether it has a member; the typed
entry is checked against ModelView by mypy (tests/architecture/test_types.py). This walks the Protocols
at run time instead: a method that host code may call (declared in ModelView) but that the typed class
does not record in `frozen_calls` fails here, not on a user's warm `stemsep separate`.
"""

from __future__ import annotations

import collections.abc
import json
import typing
from typing import Any, Protocol, Union

import pytest

from registry.frozen import Frozen
from registry.loader import PACKAGED_REGISTRY, load_registry
from registry.view import CapabilitiesView, ModelView


def members(protocol: type) -> dict[str, Any]:
    """name -> property or method, declared by `protocol` and the Protocols it extends."""
    out: dict[str, Any] = {}
    for cls in reversed(protocol.__mro__):
        if getattr(cls, "_is_protocol", False) and cls is not Protocol:
            out.update({k: v for k, v in vars(cls).items()
                        if not k.startswith("_") and (isinstance(v, property) or callable(v))})
    return out


def _protocol_in(tp: Any) -> Any:
    """The Protocol that values of annotation `tp` are read through: P, Optional[P] or Union[str, P]."""
    if getattr(tp, "_is_protocol", False):
        return tp
    if typing.get_origin(tp) is Union:
        found = [arg for arg in typing.get_args(tp) if getattr(arg, "_is_protocol", False)]
        return found[0] if found else None
    return None


def missing_members(protocol: type, value: Any, where: str) -> list[str]:
    """The members of `protocol` (recursively, through nested views and sequences of them) that `value` lacks."""
    missing = []
    for name, member in members(protocol).items():
        is_method = not isinstance(member, property)
        fn = member if is_method else member.fget
        label = f"{where}.{name}" + ("()" if is_method else "")
        try:
            found = getattr(value, name)
            found = found() if is_method else found
        except (AttributeError, TypeError) as exc:
            missing.append(f"{label}: {exc}")
            continue
        tp = typing.get_type_hints(fn)["return"]
        items = [(label, found)]
        if typing.get_origin(tp) is collections.abc.Sequence:
            tp = typing.get_args(tp)[0]
            items = [(f"{label}[{i}]", item) for i, item in enumerate(found)]
        nested = _protocol_in(tp)
        for item_label, item in items:
            if nested is not None and item is not None and not isinstance(item, str):
                missing += missing_members(nested, item, item_label)
    return missing


@pytest.fixture(scope="module")
def warm_registry(tmp_path_factory):
    """The packaged registry as a warm start reads it: a remembered verdict, entries frozen."""
    verdict = tmp_path_factory.mktemp("verdict") / "registry-verdict.json"
    load_registry(verdict_cache=verdict)
    return load_registry(verdict_cache=verdict)


def test_every_packaged_entry_has_every_member_of_model_view_when_frozen(warm_registry):
    ids = list(warm_registry.models)
    assert len(ids) == len(json.loads(PACKAGED_REGISTRY.read_text(encoding="utf-8"))["models"])
    for model_id in ids:
        view = warm_registry.view(model_id)
        assert isinstance(view, Frozen), model_id  # the warm path, not a typed fallback
        assert missing_members(ModelView, view, model_id) == []


def test_every_packaged_entry_has_every_member_of_model_view_when_typed(warm_registry):
    for model_id in warm_registry.models:
        assert missing_members(ModelView, warm_registry.get(model_id), model_id) == []


class _DumpedCapabilities(CapabilitiesView, Protocol):
    def model_dump(self) -> dict[str, Any]: ...


class _ReadsPydantic(ModelView, Protocol):
    """What `models show` reads (envmgr/catalog/model_explain.py): pydantic's model_dump, typed entries only."""

    @property
    def capabilities(self) -> _DumpedCapabilities: ...


def test_a_member_the_frozen_form_lacks_is_caught(warm_registry):
    model_id = next(iter(warm_registry.models))
    assert missing_members(_ReadsPydantic, warm_registry.get(model_id), model_id) == []
    missing = missing_members(_ReadsPydantic, warm_registry.view(model_id), model_id)
    assert [m.split(":")[0] for m in missing] == [f"{model_id}.capabilities.model_dump()"]
