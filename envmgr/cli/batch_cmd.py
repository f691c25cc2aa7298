"""`stemsep batch MANIFEST [--engine local|ray] [--address ADDR] [-o DIR]`: a manifest's inputs through their
models or recipes, on this machine or spread over a Ray cluster (docs/scale.md). The output dir keeps a ledger, so
running the same command again runs only the inputs not yet done.

Human mode prints a line per input on stderr (`[done/total] model input: ok on node`) and each stem path on
stdout, then the throughput per node and model; `--json` prints every event (envmgr/batch/driver.py names them)
as a JSON line, ending with an `exit` event. Ray is imported only with `--engine ray`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from envmgr.cli.job_options import SHARED, with_job_options
from envmgr.cli.json_stream import json_emit
from envmgr.cli.outcome import exit_event

if TYPE_CHECKING:
    from envmgr.preflight.options import JobOptions


def register(root: typer.Typer) -> None:
    root.command("batch", no_args_is_help=True)(batch)


@with_job_options
def batch(
    manifest: Path = typer.Argument(..., help="A .jsonl or .csv manifest (input, then model and runtime or recipe "
                                    "per item), or a folder of audio files.", show_default=False),
    engine: str = typer.Option("local", "--engine", help="local (this machine) or ray (a Ray cluster)."),
    address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: the cluster (host:port of "
                                          "`ray start --head`, or auto). Default: start a local Ray instance."),
    output_dir: Path = typer.Option(Path("separated"), "-o", "--output-dir",
                                    help="Where stems and the batch ledger go; with ray, a path every node can "
                                    "write (shared storage) unless --collect."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Model for items that name none. Default: the "
                                        "registry's default model."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="Runtime for items that name none."),
    recipe: Optional[str] = typer.Option(None, "-r", "--recipe", help="Recipe (an id or a recipe file) for items "
                                         "that name no model and no recipe; not with -m/--runtime."),
    fmt: str = typer.Option("wav", "--format", help="wav (32-bit float, default) or flac (24-bit integer)."),
    actors_per_node: int = typer.Option(1, "--actors-per-node", min=1,
                                        help="With ray: workers per node for each model."),
    num_gpus: Optional[float] = typer.Option(None, "--num-gpus", min=0.0, help="With ray: GPUs per actor "
                                             "(fractions allowed). Default: 1 for a torch model on a cluster with "
                                             "GPUs, else 0."),
    py_executable: Optional[Path] = typer.Option(None, "--py-executable", help="With ray: the Python the actors "
                                                 "run (Ray's runtime_env py_executable), at this path on every node; "
                                                 "it needs stemsep and ray installed. Default: the driver's."),
    collect: bool = typer.Option(False, "--collect", help="Return the stems to this driver to write, for nodes "
                                 "without a shared output path."),
    as_json: bool = typer.Option(False, "--json", help="Print events as JSON lines on stdout."),
    options: JobOptions = SHARED,
) -> None:
    """Separate every input of a manifest; re-running it runs only what is not done yet."""
    from envmgr.batch.driver import ENGINES, BatchOptions, run_batch
    from envmgr.batch.manifest import read_manifest

    if engine not in ENGINES:
        raise typer.BadParameter(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    emit = json_emit if as_json else _HumanView()
    with exit_event(json_emit if as_json else None):
        items = read_manifest(manifest, model, runtime, recipe)
        run_batch(items, output_dir, emit, output_format=fmt.lower(), options=options,
                  batch=BatchOptions(engine=engine, address=address, actors_per_node=actors_per_node,
                                     num_gpus=num_gpus, collect=collect,
                                     py_executable=py_executable.expanduser().absolute() if py_executable else None))


class _HumanView:
    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "batch":
            sys.stderr.write(f"{event['total']} inputs on {event['engine']}: {event['todo']} to run, "
                             f"{event['already_done']} done before\n")
        elif kind == "item":
            where = f" on {str(event['node'])[:12]}" if event.get("node") else ""
            if event["status"] == "done":
                sys.stderr.write(f"[{event['done']}/{event['total']}] {event['model']} {Path(event['input']).name}: "
                                 f"ok{where}\n")
                for path in event["stems"]:
                    sys.stdout.write(path + "\n")
            else:
                err = event["error"]
                bundle = f"\n  debug bundle: {err['debug_bundle']}" if err.get("debug_bundle") else ""
                sys.stderr.write(f"[{event['done']}/{event['total']}] {event['model']} {Path(event['input']).name}: "
                                 f"{err.get('code')}: {err.get('message')}{where}{bundle}\n")
        elif kind == "throughput":
            sys.stderr.write(f"{event['model']} on {str(event['node'])[:12]}: {event['inputs']} inputs, "
                             f"{event['inputs_per_s']:.2f}/s\n")
        elif kind == "summary":
            sys.stderr.write(f"{event['ok']} done, {event['failed']} failed, {event['already_done']} done before\n")
