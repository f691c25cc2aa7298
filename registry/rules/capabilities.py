"""Capabilities (seed §3.6): stems, roles, channel support."""

from __future__ import annotations

import re

from registry.rules.base import Hit, ModelContext, model_rule, repeats

STEM = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")


@model_rule("capabilities-stems-declared", summary="every model declares the stems it outputs", strict_only=True,
            hint="list the stems from the model config's training.instruments / target_instrument")
def stems_declared(entry, ctx: ModelContext):
    if not entry.capabilities.stems and not entry.runtime.catalog_only:
        yield Hit(("capabilities", "stems"), "no stems declared: filters by stem and the output names cannot work")


@model_rule("capabilities-roles-declared", summary="every model declares at least one role", strict_only=True,
            hint="list roles such as separation, dereverb, denoise, karaoke, phase_fix_reference")
def roles_declared(entry, ctx: ModelContext):
    if not entry.capabilities.roles:
        yield Hit(("capabilities", "roles"), "no roles declared")


@model_rule("capabilities-stem-names", summary="stem names are unique lowercase words",
            hint="write stems like vocals, instrumental, drums, bass, other, no_reverb")
def stem_names(entry, ctx: ModelContext):
    for i, stem in enumerate(entry.capabilities.stems):
        if not STEM.match(stem):
            yield Hit(("capabilities", "stems", i), f"stem {stem!r} is not a lowercase word")
    for i, stem in repeats(entry.capabilities.stems):
        yield Hit(("capabilities", "stems", i), f"stem {stem!r} is listed twice")


@model_rule("capabilities-roles-unique", summary="roles are listed once", hint="remove the repeated role")
def roles_unique(entry, ctx: ModelContext):
    for i, role in repeats(entry.capabilities.roles):
        yield Hit(("capabilities", "roles", i), f"role {role} is listed twice")


@model_rule("capabilities-channels", summary="a model supports mono or stereo input",
            hint="set supports_stereo (or supports_mono) to true; a model that takes neither cannot run")
def channels(entry, ctx: ModelContext):
    c = entry.capabilities
    if c.supports_mono is False and c.supports_stereo is False:
        yield Hit(("capabilities",), "supports_mono and supports_stereo are both false")
