"""The rules' base types and the registry of rules they register into (`RULES`).

The rule modules import these; `registry/rules/__init__.py` imports the rule modules, so importing
the package registers every rule, with no module importing a half-initialised package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Optional

from registry.findings import Severity

Scope = Literal["model", "document"]


@dataclass(frozen=True)
class Hit:
    path: tuple[Any, ...]  # relative to the model for model rules, absolute for document rules
    message: str
    hint: Optional[str] = None  # overrides the rule's hint


@dataclass(frozen=True)
class ModelContext:
    mode: str
    index: int


@dataclass(frozen=True)
class DocumentContext:
    mode: str
    data: dict[str, Any]
    items: list[tuple[int, Any, bool]]  # (index, raw item, whether it fits the schema): raw, so a large file's
    # typed entries need not all be alive at once
    known_ids: frozenset[str] = field(default_factory=frozenset)  # ids of every file validated together


@dataclass(frozen=True)
class Rule:
    id: str
    scope: Scope
    summary: str
    hint: str
    check: Callable[..., Iterable[Hit]]
    severity: Severity = "error"
    strict_only: bool = False

    def severity_in(self, mode: str) -> Severity:
        return "warning" if self.strict_only and mode != "strict" else self.severity


RULES: dict[str, Rule] = {}


def repeats(values: Iterable[Any]) -> Iterable[tuple[int, Any]]:
    """(index, value) for every value already seen earlier in `values`."""
    seen: set[Any] = set()
    for i, value in enumerate(values):
        if value in seen:
            yield i, value
        seen.add(value)


def _register(scope: Scope, rule_id: str, summary: str, hint: str, severity: Severity, strict_only: bool):
    def wrap(fn: Callable[..., Iterable[Hit]]) -> Callable[..., Iterable[Hit]]:
        if rule_id in RULES:
            raise RuntimeError(f"duplicate rule id {rule_id}")
        RULES[rule_id] = Rule(rule_id, scope, summary, hint, fn, severity, strict_only)
        return fn
    return wrap


def model_rule(rule_id: str, *, summary: str, hint: str, severity: Severity = "error", strict_only: bool = False):
    return _register("model", rule_id, summary, hint, severity, strict_only)


def document_rule(rule_id: str, *, summary: str, hint: str, severity: Severity = "error", strict_only: bool = False):
    return _register("document", rule_id, summary, hint, severity, strict_only)
