"""`stemsep env config [show] | set KEY VALUE... | unset KEY...`: the machine configuration.

`show` (also plain `stemsep env config`) prints every key's effective value and where it came from;
`set`/`unset` write config.toml (envmgr.config_file), so a setting outlives the shell that made it.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from envmgr.cli.env_cmd import (_BACKEND, _CONSTRAINT, _EXTRA, _INDEX, _JSON, _LINKS, _OFFLINE, _OVERRIDE, _PYTHON,
                                _UV, _config, _console, _print_json)

app = typer.Typer(help="The machine configuration: show it, or set and unset keys in config.toml.")


def register(env: typer.Typer) -> None:
    """Adds the `config` group to `stemsep env`."""
    env.add_typer(app, name="config")


def _show(as_json: bool, **flags: Any) -> None:
    from rich.table import Table

    from envmgr.config import KEYS, env_var

    config = _config(**flags)
    values = config.as_dict()
    if as_json:
        _print_json({"config_file": str(config.config_file), "home": str(config.home) if config.home else None,
                     "values": values, "sources": config.sources})
        return
    table = Table(title=f"machine config (file: {config.config_file}"
                  f"{'' if config.config_file.exists() else ', absent'})")
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("from", overflow="fold")
    table.add_column("variable", no_wrap=True)
    for name in KEYS:
        table.add_row(name, _shown(values[name]), config.sources[name], env_var(name))
    console = _console()
    console.print(table)
    console.print("`stemsep env config set KEY VALUE...` writes a key to the file; `unset KEY` removes it.")


@app.callback(invoke_without_command=True)
def config_default(
    ctx: typer.Context,
    as_json: bool = _JSON,
    python: Optional[str] = _PYTHON, torch_backend: Optional[str] = _BACKEND, index_url: Optional[str] = _INDEX,
    extra_index_url: Optional[list[str]] = _EXTRA, find_links: Optional[list[str]] = _LINKS,
    override: Optional[list[str]] = _OVERRIDE, constraint: Optional[list[str]] = _CONSTRAINT,
    offline: Optional[bool] = _OFFLINE, use_uv: Optional[bool] = _UV,
) -> None:
    """Effective machine configuration and where each value came from (default, STEMSEP_HOME, config
    file, STEMSEP_<KEY> variable, command-line flag); `set`/`unset` change the config file."""
    if ctx.invoked_subcommand is None:
        _show(as_json, python=python, torch_backend=torch_backend, index_url=index_url,
              extra_index_url=extra_index_url, find_links=find_links, override=override, constraint=constraint,
              offline=offline, use_uv=use_uv)


@app.command("show")
def show(
    as_json: bool = _JSON,
    python: Optional[str] = _PYTHON, torch_backend: Optional[str] = _BACKEND, index_url: Optional[str] = _INDEX,
    extra_index_url: Optional[list[str]] = _EXTRA, find_links: Optional[list[str]] = _LINKS,
    override: Optional[list[str]] = _OVERRIDE, constraint: Optional[list[str]] = _CONSTRAINT,
    offline: Optional[bool] = _OFFLINE, use_uv: Optional[bool] = _UV,
) -> None:
    """Effective machine configuration and where each value came from (the flags show their effect)."""
    _show(as_json, python=python, torch_backend=torch_backend, index_url=index_url,
          extra_index_url=extra_index_url, find_links=find_links, override=override, constraint=constraint,
          offline=offline, use_uv=use_uv)


@app.command("set")
def set_key(
    key: str = typer.Argument(..., help="Config key, e.g. torch_backend (`stemsep env config show` lists them)."),
    values: list[str] = typer.Argument(..., help="The value; list keys (find_links, overrides, constraints, "
                                       "extra_index_urls, python_paths) take one or more, each one item."),
    as_json: bool = _JSON,
) -> None:
    """Write KEY = VALUE into config.toml, checked as loading checks it. A list key gets exactly the values
    given (it replaces the list); relative paths are made absolute against the current dir."""
    from envmgr.config_file import set_value

    _report(set_value(key, values), as_json)


@app.command("unset")
def unset_keys(
    keys: list[str] = typer.Argument(..., help="Config keys to remove from config.toml (back to the default)."),
    as_json: bool = _JSON,
) -> None:
    """Remove keys from config.toml: each goes back to its default (a STEMSEP_<KEY> variable still applies)."""
    from envmgr.config_file import unset_values

    _report(unset_values(keys), as_json)


def _report(edit: Any, as_json: bool) -> None:
    """What changed, where, and what still wins over the file."""
    notes = []
    if edit.dropped_comments:
        notes.append(f"the comments in {edit.path} were not kept (the file is rewritten from its values)")
    for change in edit.changes:
        if change.variable:
            notes.append(f"{change.variable} is set in this environment and wins over the file: {change.key} stays "
                         f"as that variable says until you change or unset it (`unset {change.variable}`)")
    if as_json:
        _print_json({"config_file": str(edit.path), "notes": notes, "changes": [
            {"key": c.key, "before": c.before, "after": c.after, "in_file_before": c.in_file_before,
             "in_file_after": c.in_file_after, "changed": c.changed, "overridden_by": c.variable}
            for c in edit.changes]})
        return
    for c in edit.changes:
        if not c.changed and not c.in_file_after:
            typer.echo(f"{c.key}: not in {edit.path}; nothing to remove")
        elif not c.changed:
            typer.echo(f"{c.key}: already {_shown(c.after)} in {edit.path}; not written")
        elif c.in_file_after:
            typer.echo(f"{c.key}: {_shown(c.before)}{'' if c.in_file_before else ' (default)'} -> "
                       f"{_shown(c.after)}, written to {edit.path}")
        else:
            typer.echo(f"{c.key}: removed from {edit.path} ({_shown(c.before)} -> {_shown(c.after)}, the default)")
    for note in notes:
        typer.echo(f"note: {note}")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "[]"
    return "-" if value is None else str(value)
