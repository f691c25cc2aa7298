"""Placeholder: filled in by the issue that owns this command group."""

import typer

app = typer.Typer(no_args_is_help=True)


def register_top_level(root: typer.Typer) -> None:
    """Adds `stemsep setup` to the root app."""
