"""The direction of dependence (docs/ARCHITECTURE.md) holds, and no module imports itself round a cycle.

Every import counts: at module level, inside functions (imported late for speed, still a dependence) and
under TYPE_CHECKING (a type seam is a dependence too). Read from the source with `ast`, nothing imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("envmgr", "registry", "runtimes")

# What each part of the host may import, besides the registry and itself (its README says why).
# `common` is envmgr's top level: config, errors, fsutil, sizes, stop_signals.
HOST_MAY_IMPORT = {
    "cli": {"batch", "serve", "diagnostics", "jobs", "preflight", "worker", "envs", "artifacts", "catalog", "common"},
    "serve": {"diagnostics", "jobs", "preflight", "worker", "envs", "artifacts", "catalog", "common"},
    "batch": {"diagnostics", "jobs", "preflight", "worker", "envs", "artifacts", "catalog", "common"},
    "diagnostics": {"jobs", "preflight", "worker", "envs", "artifacts", "catalog", "common"},
    "jobs": {"preflight", "worker", "envs", "artifacts", "catalog", "common"},
    "preflight": {"envs", "artifacts", "catalog", "common"},
    "worker": {"common"},
    "envs": {"catalog", "common"},
    "artifacts": {"common"},
    "catalog": {"common"},
    "common": {"common"},
}
HOST_MAY_IMPORT_FROM_RUNTIMES = {"runtimes.protocol"}  # the one module both sides share (stdlib only)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules that `path` imports (a name imported from a package counts as its submodule when
    one exists: `from envmgr.preflight import rules` depends on envmgr.preflight.rules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a non-module attribute
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    mods = project_modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def host_part(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 3 or (len(parts) == 2 and parts[1] in HOST_MAY_IMPORT and parts[1] != "common"):
        return parts[1] if parts[1] in HOST_MAY_IMPORT else "common"
    return "common"


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles (break them with a leaf module): " + "; ".join(" <-> ".join(c) for c in found)


def test_worker_side_imports_neither_host_nor_registry() -> None:
    bad = [f"{m} -> {t}" for m, ts in graph().items() if m.startswith("runtimes")
           for t in ts if not t.startswith("runtimes")]
    assert not bad, "runtimes/ runs inside model envs and receives everything in the job message: " + ", ".join(bad)


def test_registry_never_imports_the_host() -> None:
    bad = [f"{m} -> {t}" for m, ts in graph().items() if m.startswith("registry")
           for t in ts if t.startswith("envmgr")]
    assert not bad, ", ".join(bad)


def test_host_parts_import_only_downwards() -> None:
    bad = []
    for module, targets in graph().items():
        if not module.startswith("envmgr.") and module != "envmgr":
            continue
        part = host_part(module)
        for target in targets:
            if target.startswith("runtimes") and target not in HOST_MAY_IMPORT_FROM_RUNTIMES:
                bad.append(f"{module} -> {target} (the host shares only {HOST_MAY_IMPORT_FROM_RUNTIMES})")
            elif target.startswith("envmgr") and target != "envmgr":
                other = host_part(target)
                if other != part and other not in HOST_MAY_IMPORT[part]:
                    bad.append(f"{module} ({part}) -> {target} ({other})")
    assert not bad, "imports against the direction of dependence:\n  " + "\n  ".join(sorted(bad))


def test_the_checks_see_the_layout() -> None:
    """Guards the checks themselves: they read real modules and real edges."""
    edges = graph()
    assert "envmgr.preflight.run" in edges and "envmgr.preflight.rules" in edges["envmgr.preflight.run"]
    assert "envmgr.worker.process" in edges["envmgr.worker.prewarm"]
    assert {host_part("envmgr.cli.main"), host_part("envmgr.config"), host_part("envmgr.envs.lock")} == {
        "cli", "common", "envs"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
