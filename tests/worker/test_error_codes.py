"""Every error code the worker side can send is declared in runtimes/protocol.py, documented in
docs/protocol.md, and the exit code the docs promise is the one the host gives it.

The codes are read from the source of everything under runtimes/ (string literals and `p.E_...`
attributes), so a new `ctx.fail("E_SOMETHING", ...)` in an adapter fails here until it is declared
and documented.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from envmgr.worker.client import exit_code_for
from runtimes import protocol as p
from tests.conftest import REPO

CODE = re.compile(r"E_[A-Z0-9]+(?:_[A-Z0-9]+)*")
DOC_ROW = re.compile(r"^\| `(E_[A-Z0-9_]+)` \|.*\| (\d+) \|$")


def codes_in(source: str) -> dict[str, int]:
    """Error codes a module's source names: string literals that are a code, and `x.E_...` attributes."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
            found.setdefault(node.value, node.lineno)
        elif isinstance(node, ast.Attribute) and CODE.fullmatch(node.attr):
            found.setdefault(node.attr, node.lineno)
    return found


def used_codes() -> dict[str, str]:
    """code -> first `file:line` under runtimes/ that names it."""
    used: dict[str, str] = {}
    for path in sorted((REPO / "runtimes").rglob("*.py")):
        for code, line in codes_in(path.read_text(encoding="utf-8")).items():
            used.setdefault(code, f"{path.relative_to(REPO)}:{line}")
    return used


def declared_codes() -> set[str]:
    return {value for name, value in vars(p).items() if name.startswith("E_") and isinstance(value, str)}


def documented_codes() -> dict[str, int]:
    """code -> exit code, from the tables of docs/protocol.md's "Error codes" section."""
    text = (REPO / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): int(m.group(2)) for line in section.splitlines() if (m := DOC_ROW.match(line.strip()))}


def test_the_scanner_sees_literals_and_attributes() -> None:
    source = 'ctx.fail("E_NEW_THING", "x")\nraise JobError(p.E_OTHER, "y")\nprefix = "E_INPUT_"\n'
    assert set(codes_in(source)) == {"E_NEW_THING", "E_OTHER"}


def test_every_code_used_under_runtimes_is_declared_in_the_protocol() -> None:
    used = used_codes()
    assert {"E_INPUT_SAMPLE_RATE", "E_CODE_IMPORT", "E_CANCELLED"} <= set(used)  # the scan reaches the adapters
    undeclared = {code: where for code, where in used.items() if code not in declared_codes()}
    assert not undeclared, f"declare these in runtimes/protocol.py and docs/protocol.md: {undeclared}"


def test_declared_constants_are_named_as_their_value() -> None:
    wrong = {name: value for name, value in vars(p).items() if name.startswith("E_") and name != value}
    assert not wrong


def test_every_declared_code_is_documented_with_the_exit_code_the_host_gives_it() -> None:
    documented = documented_codes()
    missing = declared_codes() - set(documented)
    assert not missing, f"document these in docs/protocol.md (Error codes): {sorted(missing)}"
    wrong = {code: (documented[code], int(exit_code_for(code))) for code in declared_codes()
             if documented[code] != int(exit_code_for(code))}
    assert not wrong, f"docs say / host gives: {wrong}"
    assert documented["E_INPUT_SAMPLE_RATE"] == 12
