"""Placeholder: filled in by the issue that owns this command."""

import typer


def register(root: typer.Typer) -> None:
    """Adds the command to the root app."""
