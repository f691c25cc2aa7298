"""Every error code the host (envmgr/) and the registry (registry/) raise is declared in HOST_CODES
(registry/errors.py) with the exit code it is really raised with, and documented in docs/errors.md; every
exit code is in the README. The sibling of test_error_codes.py, which does the same for the worker's codes.

Codes are read from the source (string literals and `x.E_...` attributes, as for runtimes/): a code that
belongs to preflight's findings (envmgr/preflight/rules/codes.py) or to the worker protocol is checked
against that table instead, and the three tables must agree where they share a code.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

from envmgr.preflight.rules import CODES as FINDINGS
from envmgr.worker.client import exit_code_for
from registry.errors import HOST_CODES, ExitCode, StemSepError
from tests.conftest import REPO
from tests.worker.test_error_codes import codes_in, declared_codes as worker_codes

HOST_PACKAGES = ("envmgr", "registry")
DOC_ROW = re.compile(r"^\| `(E_[A-Z0-9_]+)` \|.*\| ([^|]+) \|$")


def host_sources() -> Iterator[Path]:
    for package in HOST_PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def module_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def error_classes() -> dict[str, type[StemSepError]]:
    """Every StemSepError subclass the host and the registry define, by name (all their modules imported)."""
    for path in host_sources():
        importlib.import_module(module_of(path))
    found: dict[str, type[StemSepError]] = {}
    todo: list[type[StemSepError]] = [StemSepError]
    while todo:
        cls = todo.pop()
        assert found.setdefault(cls.__name__, cls) is cls, f"two error classes named {cls.__name__}"
        todo += cls.__subclasses__()
    return found


def known_exit_code(code: str) -> ExitCode | None:
    """The exit code the tables promise for `code`: the host's, else preflight's, else the worker protocol's."""
    if code in HOST_CODES:
        return HOST_CODES[code].exit_code
    if code in FINDINGS:
        return FINDINGS[code].exit_code
    return exit_code_for(code)


def raise_sites() -> list[tuple[str, str, ExitCode | None]]:
    """(where, code, exit code) for each construction of an error class with a literal code: `code="E_X"` or
    `code=p.E_X`. The exit code is the literal `exit_code=ExitCode.Y`, else the class's own; None when the
    call computes it (an error that passes on the exit code of what it reports)."""
    classes = error_classes()
    sites = []
    for path in host_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name not in classes:
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            code_node = keywords.get("code")
            if isinstance(code_node, ast.Constant) and isinstance(code_node.value, str):
                code = code_node.value
            elif isinstance(code_node, ast.Attribute) and code_node.attr.startswith("E_"):
                code = code_node.attr
            else:
                continue  # no code given (the class's own, checked per class) or one passed on from a finding
            exit_node = keywords.get("exit_code")
            if exit_node is None:
                exit_code: ExitCode | None = classes[name].exit_code
            elif (isinstance(exit_node, ast.Attribute) and isinstance(exit_node.value, ast.Name)
                  and exit_node.value.id == "ExitCode"):
                exit_code = ExitCode[exit_node.attr]
            else:
                exit_code = None
            sites.append((f"{path.relative_to(REPO)}:{node.lineno}", code, exit_code))
    return sites


def documented_codes() -> dict[str, str]:
    """code -> exit code column, from docs/errors.md's "Host and registry error codes" section."""
    text = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    section = text.split("## Host and registry error codes", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2).strip() for line in section.splitlines() if (m := DOC_ROW.match(line.strip()))}


def test_the_scan_sees_classes_and_raise_sites() -> None:
    assert {"CodeTrustError", "WorkerError", "UsageError", "InternalError"} <= set(error_classes())
    sites = {(code, exit_code) for _where, code, exit_code in raise_sites()}
    assert {("E_WORKER_START", ExitCode.WORKER), ("E_DUPLICATE_MODEL_ID", ExitCode.INVALID),
            ("E_PROTOCOL_UNEXPECTED", ExitCode.WORKER), ("E_ARTIFACT_NOT_DECLARED", ExitCode.USAGE)} <= sites


def test_every_code_named_in_the_host_or_the_registry_is_declared() -> None:
    used: dict[str, str] = {}
    for path in host_sources():
        for code, line in codes_in(path.read_text(encoding="utf-8")).items():
            used.setdefault(code, f"{path.relative_to(REPO)}:{line}")
    assert {"E_USAGE", "E_BAD_FILTER", "E_NO_INPUT", "E_PROTOCOL_VERSION"} <= set(used)  # all three tables
    used.pop(StemSepError.code)  # the base class's placeholder: every raise names a code (below)
    undeclared = {code: where for code, where in used.items()
                  if code not in HOST_CODES and code not in FINDINGS and code not in worker_codes()}
    assert not undeclared, f"declare these in registry/errors.py HOST_CODES and docs/errors.md: {undeclared}"


def test_every_error_class_has_the_exit_code_of_its_code() -> None:
    classes = {name: cls for name, cls in error_classes().items() if cls is not StemSepError}
    missing = {name: cls.code for name, cls in classes.items() if cls.code not in HOST_CODES}
    assert not missing, f"declare these in HOST_CODES: {missing}"
    wrong = {name: (cls.code, int(cls.exit_code), HOST_CODES[cls.code].exit_code) for name, cls in classes.items()
             if HOST_CODES[cls.code].exit_code not in (None, cls.exit_code)}
    assert not wrong, f"class exit code differs from HOST_CODES (class, code, has, table): {wrong}"


def test_every_raise_with_a_code_uses_that_code_s_exit_code() -> None:
    wrong = {where: (code, int(exit_code), known_exit_code(code)) for where, code, exit_code in raise_sites()
             if exit_code is not None and known_exit_code(code) not in (None, exit_code)}
    assert not wrong, f"raised with another exit code than its table says (code, raised, table): {wrong}"


def test_no_error_is_raised_without_a_code() -> None:
    bare = [f"{path.relative_to(REPO)}:{node.lineno}" for path in host_sources()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "StemSepError"
            and "code" not in {k.arg for k in node.keywords}]
    assert not bare, f"these raise {StemSepError.code}; give them a code from HOST_CODES: {bare}"


def test_the_three_tables_agree_where_they_share_a_code() -> None:
    with_findings = {code: (HOST_CODES[code].exit_code, FINDINGS[code].exit_code)
                     for code in set(HOST_CODES) & set(FINDINGS)
                     if HOST_CODES[code].exit_code != FINDINGS[code].exit_code}
    assert not with_findings, f"HOST_CODES / preflight's CODES: {with_findings}"
    with_worker = {code: (HOST_CODES[code].exit_code, exit_code_for(code))
                   for code in set(HOST_CODES) & worker_codes() if HOST_CODES[code].exit_code != exit_code_for(code)}
    assert not with_worker, f"HOST_CODES / the worker's codes: {with_worker}"
    assert {"E_UNKNOWN_MODEL", "E_NO_INTERPRETER"} <= set(HOST_CODES) & set(FINDINGS)
    assert "E_CANCELLED" in set(HOST_CODES) & worker_codes()


def test_every_host_code_is_documented_with_its_exit_code() -> None:
    documented = documented_codes()
    missing = sorted(set(HOST_CODES) - set(documented))
    assert not missing, f"document these in docs/errors.md (Host and registry error codes): {missing}"
    stale = sorted(set(documented) - set(HOST_CODES))
    assert not stale, f"docs/errors.md documents codes HOST_CODES does not have: {stale}"
    wrong = {code: (documented[code], entry.exit_code) for code, entry in HOST_CODES.items()
             if documented[code] != (str(int(entry.exit_code)) if entry.exit_code is not None else "varies")}
    assert not wrong, f"docs say / table says (an exit code, or `varies`): {wrong}"
    assert documented["E_INTERNAL"] == "70" and documented["E_CANCELLED"] == "130"


def test_every_exit_code_is_in_the_readme() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(n) for n in re.findall(r"(?:^|·)\s*(\d+) ", section, re.M)}
    assert listed == {int(c) for c in ExitCode}, f"README lists {sorted(listed)}"
