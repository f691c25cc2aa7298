"""How a command's outcome reaches the user: what / why / what to do on stderr, and the exit code."""

from __future__ import annotations

from registry.errors import StemSepError


def report_error(err: StemSepError) -> None:
    """Print what, why and what to do on stderr."""
    from rich.console import Console
    from rich.markup import escape  # messages quote pins like `msst[bs-roformer]`: not markup

    console = Console(stderr=True, highlight=False)
    console.print(f"[bold red]error[/] [dim]({escape(err.code)})[/]: {escape(err.message)}")
    if err.why:
        console.print(f"  [bold]why:[/] {escape(err.why)}")
    if err.hint:
        console.print(f"  [bold]what to do:[/] {escape(err.hint)}")
