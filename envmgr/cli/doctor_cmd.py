"""`stemsep doctor [--json] [--verify]`: what this machine has and lacks for StemSep, as a table; exits 1 when
something needed is missing (envmgr/diagnostics/doctor.py says what counts as needed)."""

from __future__ import annotations

import typer

_MARK = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]", "info": "[dim]info[/]"}


def register(root: typer.Typer) -> None:
    """Adds `stemsep doctor` to the root app."""
    root.command("doctor")(doctor)


def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
           verify: bool = typer.Option(False, "--verify", help="Also hash every installed file of every ready env "
                                       "(`stemsep env verify --all`).")) -> None:
    """Check this machine: uv, Python interpreters, ffmpeg, state dirs and free disk, GPUs and torch backends,
    the config in effect, broken and stale envs. Exits 1 when something needed is missing, else 0."""
    from envmgr.diagnostics.doctor import diagnose
    from registry.errors import ExitCode, StemSepError

    checks = diagnose(verify=verify)
    missing = [c for c in checks if c.missing]
    if as_json:
        import json

        typer.echo(json.dumps({"ok": not missing, "missing": [c.name for c in missing],
                               "checks": [c.to_dict() for c in checks]}, indent=2, sort_keys=True, default=str))
    else:
        _table(checks)
    if missing:
        raise StemSepError(f"needed for StemSep and missing: {', '.join(c.name for c in missing)}",
                           code="E_DOCTOR_MISSING", exit_code=ExitCode.INVALID,
                           why="; ".join(f"{c.name}: {c.summary}" for c in missing),
                           hint=missing[0].hint or "see the table above")


def _table(checks) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="stemsep doctor", show_lines=True)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("finding", overflow="fold")
    for c in checks:
        lines = [escape(c.summary)] + [f"[dim]{escape(d)}[/]" for d in c.details]
        if c.hint and c.status in ("warn", "fail"):
            lines.append(f"what to do: {escape(c.hint)}")
        table.add_row(c.name + (" *" if c.needed else ""), _MARK[c.status], "\n".join(lines))
    console = Console(highlight=False)
    console.print(table)
    console.print("* needed: doctor exits 1 when one of these fails")
