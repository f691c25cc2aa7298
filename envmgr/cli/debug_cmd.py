"""`stemsep debug show BUNDLE` and `stemsep debug replay BUNDLE [--audio PATH]`: a failed run's debug bundle
(envmgr/diagnostics/bundle.py) read back, and its job run again in the env its lock describes
(envmgr/diagnostics/replay.py). docs/debugging.md."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from envmgr.cli.outcome import exit_event
from envmgr.cli.separate_cmd import _json_emit

if TYPE_CHECKING:
    from envmgr.diagnostics.replay import Difference

app = typer.Typer(help="Debug bundles: what a failed run recorded, and replaying it exactly.",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Adds `stemsep debug show|replay` to the root app."""
    root.add_typer(app, name="debug")


@app.command("show")
def show(bundle_path: Path = typer.Argument(..., metavar="BUNDLE", help="A debug bundle (.zip)."),
         as_json: bool = typer.Option(False, "--json", help="Print bundle.json (the machine-readable summary)."),
         ) -> None:
    """Summarise a debug bundle: its REPORT.md and the files beside it."""
    from envmgr.diagnostics.bundle_read import Bundle

    bundle = Bundle(bundle_path)
    if as_json:
        print(json.dumps({**bundle.facts, "path": str(bundle_path),
                          "contents": {n: bundle.size(n) for n in bundle.names}}, indent=2))
        return
    print(bundle.report, end="")
    print("\n## In this bundle\n")
    for name in bundle.names:
        print(f"- `{name}` ({bundle.size(name)} bytes)")


@app.command("replay")
def replay(bundle_path: Path = typer.Argument(..., metavar="BUNDLE", help="A debug bundle (.zip)."),
           audio: Optional[list[Path]] = typer.Option(None, "--audio", help="The input to use (once per input of "
                                                      "the recorded job); default: the bundled audio, else the "
                                                      "recorded paths."),
           output_dir: Optional[Path] = typer.Option(None, "-o", "--output-dir",
                                                     help="Where the replay's stems go. Default: a new dir under "
                                                     "the log dir's debug-bundles/replays/."),
           allow_mismatch: bool = typer.Option(False, "--allow-mismatch",
                                               help="Run even when model files differ from the recorded hashes."),
           as_json: bool = typer.Option(False, "--json", help="Print events as JSON lines on stdout, as "
                                        "`separate --json` does, after a `replay` event with the differences."),
           ) -> None:
    """Re-run a bundle's job: env rebuilt from its lock, model files checked against its hashes, the same
    model entry, settings and input; what differs from the recording is reported before it runs. Exits with
    the job's exit code."""
    from envmgr.config import load_config
    from envmgr.diagnostics.bundle import BUNDLE_DIR
    from envmgr.diagnostics.bundle_read import Bundle
    from envmgr.diagnostics.replay import prepare_replay
    from envmgr.jobs.separate import run_separation

    emit = _json_emit if as_json else None
    with exit_event(emit):
        bundle = Bundle(bundle_path)
        config = load_config()
        out = output_dir or config.log_dir / BUNDLE_DIR / "replays" / bundle_path.stem
        differences: list[Difference] = []
        recorded = bundle.error

        def report(difference: Difference) -> None:
            differences.append(difference)
            if as_json:
                _json_emit({"type": "difference", **difference.to_dict()})
            else:
                note = f" ({difference.note})" if difference.note else ""
                sys.stderr.write(f"differs: {difference.subject}: recorded {difference.recorded}, "
                                 f"here {difference.here}{note}\n")

        with tempfile.TemporaryDirectory(prefix="stemsep-replay-") as scratch:
            plans = prepare_replay(bundle, config=config, audio=list(audio or []), output_dir=out,
                                   scratch=Path(scratch), report=report, allow_mismatch=allow_mismatch,
                                   progress=emit or (lambda event: None))
            summary = {"type": "replay", "bundle": str(bundle_path), "recorded": recorded,
                       "differences": [d.to_dict() for d in differences], "output_dir": str(out)}
            if as_json:
                _json_emit(summary)
            else:
                sys.stderr.write(_intro(recorded, differences))
            try:
                run_separation(plans, emit or _human_event, config=config)
            except Exception as exc:
                if not as_json:
                    sys.stderr.write(_verdict(recorded, getattr(exc, "code", None)))
                raise
            if not as_json:
                sys.stderr.write(_verdict(recorded, None))


def _intro(recorded: dict[str, Any] | None, differences: list[Difference]) -> str:
    what = f"{recorded['code']} (exit {recorded['exit_code']})" if recorded else "a run that went well"
    same = "" if differences else "nothing differs from the recording; "
    return f"replaying a job that ended with {what}: {same}running it now\n"


def _verdict(recorded: dict[str, Any] | None, code: str | None) -> str:
    want = recorded["code"] if recorded else None
    if want == code:
        return f"replay reproduced the recorded outcome ({code or 'success'})\n"
    return f"replay ended with {code or 'success'}; the recording ended with {want or 'success'}\n"


def _human_event(event: dict[str, Any]) -> None:
    """The run's milestones on stderr, stem paths on stdout (the error itself is error_handler's)."""
    kind = event["type"]
    if kind == "env_ready":
        sys.stderr.write(f"env {event['env_id']}\n")
    elif kind == "worker":
        versions = ", ".join(f"{k} {v}" for k, v in event["versions"].items())
        sys.stderr.write(f"worker: Python {event['python']} · {event['device']} · {versions}\n")
    elif kind == "result":
        for stem in event["stems"]:
            print(stem["path"])
