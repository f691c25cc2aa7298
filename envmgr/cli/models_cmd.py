"""`stemsep models list` and `stemsep models show ID`: explore the registry.

`list` reads the cached listing index (envmgr.catalog.model_index) so a warm run imports neither pydantic nor
numpy; `show` loads the full typed registry and explains the model in plain language.
Other `models` subcommands (download, import, status, rm) live in artifacts_cmd.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Explore the model registry (and manage model files).")

_REGISTRY = typer.Option(None, "--registry", help="Extra registry file overlaid on the packaged one; repeatable.")
_JSON = typer.Option(False, "--json", help="Machine-readable output.")


@app.command("list")
def list_models(
    role: Optional[str] = typer.Option(None, "--role", help="Only models with this role (separation, dereverb, ...)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="Only models this runtime may run."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture (BS-Roformer, MDX23C...) or family "
                                       "(roformer, demucs...)."),
    stem: Optional[str] = typer.Option(None, "--stem", help="Only models that output this stem."),
    phase_fix_reference: bool = typer.Option(False, "--phase-fix-reference",
                                             help="Only valid Phase Fix reference models."),
    registry: Optional[list[Path]] = _REGISTRY,
    as_json: bool = _JSON,
) -> None:
    """List models, one row each (filters combine)."""
    from envmgr.catalog.model_index import filter_rows
    from envmgr.catalog.registry_files import listing, report_broken

    listed, broken = listing(registry or ())
    report_broken(broken)
    rows = filter_rows(listed, role=role, runtime=runtime, arch=arch, stem=stem,
                       phase_fix_reference=phase_fix_reference)
    if as_json:
        import json
        import sys

        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    _print_table(rows)


def _print_table(rows: list[dict[str, Any]]) -> None:
    """A plain aligned table. Not rich: importing and laying out a rich Table costs more than the whole
    budget of a warm `models list` (scripts/bench/README.md)."""
    import shutil

    if not rows:
        print("No model matches these filters. `stemsep models list` shows every model.")
        return
    header = ("ID", "ARCHITECTURE", "STEMS", "ROLES", "RUNTIMES", "PF")
    lines = [header] + [(
        row["id"] + (" (default)" if row["default"] else ""),
        row["architecture"],
        ",".join(row["stems"]) or "-",
        ",".join(row["roles"]) or "-",
        ",".join(r + "*" if r == row["preferred"] else r for r in row["runtimes"]) or "none (catalog only)",
        "yes" if row["phase_fix_reference"] else "",
    ) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    room = shutil.get_terminal_size((200, 24)).columns - sum(widths) - 2 * (len(widths) - 1)
    for wide in (2, 3):  # stems and roles give way first on narrow terminals
        if room < 0:
            cut = max(0, min(-room, widths[wide] - max(len(header[wide]), 12)))
            widths[wide] -= cut
            room += cut
    for line in lines:
        cells = [c if len(c) <= w else c[: max(w - 1, 0)] + "~" for c, w in zip(line, widths)]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    print(f"\n{len(rows)} model(s). *: preferred runtime. PF: valid Phase Fix reference. "
          "Details: stemsep models show ID")


@app.command("show")
def show_model(
    model_id: str = typer.Argument(..., metavar="ID", help="Model id (see `stemsep models list`)."),
    registry: Optional[list[Path]] = _REGISTRY,
    as_json: bool = _JSON,
) -> None:
    """Explain a model: where it runs and why not elsewhere, requirements, manual steps, Phase Fix,
    recommended settings per runtime in that runtime's native terms."""
    from envmgr.catalog.model_explain import explain_model, render_explanation
    from envmgr.catalog.registry_files import load

    reg = load(registry or ())
    entry = reg.get(model_id)
    info = explain_model(entry, source=reg.sources[entry.id], default_model=reg.default_model,
                         raw=reg.raw[entry.id])
    if as_json:
        import json
        import sys

        sys.stdout.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        return
    render_explanation(info)
