"""`stemsep run RECIPE INPUT... [-o DIR]` (a recipe: chains, ensembles, Phase Fix; docs/recipes.md) and
`stemsep cache prune`. `separate`'s ensemble/Phase Fix/--then shorthands build a recipe and run it here too.

Human mode prints a line per step on stderr and each output path on stdout; `--json` prints every event as a
JSON line (envmgr/jobs/recipe_run.py names them), ending with an `exit` event. A failed run writes a debug
bundle (docs/debugging.md) as `separate` does.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from envmgr.cli.bundle_hook import ALWAYS_OPTION, INCLUDE_AUDIO_OPTION
from envmgr.cli.job_options import SHARED, with_job_options
from envmgr.cli.outcome import exit_event

if TYPE_CHECKING:
    from envmgr.preflight.options import JobOptions
    from registry.recipes.model import Recipe

cache_app = typer.Typer(no_args_is_help=True, help="The recipe step cache (<state_dir>/recipe-cache).")


def register(root: typer.Typer) -> None:
    root.command("run", no_args_is_help=True)(run)
    root.add_typer(cache_app, name="cache")


@with_job_options
def run(
    recipe_id: str = typer.Argument(..., metavar="RECIPE", help="A recipe id (`stemsep recipes list`) or a recipe "
                                    "file holding one recipe."),
    inputs: list[Path] = typer.Argument(..., help="Audio files.", show_default=False, readable=False),
    output_dir: Optional[Path] = typer.Option(None, "-o", "--output-dir", help="Where outputs go. Default: ./separated"),
    fmt: str = typer.Option("wav", "--format", help="wav (32-bit float, default) or flac (24-bit integer)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every step; neither read nor fill the step cache."),
    keep_intermediates: bool = typer.Option(False, "--keep-intermediates",
                                            help="Keep the job folder with every step's stems."),
    as_json: bool = typer.Option(False, "--json", help="Print events as JSON lines on stdout (for apps)."),
    job_timeout: Optional[float] = typer.Option(None, "--job-timeout", min=1.0,
                                                help="Give up on a step's input after this many seconds."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show the workers' own output (stderr)."),
    debug_bundle: bool = ALWAYS_OPTION,
    include_audio: bool = INCLUDE_AUDIO_OPTION,
    options: JobOptions = SHARED,
) -> None:
    """Run a recipe on audio files. Outputs are named `<input>_(<output>)_<recipe>.<format>`."""
    from envmgr.catalog.recipe_files import load_recipe

    run_recipe_command(load_recipe(recipe_id), list(inputs), output_dir, fmt, options, as_json=as_json,
                       use_cache=not no_cache, keep_intermediates=keep_intermediates, job_timeout=job_timeout,
                       verbose=verbose, debug_bundle=debug_bundle, include_audio=include_audio)


def run_recipe_command(recipe: Recipe, inputs: list[Path], output_dir: Optional[Path], fmt: str,
                       options: JobOptions, *, as_json: bool, use_cache: bool = True, keep_intermediates: bool = False,
                       job_timeout: Optional[float] = None, verbose: bool = False, debug_bundle: bool = False,
                       include_audio: bool = False) -> None:
    from envmgr.cli.bundle_hook import debug_bundle as bundle_on_failure
    from envmgr.cli.json_stream import json_emit as _json_emit
    from envmgr.cli.json_stream import tell_bundle as _tell_bundle
    from envmgr.config import load_config
    from envmgr.jobs.job_record import JobRecord
    from envmgr.jobs.recipe_run import plan_recipe, run_recipe
    from envmgr.jobs.separate import DEFAULT_OUTPUT_DIR
    from envmgr.worker.client import Timeouts

    emit = _json_emit if as_json else None
    with exit_event(emit), ExitStack() as cleanup:
        config = load_config()
        record = JobRecord()
        cleanup.enter_context(bundle_on_failure(record, config, always=debug_bundle, include_audio=include_audio,
                                                tell=_tell_bundle(as_json)))
        view = emit or _StepView()
        plan = plan_recipe(recipe, inputs, output_dir or DEFAULT_OUTPUT_DIR, fmt.lower(), options, config=config,
                           emit=record.noting(emit), use_cache=use_cache, keep_intermediates=keep_intermediates)
        record.note_plans(list(plan.models.values()))
        run_recipe(plan, record.noting(view), config=config, timeouts=Timeouts(job=job_timeout),
                   on_stderr=_worker_stderr if verbose else None, record=record)


def _worker_stderr(line: str) -> None:
    sys.stderr.write(f"worker: {line}\n")


class _StepView:
    """A line per step and per input on stderr; output paths on stdout."""

    def __call__(self, e: dict[str, Any]) -> None:
        kind = e["type"]
        if kind == "step":
            what = e["model"] or e["op"]
            sys.stderr.write(f"step {e['index']}/{e['total']} {e['step']}: {what}\n")
        elif kind == "step_input":
            sys.stderr.write(f"  {Path(e['input']).name}: {'cached' if e['cached'] else 'running'}\n")
        elif kind == "env":
            sys.stderr.write(f"  env: {e['stage']} {e['message']}\n")
        elif kind == "error":
            sys.stderr.write(f"  error ({e['code']}) {Path(e['input']).name}: {e['message']}\n")
        elif kind == "output":
            print(e["path"])
        elif kind == "intermediates":
            sys.stderr.write(f"intermediates kept in {e['path']}\n")
        sys.stderr.flush()


@cache_app.command("prune")
def prune(max_size: Optional[str] = typer.Option(None, "--max-size", help="Prune to this size (e.g. 0, 500M); "
                                                 "default: the config's recipe_cache_limit."),
          as_json: bool = typer.Option(False, "--json", help="Machine-readable result.")) -> None:
    """Remove the least recently used step results until the cache fits its limit."""
    import json

    from envmgr.config import load_config
    from envmgr.errors import UsageError
    from envmgr.jobs.recipe_run import cache_for
    from envmgr.sizes import human, parse_size

    cache = cache_for(load_config())
    try:
        limit = parse_size(max_size) if max_size is not None else None
    except ValueError as exc:
        raise UsageError(f"--max-size {max_size!r} is not a size", why=str(exc), hint="e.g. 0, 500M or 20G") from None
    report = cache.prune(limit)
    if as_json:
        sys.stdout.write(json.dumps({"removed": report.removed, "freed": report.freed, "kept": report.kept,
                                     "size": report.size, "path": str(cache.root)}) + "\n")
        return
    print(f"removed {report.removed} entr{'y' if report.removed == 1 else 'ies'} ({human(report.freed)}); "
          f"{report.kept} kept ({human(report.size)}) in {cache.root}")
