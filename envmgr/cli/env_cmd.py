"""`stemsep setup` and `stemsep env list|show|lock|rm|prune` (`env config` is envmgr/cli/config_cmd.py).

Heavy work (resolving, building) happens in envmgr.envs.manager; this module parses flags and prints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer

from envmgr.errors import UsageError
from registry.errors import ExitCode, StemSepError

app = typer.Typer(no_args_is_help=True, help="Managed environments: list, inspect, lock, remove, prune, config.")

# Flags that override machine-config keys (each also settable as STEMSEP_<KEY> or in config.toml).
_PYTHON = typer.Option(None, "--python", help="Preferred Python version for new envs (key: python).")
_BACKEND = typer.Option(None, "--torch-backend", help="cpu | cuXXX | rocmX.Y | xpu | auto | none (key: torch_backend).")
_INDEX = typer.Option(None, "--index-url", help="Main package index (key: index_url).")
_EXTRA = typer.Option(None, "--extra-index-url", help="Further index; repeatable (key: extra_index_urls).")
_LINKS = typer.Option(None, "--find-links", help="Wheel dir or URL; repeatable (key: find_links).")
_OVERRIDE = typer.Option(None, "--override", help="Pin replacing all others, e.g. torch==2.13.0+cpu; repeatable.")
_CONSTRAINT = typer.Option(None, "--constraint", help="Constraint for every env; repeatable (key: constraints).")
_OFFLINE = typer.Option(None, "--offline/--online", help="Use only caches and find-links (key: offline).")
_UV = typer.Option(None, "--uv/--no-uv", help="Build with uv, or with virtualenv + pip (key: use_uv).")
_JSON = typer.Option(False, "--json", help="Machine-readable output.")


def _config(python=None, torch_backend=None, index_url=None, extra_index_url=None, find_links=None,
            override=None, constraint=None, offline=None, use_uv=None):
    from envmgr.config import load_config

    return load_config(python=python, torch_backend=torch_backend, index_url=index_url,
                       extra_index_urls=extra_index_url or None, find_links=find_links or None,
                       overrides=override or None, constraints=constraint or None, offline=offline,
                       use_uv=use_uv)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _when(ts: float | None) -> str:
    if not ts:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


# -- stemsep setup ----------------------------------------------------------------------------------

def register_top_level(root: typer.Typer) -> None:
    """Adds `stemsep setup` to the root app."""
    root.command("setup")(setup)


def setup(
    models: list[str] = typer.Argument(None, help="Model ids (default: the registry's default model)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", "-r", help="Run the models on this runtime."),
    all_models: bool = typer.Option(False, "--all", help="Every model in the registry."),
    refresh: bool = typer.Option(False, "--refresh", help="Resolve again instead of using cached locks."),
    repair: bool = typer.Option(False, "--repair", help="Verify each env (every file hashed) and reinstall its "
                                "damaged packages from verified sources (`stemsep env repair`)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Resolve and say which envs would be built; build none."),
    registry: Optional[list[Path]] = typer.Option(None, "--registry", help="Extra registry file overlaid on "
                                                  "the packaged one; repeatable."),
    as_json: bool = _JSON,
    python: Optional[str] = _PYTHON, torch_backend: Optional[str] = _BACKEND, index_url: Optional[str] = _INDEX,
    extra_index_url: Optional[list[str]] = _EXTRA, find_links: Optional[list[str]] = _LINKS,
    override: Optional[list[str]] = _OVERRIDE, constraint: Optional[list[str]] = _CONSTRAINT,
    offline: Optional[bool] = _OFFLINE, use_uv: Optional[bool] = _UV,
) -> None:
    """Build every env the selected models need (one per runtime + requirement set)."""
    from envmgr.envs.manager import EnvManager
    from envmgr.envs.setup_plan import plan_setup

    config = _config(python, torch_backend, index_url, extra_index_url, find_links, override, constraint,
                     offline, use_uv)
    manager = EnvManager(config)
    plan = plan_setup(models or [], runtime=runtime, all_models=all_models, config=config,
                      registries=tuple(str(p) for p in registry or ()))
    results = (_dry_run(manager, plan, refresh=refresh) if dry_run
               else _run_plan(manager, plan, refresh=refresh, quiet=as_json, repair=repair))
    failed = [r for r in results if r["error"]]
    if as_json:
        _print_json({"envs": results, "skipped": plan.skipped})
    else:
        _setup_table(results, plan.skipped)
    if failed:
        first = failed[0]["error"]
        prefix = f"{len(failed)} of {len(results)} envs could not be set up; first: " if len(failed) > 1 else ""
        raise StemSepError(prefix + first["message"], code=first["code"], exit_code=ExitCode(first["exit_code"]),
                           why=first["why"], hint=first["hint"] or "see the table above")


def _run_plan(manager, plan, *, refresh: bool, quiet: bool, repair: bool = False) -> list[dict]:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from envmgr.sizes import disk_usage

    stages = ["interpreter", "resolve", "venv", "sync", "health", "marker", "rename", "ready"]
    if repair:
        stages += ["verify", "evict", "reinstall"]
    results = []
    with Progress(SpinnerColumn(), TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.fields[stage]}"),
                  TimeElapsedColumn(), disable=quiet, transient=False) as bars:
        for group in plan.groups:
            label = f"{group.request.runtime} ({len(group.models)} model{'s' if len(group.models) != 1 else ''})"
            task = bars.add_task(label, total=len(stages), stage="waiting")

            def progress(stage: str, message: str, task=task) -> None:
                done = stages.index(stage) + 1 if stage in stages else None
                bars.update(task, completed=done, stage=f"{stage}: {message}"[:60])

            started = time.time()
            row: dict[str, Any] = {"runtime": group.request.runtime, "models": group.models, "env_id": None,
                                   "state": "failed", "seconds": None, "size_bytes": None, "error": None}
            try:
                if refresh:
                    manager.lock(group.request, refresh=True)
                status = manager.status(group.request)
                damaged = status == "broken" and manager.store.repairable(manager.env_id(group.request))
                env = manager.ensure(group.request, progress=progress)
                manager.store.add_models(env.id, group.models)
                state = "ready" if status == "ready" else "repaired" if damaged else "built"
                if repair and manager.repair(env.id, progress=progress).reinstalled:
                    state = "repaired"
                row.update(env_id=env.id, state=state,
                           size_bytes=disk_usage([env.path]), path=str(env.path))
            except StemSepError as err:
                row["error"] = err.to_dict()
                bars.update(task, stage=f"failed: {err.message}"[:60])
            row["seconds"] = round(time.time() - started, 2)
            results.append(row)
    # Models served by the same env (identical locks) are listed together.
    merged: dict[str, dict] = {}
    for row in results:
        key = row["env_id"] or f"failed-{id(row)}"
        if key in merged:
            merged[key]["models"] = sorted(set(merged[key]["models"]) | set(row["models"]))
            merged[key]["seconds"] = round(merged[key]["seconds"] + row["seconds"], 2)
        else:
            merged[key] = row
    return list(merged.values())


def _dry_run(manager, plan, *, refresh: bool) -> list[dict]:
    results = []
    for group in plan.groups:
        row: dict[str, Any] = {"runtime": group.request.runtime, "models": group.models, "env_id": None,
                               "state": None, "seconds": 0.0, "size_bytes": None, "error": None}
        try:
            lock = manager.lock(group.request, refresh=refresh)
            row["env_id"] = manager.env_id(group.request)
            row["state"] = {"ready": "ready", "broken": "would rebuild"}.get(manager.status(group.request),
                                                                              "would build")
            row["packages"] = len(lock.packages)
        except StemSepError as err:
            row["error"] = err.to_dict()
        results.append(row)
    return results


def _setup_table(results: list[dict], skipped: list[dict]) -> None:
    from rich.table import Table

    from envmgr.sizes import human

    table = Table(title="stemsep setup")
    width = max([len(r["env_id"] or "-") for r in results] + [6])
    table.add_column("env id", min_width=width, no_wrap=True)
    for col in ("runtime", "models served", "state", "size", "time"):
        table.add_column(col)
    for r in results:
        state = r["state"] if not r["error"] else f"[red]failed[/] ({r['error']['code']})"
        shown = ", ".join(r["models"][:3]) + (f" +{len(r['models']) - 3} more" if len(r["models"]) > 3 else "")
        table.add_row(r["env_id"] or "-", r["runtime"], shown, state, human(r["size_bytes"]),
                      f"{r['seconds']:.1f} s")
    console = _console()
    console.print(table)
    for s in skipped:
        console.print(f"[yellow]skipped[/] {s['model']}: {s['reason']}")


# -- stemsep env ... ------------------------------------------------------------------------------

def _manager():
    from envmgr.envs.manager import EnvManager

    return EnvManager(_config())


def _resolve_id(manager, env_id: str) -> str:
    from envmgr.errors import UnknownEnvError

    matches = manager.store.find(env_id)
    if len(matches) == 1:
        return matches[0]
    known = [r.id for r in manager.store.records()]
    if not matches:
        raise UnknownEnvError(f"no env {env_id!r} in {manager.config.env_store}",
                              why=f"known envs: {', '.join(known) if known else 'none'}",
                              hint="`stemsep env list` shows the ids; `stemsep setup` builds envs")
    raise UnknownEnvError(f"env id prefix {env_id!r} is ambiguous", why=f"it matches {', '.join(matches)}",
                          hint="give more characters of the id")


def _record_dict(record, size: int | None = None) -> dict:
    return {"id": record.id, "runtime": record.runtime, "state": record.state, "problem": record.problem,
            "models": record.models, "last_used": record.last_used, "built_at": record.built_at,
            "path": str(record.path), "size_bytes": size, "builder": record.meta.get("builder"),
            "python": record.meta.get("python"), "torch": record.meta.get("torch")}


@app.command("list")
def env_list(as_json: bool = _JSON) -> None:
    """Envs in the store: id, runtime, state, models served, size on disk (hardlinks once), last used."""
    from rich.table import Table

    from envmgr.sizes import disk_usage, human

    from envmgr.cli.adopted_cmd import adopted_rows, print_adopted_table

    manager = _manager()
    records = manager.store.records()
    rows = [_record_dict(r, disk_usage([r.path])) for r in records]
    total = disk_usage([r.path for r in records])
    adopted = adopted_rows(manager.config.state_dir)
    if as_json:
        _print_json({"envs": rows, "total_size_bytes": total, "store": str(manager.config.env_store),
                     "adopted": adopted})
        return
    table = Table(title=f"envs in {manager.config.env_store}")
    table.add_column("id", min_width=max([len(r["id"]) for r in rows] + [2]), no_wrap=True)
    for col in ("runtime", "state", "models", "size", "last used"):
        table.add_column(col)
    for row in rows:
        state = row["state"] if row["state"] == "ready" else f"[red]{row['state']}[/]"
        table.add_row(row["id"], row["runtime"], state, ", ".join(row["models"]) or "-", human(row["size_bytes"]),
                      _when(row["last_used"]))
    console = _console()
    console.print(table)
    console.print(f"total on disk (files shared between envs counted once): {human(total)}")
    if adopted:
        print_adopted_table(adopted, console)


@app.command("show")
def env_show(env_id: str = typer.Argument(..., help="Env id (or a unique prefix), or an adopted env's name."),
             as_json: bool = _JSON) -> None:
    """Request, interpreter, lock digest and versions of one env; for an adopted env (its name), its fingerprint
    and the models it runs as it is."""
    from envmgr.cli.adopted_cmd import adopted_name, show_adopted
    from envmgr.sizes import disk_usage, human

    manager = _manager()
    name = adopted_name(env_id, manager.config.state_dir)
    if name is not None:
        return show_adopted(name, as_json)
    record = manager.store.record(_resolve_id(manager, env_id))
    data = _record_dict(record, disk_usage([record.path]))
    data.update(request=record.meta.get("request"), interpreter=record.meta.get("interpreter"),
                lock_digest=record.meta.get("lock_digest"), versions=record.meta.get("versions"),
                build_seconds=record.meta.get("build_seconds"))
    if as_json:
        _print_json(data)
        return
    console = _console()
    console.print(f"[bold]{data['id']}[/]  ({data['state']}{': ' + data['problem'] if data['problem'] else ''})")
    console.print(f"  path:        {data['path']}")
    console.print(f"  runtime:     {data['runtime']}   builder: {data['builder']}   built: {_when(data['built_at'])} "
                  f"in {data['build_seconds']} s")
    interp = data["interpreter"] or {}
    console.print(f"  python:      {data['python']} ({interp.get('executable', '?')})")
    torch = data["torch"]
    if torch:
        console.print(f"  torch:       {torch.get('version')}  cuda={torch.get('cuda')}  hip={torch.get('hip')}")
    console.print(f"  size:        {human(data['size_bytes'])}   models: {', '.join(data['models']) or '-'}"
                  f"   last used: {_when(data['last_used'])}")
    request = data["request"] or {}
    console.print(f"  requirements: {', '.join(request.get('requirements', []))}")
    for note in request.get("notes", []):
        console.print(f"  note:        {note}")
    console.print(f"  lock:        sha256 {data['lock_digest']}  ({len(data['versions'] or {})} distributions; "
                  f"`stemsep env lock {data['id']}` prints it)")


@app.command("lock")
def env_lock(env_id: str = typer.Argument(..., help="Env id (or a unique prefix)."),
             output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the lock to this file."),
             as_json: bool = _JSON) -> None:
    """Print (or export) the hash-pinned lock an env was built from, headed by the package sources it was
    resolved from (--find-links, --index-url... lines): `uv pip sync FILE` / `pip install -r FILE` reproduce it."""
    from envmgr.envs.lock_export import exported_lock, machine_sources
    from envmgr.envs.request import EnvRequest
    from envmgr.envs.store import LOCK_COPY
    from envmgr.fsutil import atomic_write_text

    manager = _manager()
    resolved = _resolve_id(manager, env_id)
    path = manager.store.env_dir(resolved) / LOCK_COPY
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        from envmgr.errors import UnknownEnvError

        raise UnknownEnvError(f"env {resolved} has no lock file", why=str(exc),
                              hint="the env is broken: `stemsep env rm` it and run `stemsep setup`") from exc
    request = manager.store.record(resolved).meta.get("request")
    sources = EnvRequest.from_dict(request).sources if request else machine_sources(manager.config)
    text = exported_lock(text, sources)
    if output:
        atomic_write_text(output, text)
    if as_json:
        _print_json({"id": resolved, "lock": text, "output": str(output) if output else None})
    elif not output:
        typer.echo(text, nl=False)


@app.command("rm")
def env_rm(env_ids: list[str] = typer.Argument(None, help="Env ids (or unique prefixes)."),
           all_envs: bool = typer.Option(False, "--all", help="Remove every env."),
           as_json: bool = _JSON) -> None:
    """Remove envs (shared package files stay in uv's cache)."""
    manager = _manager()
    ids = _env_ids(manager, env_ids, all_envs)
    for env_id in ids:
        manager.store.remove(env_id)
    if as_json:
        _print_json({"removed": ids})
    else:
        for env_id in ids:
            typer.echo(f"removed {env_id}")


@app.command("prune")
def env_prune(
    unused: bool = typer.Option(False, "--unused", help="Envs no model has used."),
    older_than: Optional[float] = typer.Option(None, "--older-than", help="Envs not used for N days."),
    max_size: Optional[str] = typer.Option(None, "--max-size", help="Evict least recently used envs until the "
                                           "store fits, e.g. 20G."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would go."),
    as_json: bool = _JSON,
) -> None:
    """Remove broken envs and build leftovers, plus envs selected by the options (least recently used first)."""
    from envmgr.envs.prune import choose_prunable
    from envmgr.sizes import human, parse_size

    manager = _manager()
    cap = None
    if max_size is not None:
        try:
            cap = parse_size(max_size)
        except ValueError as exc:
            raise UsageError(f"bad --max-size {max_size!r}", why=str(exc),
                             hint="write a size such as 500M or 20G") from exc
    chosen = choose_prunable(manager.store.records(), unused=unused, older_than_days=older_than, max_size=cap)
    if not dry_run:
        for item in chosen:
            manager.store.remove(item["id"])
        manager.store.clear_debris()
    if as_json:
        _print_json({"removed" if not dry_run else "would_remove": chosen})
        return
    for item in chosen:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {item['id']} ({item['reason']}, {human(item['size_bytes'])})")
    if not chosen:
        typer.echo("nothing to prune")


def _env_ids(manager, env_ids: list[str] | None, all_envs: bool) -> list[str]:
    if not env_ids and not all_envs:
        raise UsageError("no env given", hint="name env ids (see `stemsep env list`) or pass --all")
    return [r.id for r in manager.store.records()] if all_envs else [_resolve_id(manager, e) for e in env_ids or ()]


@app.command("verify")
def env_verify(env_ids: list[str] = typer.Argument(None, help="Env ids (or unique prefixes)."),
               all_envs: bool = typer.Option(False, "--all", help="Every env in the store."),
               quick: bool = typer.Option(False, "--quick", help="Sizes only, no hashing: finds deleted files and "
                                          "most edits in a fraction of the time, not an edit that keeps the size."),
               as_json: bool = _JSON) -> None:
    """Check every installed file against the sha256 and size in its package's RECORD, and StemSep's own files.

    Read by the host: the env's Python is not started. Files RECORD lists without a hash (RECORD itself,
    compiled bytecode) are skipped and counted. Exits 0 when every env verifies, 5 (E_ENV_DAMAGED) when a
    file is missing or modified; `stemsep env repair` reinstalls the damaged packages."""
    from envmgr.errors import EnvDamagedError
    from envmgr.sizes import human

    manager = _manager()
    digests: dict = {}  # files hardlinked between envs are hashed once
    results = [manager.verify(env_id, quick=quick, digests=digests)
               for env_id in _env_ids(manager, env_ids, all_envs)]
    if as_json:
        _print_json({"envs": [r.to_dict() for r in results]})
    else:
        for r in results:
            how = (f"{r.files_checked} files {'sized' if quick else 'hashed'}"
                   f"{'' if quick else f' ({human(r.bytes_hashed)})'}, {r.files_skipped} listed without a hash "
                   f"skipped, {r.seconds:.2f} s")
            typer.echo(f"{r.env_id}: {'ok' if r.ok else 'DAMAGED'} ({how})")
            for p in r.packages:
                parts = ([p.problem] if p.problem else []) + [f"{k}: {', '.join(v)}" for k, v in
                                                               (("missing", p.missing), ("modified", p.modified)) if v]
                typer.echo(f"  {p.name} {p.version or ''}: {'; '.join(parts)}")
            for problem in r.own:
                typer.echo(f"  stemsep's own files: {problem}")
    damaged = [r for r in results if not r.ok]
    if damaged:
        names = ", ".join(r.env_id for r in damaged)
        raise EnvDamagedError(f"{len(damaged)} of {len(results)} env{'s' if len(results) != 1 else ''} damaged: "
                              f"{names}", why=damaged[0].summary(),
                              hint=f"`stemsep env repair {damaged[0].env_id}` reinstalls the damaged packages from "
                              "verified sources (`stemsep setup --repair` for the envs of the models); if you edit "
                              "files in envs, set `link_mode` to copy (docs/configuration.md)")


@app.command("repair")
def env_repair(env_ids: list[str] = typer.Argument(None, help="Env ids (or unique prefixes)."),
               all_envs: bool = typer.Option(False, "--all", help="Every env in the store."),
               as_json: bool = _JSON) -> None:
    """Verify envs (every file hashed) and reinstall their damaged packages at exactly the locked versions.

    The damaged packages are evicted from uv's cache first (a hardlinked env shares its files with the cache,
    so an edit in the env is an edit of the cache), so they come back from their index or find-links dir,
    checked against the lock's hashes; then the env is verified again."""
    manager = _manager()
    results = []
    for env_id in _env_ids(manager, env_ids, all_envs):
        result = manager.repair(env_id, progress=None if as_json else
                                lambda stage, message, env_id=env_id: typer.echo(f"{env_id}: {stage}: {message}"))
        results.append(result)
        if not as_json:
            if result.reinstalled:
                typer.echo(f"{env_id}: repaired {', '.join(result.reinstalled)}; it verifies now")
            else:
                typer.echo(f"{env_id}: nothing damaged")
    if as_json:
        _print_json({"envs": [r.to_dict() for r in results]})
