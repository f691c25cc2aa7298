"""`stemsep env adopt|forget` and the adopted envs' part of `env list` and `env show` (envmgr/envs/adopted.py).

An adopted env is the user's own: these commands read it (its interpreter, its pip through pip-api) and
write only our record of it in the state dir."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def register(app: typer.Typer) -> None:
    app.command("adopt")(env_adopt)
    app.command("forget")(env_forget)


def env_adopt(path: Path = typer.Argument(..., help="An existing env's dir (venv, conda env) or its interpreter."),
              runtime: str = typer.Option(..., "--runtime", help="The runtime whose worker runs in it."),
              name: Optional[str] = typer.Option(None, "--name", help="Its name for --env (default: the env "
                                                 "dir's name)."),
              as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Register an env you already have as a target for RUNTIME: recorded by path and fingerprint (Python
    version, installed distributions); never built, locked, pruned or repaired by stemsep. Again: records
    it as it is now."""
    from envmgr.config import load_config
    from envmgr.envs.adopted import adopt

    env = adopt(path, runtime, name, load_config().state_dir)
    if as_json:
        _print_json(env.to_json())
        return
    fp = env.fingerprint
    typer.echo(f"adopted {env.name} for {env.runtime}: {env.python} (Python {fp.python}, "
               f"{len(fp.distributions)} distributions, fingerprint {fp.digest})")
    typer.echo(f"run a model in it with `stemsep separate ... --env {env.name}`; `stemsep env show {env.name}` "
               "says which models it can run as it is")


def env_forget(name: str = typer.Argument(..., help="The adopted env's name.")) -> None:
    """Drop stemsep's record of an adopted env (the env itself is not touched)."""
    from envmgr.config import load_config
    from envmgr.envs.adopted import AdoptedStore

    AdoptedStore(load_config().state_dir).remove(name)
    typer.echo(f"forgot {name} (its files are untouched)")


def adopted_rows(state_dir: Path) -> list[dict[str, Any]]:
    """`env list`'s adopted envs, from their records (nothing is probed)."""
    from envmgr.envs.adopted import AdoptedStore

    return [{"name": e.name, "id": e.id, "runtime": e.runtime, "python": str(e.python), "prefix": str(e.prefix),
             "python_version": e.fingerprint.python, "fingerprint": e.fingerprint.digest,
             "distributions": len(e.fingerprint.distributions), "adopted_at": e.adopted_at}
            for e in AdoptedStore(state_dir).all().values()]


def print_adopted_table(rows: list[dict[str, Any]], console: Any) -> None:
    from rich.table import Table

    table = Table(title="adopted envs (yours: stemsep never changes them)")
    for col in ("name", "runtime", "python", "distributions", "fingerprint", "interpreter"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["name"], row["runtime"], row["python_version"], str(row["distributions"]),
                      row["fingerprint"], row["python"])
    console.print(table)


def adopted_name(text: str, state_dir: Path) -> Optional[str]:
    """`text` as an adopted env's name (NAME or adopted:NAME), else None."""
    from envmgr.envs.adopted import AdoptedStore

    name = text.removeprefix("adopted:")
    return name if name in AdoptedStore(state_dir).all() else None


def show_adopted(name: str, as_json: bool) -> None:
    """`env show NAME`: the recorded fingerprint, what changed since, which models run in it as it is."""
    from envmgr.catalog.registry_files import load
    from envmgr.config import load_config
    from envmgr.envs.adopted import AdoptedStore, inspect
    config = load_config()
    env = AdoptedStore(config.state_dir).get(name)
    now, _ = inspect(env.python)
    models = runnable_models(env, now, load(), config)
    data = {**env.to_json(), "fingerprint_now": now.to_json(), "changes": now.changes_since(env.fingerprint),
            "models": {"runnable": [m for m, codes in models.items() if not codes],
                       "not_runnable": {m: codes for m, codes in models.items() if codes}}}
    if as_json:
        _print_json(data)
        return
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(env.adopted_at))
    typer.echo(f"{env.name}  (adopted for {env.runtime} {when})")
    typer.echo(f"  interpreter: {env.python}  (Python {now.python}, pip {now.pip})")
    typer.echo(f"  prefix:      {env.prefix}")
    editable = f", editable: {', '.join(now.editable)}" if now.editable else ""
    typer.echo(f"  fingerprint: {env.fingerprint.digest} when adopted, {now.digest} now "
               f"({len(now.distributions)} distributions{editable})")
    for change in data["changes"]:
        typer.echo(f"  changed:     {change}")
    runnable, blocked = data["models"]["runnable"], data["models"]["not_runnable"]
    typer.echo(f"  runs as it is ({len(runnable)}): {', '.join(runnable) or '-'}")
    if blocked:
        typer.echo(f"  not as it is ({len(blocked)}; `stemsep preflight ... --env {env.name}` names the fixes):")
        for model_id, codes in blocked.items():
            typer.echo(f"    {model_id}: {', '.join(codes)}")


def runnable_models(adopted: Any, now: Any, registry: Any, config: Any) -> dict[str, list[str]]:
    """Model id -> the error codes preflight's env rules find for it in this env ([]: it runs as the env is),
    for every registry model that runs on the env's runtime."""
    from envmgr.preflight import rules
    from envmgr.preflight.adopted_env import adopted_env_facts
    from envmgr.preflight.run import _companions

    out = {}
    for entry in registry:
        if adopted.runtime not in entry.runtime.allowed:
            continue
        found, _ = rules.check_env(entry, adopted.runtime, adopted_env_facts(
            entry, adopted.runtime, adopted, config, _companions(entry, adopted.runtime), now))
        out[entry.id] = sorted({f.code for f in found if f.severity == "error"})
    return out
