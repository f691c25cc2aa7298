"""One validator finding: which rule, where (JSON path), what is wrong and how to fix it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Literal

Severity = Literal["error", "warning"]


def json_path(parts: Iterable[Any]) -> str:
    """`$.models[3].runtime.allowed[0]` from ("models", 3, "runtime", "allowed", 0)."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += "[" + _quote(str(part)) + "]"
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Finding:
    rule: str  # stable rule id, e.g. `runtime-preferred-in-allowed`; `schema` for JSON Schema errors
    severity: Severity
    path: str  # JSON path into the file, e.g. `$.models[3].runtime.preferred`
    message: str
    hint: str = ""
    model_id: str | None = None
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def in_file(self, file: str | None) -> "Finding":
        return replace(self, file=file)

    def format(self) -> str:
        where = f"{self.file}: " if self.file else ""
        model = f" (model {self.model_id})" if self.model_id else ""
        text = f"{where}{self.severity} {self.rule} at {self.path}{model}: {self.message}"
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text
