"""`stemsep models download | import | status | rm`: the local model store from the command line.

The work happens in envmgr.artifacts (ArtifactStore); this module picks the models, renders progress
(rich bars on stderr, or JSON lines on stdout with --json) and prints results. Heavy imports stay
inside the commands so `stemsep models list` starts fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from envmgr.cli.outcome import exit_event
from envmgr.errors import UsageError
from envmgr.sizes import human
from registry.errors import ExitCode, StemSepError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from registry.view import ModelView

_JSON = typer.Option(False, "--json", help="JSON output: one event per line on stdout, then a summary.")
_REGISTRY = typer.Option(None, "--registry", help="Extra registry file overlaid on the packaged one; repeatable.")


def register(models: typer.Typer) -> None:
    """Adds the store commands to the `models` group."""
    models.command("download")(download)
    models.command("import")(import_files)
    models.command("status")(status)
    models.command("rm")(remove)


# -- commands --------------------------------------------------------------------------------------

def download(
    ids: Optional[list[str]] = typer.Argument(None, help="Model ids.", show_default=False),
    all_for_runtime: Optional[str] = typer.Option(
        None, "--all-for-runtime", help="Every model the registry allows on this runtime (the files it uses)."),
    runtime: Optional[str] = typer.Option(
        None, "--runtime", help="Only the files this runtime uses (default: the runtime `separate` would choose "
        "for each model; a file the registry scopes to other runtimes, such as msst's model code, is skipped)."),
    all_runtimes: bool = typer.Option(False, "--all-runtimes", help="Every file of the models, whatever runtime uses it."),
    require_hashes: bool = typer.Option(False, "--require-hashes",
                                        help="Refuse artifacts without a sha256 pinned in the registry."),
    retries: int = typer.Option(5, "--retries", min=0, help="Consecutive failed tries per URL before the next one."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds without data before a try fails."),
    registry: Optional[list[Path]] = _REGISTRY,
    as_json: bool = _JSON,
) -> None:
    """Download the models' artifacts into the store: resumable, retried, mirrors in order, sha256 verified."""
    with exit_event(_emit if as_json else None):  # --json: the stream ends with `exit`, as separate's does
        _download(ids, all_for_runtime, runtime, all_runtimes, require_hashes, retries, timeout, registry, as_json)


def _download(ids, all_for_runtime, runtime, all_runtimes, require_hashes, retries, timeout, registry,
              as_json) -> None:
    from envmgr.artifacts import DownloadSettings
    from envmgr.artifacts.errors import HashRequiredError, OfflineError
    from registry.vocab import RUNTIME_IDS
    from registry.view import artifacts_for

    if not ids and not all_for_runtime:
        raise UsageError("Name the models to download, or pass --all-for-runtime RUNTIME.",
                         hint="e.g. `stemsep models download bs-roformer-viperx-1297`")
    if all_for_runtime and all_for_runtime not in RUNTIME_IDS:
        raise UsageError(f"Unknown runtime {all_for_runtime!r}.", hint=f"One of: {', '.join(RUNTIME_IDS)}.")
    if runtime and runtime not in RUNTIME_IDS:
        raise UsageError(f"Unknown runtime {runtime!r}.", hint=f"One of: {', '.join(RUNTIME_IDS)}.")
    if sum(bool(x) for x in (all_for_runtime, runtime, all_runtimes)) > 1:
        raise UsageError("--all-for-runtime, --runtime and --all-runtimes choose the files in different ways.",
                         hint="pass only one of them")
    config, models, get = _setup(registry)
    entries = [get(i) for i in dict.fromkeys(ids or [])]
    if all_for_runtime:
        entries += [m for m in models.values() if all_for_runtime in m.runtime.allowed
                    and artifacts_for(m, all_for_runtime) and m not in entries]
    runtimes = {e.id: None if all_runtimes else _download_runtime(e, runtime or all_for_runtime) for e in entries}
    if config.offline:
        raise OfflineError("Downloads are off: the machine config says offline.",
                           why=f"offline = true ({config.sources.get('offline', 'config')}).",
                           hint="Unset STEMSEP_OFFLINE (or offline in config.toml), or import the files with "
                           "`stemsep models import`.")
    if require_hashes:  # all or nothing, before the first byte moves
        unpinned = [f"{e.id}/{a.filename}" for e in entries for a in artifacts_for(e, runtimes[e.id])
                    if not a.sha256]
        if unpinned:
            raise HashRequiredError(
                f"No sha256 pinned for {len(unpinned)} artifact(s): {', '.join(unpinned[:10])}"
                + (" ..." if len(unpinned) > 10 else ""),
                why="--require-hashes refuses artifacts whose content the registry does not pin.",
                hint="Pin their sha256 in a registry overlay, or drop --require-hashes.")
    settings = DownloadSettings(retries=retries, read_timeout=timeout)
    results: list[dict[str, Any]] = []
    failures: list[tuple[str, StemSepError]] = []
    with _store(config, settings) as store, _Renderer(as_json) as render:
        for entry in entries:
            try:
                paths = store.ensure(entry, require_hashes=require_hashes, progress=render, runtime=runtimes[entry.id])
                results.append({"model": entry.id, "ok": True, "paths": {k: str(v) for k, v in paths.items()}})
            except StemSepError as err:
                failures.append((entry.id, err))
                results.append({"model": entry.id, "ok": False, "error": err.to_dict()})
                render.failed(entry.id, err)
    if as_json:
        _emit({"type": "summary", "results": results})
    else:
        _print_download_summary(results)
    _raise_failures(failures, len(entries))


def _download_runtime(entry: "ModelView", runtime: Optional[str]) -> Optional[str]:
    """The runtime whose files a download fetches: the one given, else the one `separate` would choose; None
    (every file) when the model cannot be routed, as for a catalog-only model."""
    if runtime is not None:
        return runtime
    from registry.routing import choose_runtime

    try:
        return choose_runtime(entry).runtime
    except StemSepError:
        return None


def import_files(
    model_id: str = typer.Argument(..., help="Model id."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="File for the model's checkpoint."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="File for the model's config."),
    files: Optional[list[str]] = typer.Option(None, "--file", help="FILENAME=PATH for any artifact; repeatable."),
    copy: bool = typer.Option(False, "--copy", help="Copy instead of hardlinking."),
    registry: Optional[list[Path]] = _REGISTRY,
    as_json: bool = _JSON,
) -> None:
    """Put files you already have into the store (hardlink, else copy), verifying pinned sha256 and size."""
    with exit_event(_emit if as_json else None):
        _import(model_id, checkpoint, config_file, files, copy, registry, as_json)


def _import(model_id, checkpoint, config_file, files, copy, registry, as_json) -> None:
    config, _models, get = _setup(registry)
    entry = get(model_id)
    pairs = []  # (artifact, source path)
    for flag, artifact, path in (("--checkpoint", entry.artifacts.primary, checkpoint),
                                 ("--config", entry.artifacts.config, config_file)):
        if path is not None:
            if artifact is None:
                raise _not_declared(entry, flag)
            pairs.append((artifact, path))
    for spec in files or []:
        name, sep, path = spec.partition("=")
        artifact = next((a for a in entry.artifacts.all() if a.filename == name), None)
        if not sep or not path or artifact is None:
            raise _not_declared(entry, f"--file {spec}")
        pairs.append((artifact, Path(path)))
    if not pairs:
        raise UsageError("Nothing to import.", hint="Pass --checkpoint PATH, --config PATH or --file FILENAME=PATH.")
    with _store(config) as store, _Renderer(as_json) as render:
        done = {a.filename: str(store.import_file(entry, a, p, copy=copy, progress=render)) for a, p in pairs}
    if as_json:
        _emit({"type": "summary", "model": entry.id, "paths": done})
    else:
        for name, path in done.items():
            typer.echo(f"{entry.id}/{name}: {path}")


def status(
    ids: Optional[list[str]] = typer.Argument(None, help="Model ids (default: models with files in the store).",
                                              show_default=False),
    all_models: bool = typer.Option(False, "--all", help="Every model in the registry."),
    verify: bool = typer.Option(False, "--verify", help="Hash every stored file again."),
    registry: Optional[list[Path]] = _REGISTRY,
    as_json: bool = _JSON,
) -> None:
    """What the store holds per artifact: present | partial | missing | downloadable | hash_mismatch | unsafe."""
    config, models, get = _setup(registry)
    with _store(config) as store:
        in_store = store.model_ids()
        if ids:
            entries = [get(i) for i in dict.fromkeys(ids)]
        else:
            entries = [m for m in models.values() if all_models or m.id in in_store]
        rows = [s for e in entries for s in store.status(e, verify=verify)]
        orphans = [] if ids else [m for m in in_store if m not in models]
        root = store.root
    if as_json:
        _emit({"store": str(root), "artifacts": [r.to_dict() for r in rows], "unknown_models": orphans})
        return
    _print_status(root, rows, orphans, entries)


def remove(
    ids: list[str] = typer.Argument(..., help="Model ids (also folders of models no longer in the registry)."),
    partial: bool = typer.Option(False, "--partial", help="Only interrupted downloads; keep complete files."),
    registry: Optional[list[Path]] = _REGISTRY,
    as_json: bool = _JSON,
) -> None:
    """Delete models' files from the store (refused while a download of them is running)."""
    config, models, get = _setup(registry)
    with _store(config) as store:
        in_store = set(store.model_ids())
        for model_id in dict.fromkeys(ids):
            if model_id not in models and model_id not in in_store:
                get(model_id)  # unknown everywhere: the registry's error, with the nearest ids
        reports = [store.remove(m, partial_only=partial) for m in dict.fromkeys(ids)]
    if as_json:
        _emit({"removed": [{"model": r.model_id, "files": [str(f) for f in r.files], "bytes": r.bytes}
                           for r in reports]})
        return
    for r in reports:
        what = "interrupted downloads" if partial else "files"
        typer.echo(f"{r.model_id}: removed {len(r.files)} {what} ({human(r.bytes)})" if r.files
                   else f"{r.model_id}: nothing stored")


# -- helpers ---------------------------------------------------------------------------------------

def _setup(registry: Optional[list[Path]]):
    """(machine config, models by id, get(id)): the registry files `models list/show` read (packaged or
    STEMSEP_REGISTRY, the user's overlays, --registry files)."""
    from envmgr.config import load_config
    from envmgr.catalog.registry_files import load

    loaded = load(registry or ())
    return load_config(), loaded.models, loaded.get


def _store(config, settings=None):
    from envmgr.artifacts import ArtifactStore, DownloadSettings

    return ArtifactStore(config.model_store, settings=settings or DownloadSettings())


def _not_declared(entry, flag: str) -> StemSepError:
    declared = ", ".join(f"{a.filename} ({a.kind})" for a in entry.artifacts.all()) or "none"
    return StemSepError(
        f"{entry.id} declares no artifact for {flag}.",
        why=f"Its registry entry declares: {declared}.",
        hint="Use the flag of a declared artifact (--file FILENAME=PATH for any of them), or declare the "
        "artifact in a registry overlay.",
        code="E_ARTIFACT_NOT_DECLARED", exit_code=ExitCode.USAGE)


def _raise_failures(failures: list[tuple[str, StemSepError]], total: int) -> None:
    """One failure: its own error. Several: each printed in full on stderr, then a summary error."""
    if not failures:
        return
    if len(failures) == 1:
        raise failures[0][1]
    from envmgr.cli.outcome import report_error

    for _model, err in failures:
        report_error(err)
    codes = {int(err.exit_code) for _m, err in failures}
    raise StemSepError(
        f"{len(failures)} of {total} models could not be downloaded: {', '.join(m for m, _e in failures)}.",
        why="Each model's error is printed above.",
        hint="Fix what they say, then run the command again: the models already downloaded are skipped "
        "and interrupted downloads resume.",
        code="E_ARTIFACT_DOWNLOAD_FAILED",
        exit_code=ExitCode(codes.pop()) if len(codes) == 1 else ExitCode.ARTIFACT)


def _emit(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, default=str))


class _Renderer:
    """Progress callback: JSON lines on stdout, or rich bars and notes on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.done: set[tuple[str, str]] = set()
        self.progress: Optional[Progress] = None  # rich bars, while rendering for people

    def __enter__(self) -> "_Renderer":
        if not self.as_json:
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(),
                                     console=Console(stderr=True, highlight=False), transient=False)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event) -> None:
        if self.as_json:
            _emit(event.to_dict())
            return
        bars = self._bars()
        key = (event.model_id, event.filename)
        label = f"{event.model_id}/{event.filename}"
        if key not in self.tasks and event.kind in ("start", "progress", "verify", "done"):
            self.tasks[key] = bars.add_task(label, total=event.total)
        if event.kind in ("start", "progress"):  # these kinds have their bar (added above)
            bars.update(self.tasks[key], completed=event.done, total=event.total, description=label)
        elif event.kind == "verify":
            bars.update(self.tasks[key], completed=event.done, total=event.total, description=f"{label} (hashing)")
        elif event.kind == "done":
            self.done.add(key)
            bars.update(self.tasks[key], completed=event.done, total=event.total or event.done,
                        description=f"{label} [green]{event.message}[/]")
        else:  # retry, fallback, waiting, warning
            style = "red" if event.kind == "fallback" else "yellow"
            bars.console.print(f"[{style}]{event.kind}[/] {label}: {event.message}")

    def failed(self, model_id: str, err: StemSepError) -> None:
        """Mark the model's bars; the error itself is reported once, at the end."""
        if self.as_json:
            _emit({"type": "artifact.error", "model_id": model_id, **err.to_dict()})
            return
        for (model, filename), task in self.tasks.items():
            if model == model_id and (model, filename) not in self.done:
                self._bars().update(task, description=f"{model}/{filename} [red]failed[/]")

    def _bars(self) -> Progress:
        assert self.progress is not None, "bars exist only inside the renderer's `with` block"
        return self.progress


def _print_download_summary(results: list[dict[str, Any]]) -> None:
    for r in results:
        if r["ok"]:
            for name, path in r["paths"].items():
                typer.echo(f"{r['model']}/{name}: {path}")


def _print_status(root: Path, rows, orphans: list[str], entries) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    colour = {"present": "green", "partial": "yellow", "downloadable": "cyan", "missing": "red",
              "hash_mismatch": "bold red", "unsafe": "bold red"}
    table = Table(title=f"Model store: {root}", title_justify="left")
    for col in ("model", "artifact", "kind", "state", "size", "sha256"):
        table.add_column(col, overflow="fold")
    for r in rows:
        size = human(r.size) if r.state.value != "partial" else f"{human(r.size)} of {human(r.expected_size)}"
        sha = (r.sha256 or r.expected_sha256 or "")[:12]
        sha += "" if not sha else (" (pinned)" if r.expected_sha256 else " (unpinned)")
        state = f"[{colour[r.state.value]}]{r.state.value}[/]" + (f"\n{r.detail}" if r.detail else "")
        table.add_row(r.model_id, r.filename, r.kind, state, size, sha)
    if rows:
        console.print(table)
    elif not orphans:
        console.print(f"Nothing to show for {len(entries)} model(s); the store at {root} holds no models."
                      if entries else f"The store at {root} holds no models (`--all` lists every model).")
    for m in orphans:
        console.print(f"[yellow]{m}[/]: in the store but not in the registry (`stemsep models rm {m}` removes it)")
