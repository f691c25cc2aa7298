"""Evidence: every curated fact says where it came from."""

from __future__ import annotations

import re

from registry.rules.base import Hit, ModelContext, model_rule

GUIDE_SOURCE = re.compile(r"^deton24_guide\.txt:L\d+(?:-L?\d+)?$")
URL = re.compile(r"^https?://\S+$", re.IGNORECASE)


@model_rule("evidence-present", summary="every model records its evidence", strict_only=True,
            hint="add evidence entries (fields, kind, source) for the model's runtime, settings and capabilities")
def evidence_present(entry, ctx: ModelContext):
    if not entry.evidence:
        yield Hit(("evidence",), "the model records no evidence")


@model_rule("evidence-fields-known", summary="evidence.fields name fields of the entry",
            hint="name entry fields, optionally dotted: runtime, runtime.allowed, phase_fix.recommended_params")
def fields_known(entry, ctx: ModelContext):
    known = set(type(entry).model_fields) | set(entry.model_extra or {})
    for i, item in enumerate(entry.evidence):
        if not item.fields:
            yield Hit(("evidence", i, "fields"), "evidence supports no field")
        for j, name in enumerate(item.fields):
            if name.split(".", 1)[0] not in known:
                yield Hit(("evidence", i, "fields", j), f"{name!r} is not a field of the entry")


@model_rule("evidence-source-format", summary="guide evidence cites lines; homepage evidence is a URL",
            hint="guide: deton24_guide.txt:L49-53; homepage: https://...")
def source_format(entry, ctx: ModelContext):
    for i, item in enumerate(entry.evidence):
        if item.kind == "guide" and not GUIDE_SOURCE.match(item.source):
            yield Hit(("evidence", i, "source"), f"guide evidence {item.source!r} does not cite deton24_guide.txt:L<n>")
        elif item.kind == "homepage" and not URL.match(item.source):
            yield Hit(("evidence", i, "source"), f"homepage evidence {item.source!r} is not a URL")
        elif not item.source.strip():
            yield Hit(("evidence", i, "source"), "evidence has no source")
