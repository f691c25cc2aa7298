"""Ids, names and cross-model uniqueness."""

from __future__ import annotations

import re
from collections import defaultdict

from registry.rules.base import DocumentContext, Hit, ModelContext, document_rule, model_rule
from registry.vocab import ARCHITECTURE_FAMILIES

SLUG = re.compile(r"^[a-z0-9]+(?:[-._][a-z0-9]+)*$")


@model_rule("id-slug", summary="model ids are lowercase slugs",
            hint="use lowercase letters, digits and single - . _ between them, e.g. bs-roformer-viperx-1297")
def id_slug(entry, ctx: ModelContext):
    if not SLUG.match(entry.id):
        yield Hit(("id",), f"id {entry.id!r} is not a lowercase slug")


@model_rule("name-present", summary="every model has a display name", strict_only=True,
            hint="set `name` to the model's human-readable name")
def name_present(entry, ctx: ModelContext):
    if not entry.name.strip():
        yield Hit(("name",), "the model has no name")


@model_rule("architecture-known", summary="architecture is one of the known names", strict_only=True,
            hint="use one of: " + ", ".join(ARCHITECTURE_FAMILIES))
def architecture_known(entry, ctx: ModelContext):
    if entry.architecture not in ARCHITECTURE_FAMILIES:
        yield Hit(("architecture",), f"unknown architecture {entry.architecture!r}: its settings semantics "
                  "cannot be looked up")


def _ids(ctx: DocumentContext):
    for index, item, _entry in ctx.items:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            yield index, item["id"]


@document_rule("id-unique", summary="model ids are unique",
               hint="rename one of the models; ids must stay unique across the packaged and user registries")
def id_unique(ctx: DocumentContext):
    seen: dict[str, int] = {}
    for index, model_id in _ids(ctx):
        if model_id in seen:
            yield Hit(("models", index, "id"), f"id {model_id!r} is already used by $.models[{seen[model_id]}]")
        else:
            seen[model_id] = index


@document_rule("primary-filename-duplicate", summary="no two models share a primary artifact filename",
               strict_only=True,
               hint="give each model's checkpoint its own filename (or merge the two entries if they are one model)")
def primary_filename_duplicate(ctx: DocumentContext):
    owners: dict[str, list[int]] = defaultdict(list)
    for index, item, typed in ctx.items:
        primary = (item.get("artifacts") or {}).get("primary") if typed else None  # typed: the shapes are right
        if primary is not None:
            owners[primary["filename"]].append(index)
    for filename, indexes in owners.items():
        for index in indexes[1:]:
            yield Hit(("models", index, "artifacts", "primary", "filename"),
                      f"primary filename {filename!r} is also the primary of $.models[{indexes[0]}]")


@document_rule("default-model-exists", summary="default_model names a model of the registry",
               hint="set default_model to the id of a model in this registry (or in the packaged one)")
def default_model_exists(ctx: DocumentContext):
    default = ctx.data.get("default_model")
    if isinstance(default, str) and default not in ctx.known_ids:
        yield Hit(("default_model",), f"default_model {default!r} is not a model id here")
