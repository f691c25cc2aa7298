"""Semantic rules of the registry: one small function per rule, each with a stable id and a fix hint.

A model rule sees one typed `ModelEntry` and yields `Hit`s with paths relative to the model; a document
rule sees the whole file. The validator turns hits into `Finding`s with absolute JSON paths.
`strict_only` rules check curation quality: in compat mode (legacy and user files) they only warn.
"""

from __future__ import annotations

# Importing the modules registers their rules (order = report order).
from registry.rules import (  # noqa: F401
    identity,
    runtime,
    requirements,
    recommended,
    phase_fix,
    capabilities,
    artifacts,
    uvr_params,
    evidence,
)
from registry.rules.base import RULES, DocumentContext, Hit, ModelContext, Rule

__all__ = ["RULES", "DocumentContext", "Hit", "ModelContext", "Rule"]
