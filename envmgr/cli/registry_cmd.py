"""`stemsep registry validate [PATH...]`: JSON Schema plus semantic rules; exit 0 clean, 1 invalid, 2 unreadable."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Check registry files.")


@app.command("validate")
def validate(
    paths: Optional[list[Path]] = typer.Argument(
        None, metavar="[PATH]...", help="Registry files, checked together (ids unique across them). "
        "Default: the packaged registry (in --mode) and your registry files (in compat mode)."),
    mode: str = typer.Option("strict", "--mode", help="strict: our curated data (every rule is an error); "
                             "compat: legacy/user files (curation rules only warn, legacy words accepted)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
    rules: bool = typer.Option(False, "--rules", help="List the semantic rules and exit."),
) -> None:
    """Validate registry files and print every finding with its JSON path and a fix."""
    from envmgr.errors import UsageError
    from registry.errors import ExitCode
    from registry.vocab import MODES

    if rules:
        _print_rules(as_json)
        return
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}", hint="use --mode strict or --mode compat")
    from registry.validator import validate_files

    overlays: list[Path] = []
    if not paths:  # what the tool loads: the packaged (or STEMSEP_REGISTRY) files, then the user's, compat
        from envmgr.catalog.registry_files import registry_files

        paths, overlays = registry_files()
    report = validate_files(paths, mode=mode, overlays=overlays)
    if as_json:
        import json
        import sys

        sys.stdout.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(int(ExitCode.INVALID))


def _print_report(report) -> None:
    from rich.console import Console
    from rich.markup import escape

    out = Console(highlight=False, soft_wrap=True)
    for finding in report.all_findings():
        colour = "red" if finding.severity == "error" else "yellow"
        out.print(f"[{colour}]{escape(finding.format())}[/]")
    summary = report.to_dict()
    models = sum(f["models"] for f in summary["files"])
    verdict = "[green]valid[/]" if report.ok else "[red]invalid[/]"
    out.print(f"{verdict} ({report.mode} mode): {len(summary['files'])} file(s), {models} model(s), "
              f"{summary['errors']} error(s), {summary['warnings']} warning(s)")


def _print_rules(as_json: bool) -> None:
    from registry.rules import RULES

    rows = [{"id": r.id, "scope": r.scope, "severity": r.severity, "strict_only": r.strict_only,
             "summary": r.summary, "hint": r.hint} for r in RULES.values()]
    if as_json:
        import json

        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        tag = "strict-only" if row["strict_only"] else row["severity"]
        print(f"{row['id']:<34} {tag:<11} {row['summary']}")
