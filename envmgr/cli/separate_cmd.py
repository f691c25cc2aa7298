"""`stemsep separate`: split audio files into stems with a registry model, in the model's own env.

Human mode draws rich progress bars on stderr from the worker's progress events and prints each stem
path on stdout. `--json` prints every event as one JSON object per line on stdout instead (see
docs/protocol.md, "The --json stream"), ending with an `exit` event, so an app can drive us.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from envmgr.cli.bundle_hook import ALWAYS_OPTION, INCLUDE_AUDIO_OPTION
from envmgr.cli.job_options import SHARED, with_job_options
from envmgr.cli.json_stream import json_emit as _json_emit
from envmgr.cli.json_stream import tell_bundle as _tell_bundle
from envmgr.cli.outcome import exit_event

if TYPE_CHECKING:
    from envmgr.preflight.options import JobOptions


def register(root: typer.Typer) -> None:
    """Adds `stemsep separate` to the root app."""
    root.command("separate", no_args_is_help=True)(separate)


@with_job_options
def separate(
    inputs: list[Path] = typer.Argument(..., help="Audio files to separate (WAV, FLAC, OGG, MP3, AIFF...).",
                                        show_default=False,
                                        readable=False),  # preflight judges it: E_INPUT_UNREADABLE, exit 12
    model: Optional[list[str]] = typer.Option(None, "-m", "--model",
                                              help="Model id (see `stemsep models list`); repeat it to run several "
                                              "models in one batch, each in its own env. Default: the registry's "
                                              "default model, a built-in vocals/instrumental DSP split that needs no "
                                              "download."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="Runtime to use, if the model allows several."),
    output_dir: Optional[Path] = typer.Option(None, "-o", "--output-dir",
                                              help="Where stems go. Default: ./separated"),
    fmt: str = typer.Option("wav", "--format", help="wav (32-bit float, default) or flac (24-bit integer)."),
    as_json: bool = typer.Option(False, "--json", help="Print events as JSON lines on stdout (for apps)."),
    job_timeout: Optional[float] = typer.Option(None, "--job-timeout", min=1.0,
                                                help="Give up on an input after this many seconds."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show the worker's own output (stderr)."),
    debug_bundle: bool = ALWAYS_OPTION,
    include_audio: bool = INCLUDE_AUDIO_OPTION,
    ensemble: Optional[str] = typer.Option(None, "--ensemble", metavar="ALG",
                                           help="Ensemble the -m models' common stems (avg_wave, max_fft, "
                                           "uvr_max_spec...; docs/recipes.md): runs as a recipe."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Ensemble weights, one per -m model: 2,1."),
    phase_fix_ref: Optional[str] = typer.Option(None, "--phase-fix-ref", metavar="MODEL",
                                                help="Phase Fix the instrumental with this reference model's "
                                                "instrumental phase (a recipe)."),
    phase_fix_low_hz: Optional[float] = typer.Option(None, "--phase-fix-low-hz", min=0.0,
                                                     help="Default: the reference's recommended lowHz."),
    phase_fix_high_hz: Optional[float] = typer.Option(None, "--phase-fix-high-hz", min=0.0,
                                                      help="Default: the reference's recommended highHz."),
    phase_fix_weight: Optional[float] = typer.Option(None, "--phase-fix-weight",
                                                     help="High frequency weight (not clamped). Default: the "
                                                     "reference's recommended highFreqWeight."),
    then: Optional[list[str]] = typer.Option(None, "--then", metavar="MODEL:STEM",
                                             help="Post-process STEM with MODEL (repeatable; a recipe)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="With the shorthands: do not use the step cache."),
    keep_intermediates: bool = typer.Option(False, "--keep-intermediates",
                                            help="With the shorthands: keep the job folder of step stems."),
    options: JobOptions = SHARED,  # the nine options `preflight` has too (envmgr/cli/job_options.py)
) -> None:
    """Separate audio files into stems. Stem files are named `<input>_(<stem>)_<model>.<format>`; with
    --ensemble, --phase-fix-ref or --then the run is a recipe (`stemsep run`) and its outputs are named
    `<input>_(<output>)_<recipe>.<format>`."""
    from envmgr.jobs.adhoc_recipe import Shorthands

    shorthands = Shorthands(list(dict.fromkeys(model or [])), ensemble, _weights(weights), phase_fix_ref,
                            {k: v for k, v in (("low_hz", phase_fix_low_hz), ("high_hz", phase_fix_high_hz),
                                               ("weight", phase_fix_weight)) if v is not None}, then or [])
    if shorthands.used:
        _run_shorthands(shorthands, list(inputs), output_dir, fmt, options, as_json=as_json, use_cache=not no_cache,
                        keep_intermediates=keep_intermediates, job_timeout=job_timeout, verbose=verbose,
                        debug_bundle=debug_bundle, include_audio=include_audio)
        return
    from envmgr.cli.bundle_hook import debug_bundle as bundle_on_failure
    from envmgr.config import load_config
    from envmgr.jobs.job_record import JobRecord
    from envmgr.worker.prewarm import EarlyWorker
    from envmgr.worker.client import Timeouts

    emit = _json_emit if as_json else None
    view = None
    with exit_event(emit), ExitStack() as cleanup:
        # First thing, before planning imports the registry types: the worker's imports overlap it.
        config = load_config()
        early = EarlyWorker(config, list(dict.fromkeys(model or [])), runtime).start()
        cleanup.callback(early.discard)
        record = JobRecord()  # the run's facts, for the debug bundle a failure (or --debug-bundle) writes
        cleanup.enter_context(bundle_on_failure(record, config, always=debug_bundle, include_audio=include_audio,
                                                tell=_tell_bundle(as_json)))
        from envmgr.jobs.separate import plan_separation, run_separation

        # Every model passes preflight before any of them starts.
        plans = [plan_separation(list(inputs), one, runtime, output_dir, fmt.lower(), options, config=config,
                                 emit=record.noting(emit)) for one in (dict.fromkeys(model) if model else [None])]
        timeouts = Timeouts(job=job_timeout)
        if as_json:
            run_separation(plans, _json_emit, config=config, timeouts=timeouts, early=early, record=record)
        else:
            view = _ProgressView(sum(len(p.inputs) + len(p.skipped) for p in plans), models=len(plans))
            with view:
                for plan in plans:
                    view.preflight_warnings(plan.warnings)
                run_separation(plans, view, config=config, timeouts=timeouts,
                               on_stderr=view.on_stderr if verbose else None, early=early, record=record)


def _weights(text: Optional[str]) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--weights {text!r}: give numbers separated by commas, e.g. 2,1") from None


def _run_shorthands(shorthands: Any, inputs: list[Path], output_dir: Optional[Path], fmt: str, options: JobOptions,
                    **run: Any) -> None:
    """The shorthands as a recipe (envmgr/jobs/adhoc_recipe.py), run as `stemsep run` runs one."""
    from envmgr.catalog.registry_files import load
    from envmgr.cli.run_cmd import run_recipe_command
    from envmgr.jobs.adhoc_recipe import adhoc_recipe

    registry = load()
    recipe = adhoc_recipe(shorthands, lambda model_id: registry.view(model_id).capabilities.stems)
    run_recipe_command(recipe, inputs, output_dir, fmt, options, **run)




class _ProgressView:
    """Renders run events: one bar per input on stderr, stem paths on stdout."""

    def __init__(self, n_inputs: int, models: int = 1) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True, highlight=False)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), console=self.console)
        self.batch = n_inputs > 1
        self.models = models  # several: bars and errors name the model too
        self.tasks: dict[str, Any] = {}
        self.names: dict[str, str] = {}
        self.env_task: Any = None

    def __enter__(self) -> "_ProgressView":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        getattr(self, "on_" + event["type"].replace(".", "_"), lambda e: None)(event)

    def preflight_warnings(self, warnings: tuple[str, ...]) -> None:
        for warning in warnings:
            style = "bold red" if warning.startswith("W_DEV_OVERRIDE:") else "yellow"
            self.console.print(f"[{style}]preflight warning[/] {warning}", highlight=False)

    def on_artifact_start(self, e: dict[str, Any]) -> None:
        key = e["filename"]
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"download {key}", total=e["total"])
        self.progress.update(self.tasks[key], completed=e["done"], total=e["total"])

    on_artifact_progress = on_artifact_start

    def on_artifact_done(self, e: dict[str, Any]) -> None:
        task = self.tasks.get(e["filename"])
        if task is not None:
            self.progress.update(task, completed=e["done"], total=e["total"] or e["done"],
                                 description=f"download {e['filename']} · {e['message']}")

    def on_artifact_warning(self, e: dict[str, Any]) -> None:
        self.console.print(f"[yellow]warning[/]: {e['model_id']}/{e['filename']}: {e['message']}")

    on_artifact_retry = on_artifact_fallback = on_artifact_warning

    def on_plan(self, e: dict[str, Any]) -> None:
        self.console.print(f"[bold]{e['model']}[/] on [bold]{e['runtime']}[/] [dim]({e['runtime_reason']})[/]")

    def on_env(self, e: dict[str, Any]) -> None:
        if self.env_task is None:
            self.env_task = self.progress.add_task("env", total=None)
        self.progress.update(self.env_task, description=f"env: {e['stage']} [dim]{e['message']}[/]")

    def on_env_ready(self, e: dict[str, Any]) -> None:
        if self.env_task is not None:
            self.progress.remove_task(self.env_task)
            self.env_task = None  # the next model's env gets a bar of its own
        self.console.print(f"[dim]env {e['env_id']}[/]")

    def on_worker(self, e: dict[str, Any]) -> None:
        versions = ", ".join(f"{k} {v}" for k, v in e["versions"].items())
        self.console.print(f"[dim]worker pid {e['pid']} · Python {e['python']} · {e['device']} · {versions}[/]")

    def on_job(self, e: dict[str, Any]) -> None:
        name = Path(e["input"]).name
        name = f"{e['model']} · {name}" if self.models > 1 and e.get("model") else name
        self.names[e["job"]] = name
        self.tasks[e["job"]] = self.progress.add_task(name, total=None)

    def on_progress(self, e: dict[str, Any]) -> None:
        task = self.tasks.get(e["job"])
        if task is not None:
            self.progress.update(task, description=f"{self.names[e['job']]} · {e['stage']}",
                                 completed=e["done"], total=e["total"] or None)

    def on_result(self, e: dict[str, Any]) -> None:
        task = self.tasks.get(e["job"])
        if task is not None:
            self.progress.update(task, description=f"{self.names[e['job']]} · done in {e['seconds']:.1f} s")
        for warning in e.get("warnings") or []:
            self.console.print(f"[yellow]warning[/]: {warning}")
        for stem in e["stems"]:
            print(stem["path"])  # stdout; rich keeps its bars below what is printed

    def on_error(self, e: dict[str, Any]) -> None:
        task = self.tasks.get(e.get("job") or "")
        if task is not None:
            self.progress.update(task, description=f"{self.names[e['job']]} · [red]failed[/]")
            self.progress.stop_task(task)
        if self.batch:  # a single input's error is reported once, by the CLI's error handler
            who = f"{e['model']} · " if self.models > 1 and e.get("model") else ""
            self.console.print(f"[red]error[/] [dim]({e['code']})[/] {who}{Path(e['input']).name}: {e['message']}")

    def on_stderr(self, line: str) -> None:
        self.console.print("worker: " + line, style="dim", markup=False)

    def on_summary(self, e: dict[str, Any]) -> None:
        if self.batch:
            self.console.print(f"{e['ok']} separated, {e['failed']} failed")
