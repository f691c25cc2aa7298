"""`stemsep preflight INPUT... [-m MODEL] [--runtime R] [--json]`: may this job start, and if not, why.

Human view: a short table (inputs, runtime, settings with provenance, env, Python, torch, pip
packages, artifacts, manual steps, Phase Fix), the warnings, and a "why blocked" section quoting the
registry's blocking_reason and manual steps. `--json` prints the report (docs/preflight.md). Exit 0
when the job can proceed, 3 (PREFLIGHT_BLOCKED) when it cannot.

The options shared with `separate` (enforcement, confirmations, unpickling consent, hashes, downloads, setting
overrides) are declared once, in job_options.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from envmgr.cli.job_options import SHARED, with_job_options
from registry.errors import ExitCode, StemSepError

if TYPE_CHECKING:
    from envmgr.preflight.options import JobOptions


def register(root: typer.Typer) -> None:
    """Adds `stemsep preflight` to the root app."""
    root.command("preflight", no_args_is_help=True)(preflight)


@with_job_options
def preflight(
    inputs: list[Path] = typer.Argument(..., help="Audio files the job would separate.", show_default=False,
                                  readable=False),  # preflight judges it: E_INPUT_UNREADABLE, exit 12
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Model id (default: the registry's default)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="Runtime to check, if the model allows several."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (docs/preflight.md)."),
    options: JobOptions = SHARED,  # the nine options `separate` has too (envmgr/cli/job_options.py)
    phase_fix_reference: Optional[str] = typer.Option(None, "--phase-fix-reference", help="Model whose result "
                                                      "gives the phase for Phase Fix; must be a valid reference."),
    low_hz: Optional[float] = typer.Option(None, "--phase-fix-low-hz", help="Phase Fix lowHz (default: the "
                                           "reference's recommendation).", show_default=False),
    high_hz: Optional[float] = typer.Option(None, "--phase-fix-high-hz", help="Phase Fix highHz.",
                                            show_default=False),
    high_freq_weight: Optional[float] = typer.Option(None, "--phase-fix-high-freq-weight",
                                                     help="Phase Fix highFreqWeight.", show_default=False),
) -> None:
    """Check whether a separation job may start: input audio, model, runtime, settings, artifacts, env
    requirements, manual steps, Phase Fix. Starts, builds and downloads nothing."""
    from envmgr.preflight.run import PreflightRequest, run_preflight

    params = {"lowHz": low_hz, "highHz": high_hz, "highFreqWeight": high_freq_weight}
    request = PreflightRequest(inputs=list(inputs), model_id=model, runtime=runtime, options=options,
                               phase_fix_reference=phase_fix_reference,
                               phase_fix_params={k: v for k, v in params.items() if v is not None})
    result = run_preflight(request)
    if as_json:
        typer.echo(json.dumps(result.report, indent=2))
    else:
        render(result.report)
    if not result.can_proceed:  # the report said why; stderr gets one line for scripts and logs
        codes = ", ".join(dict.fromkeys(f.code for f in result.decision.blocking))
        raise StemSepError(f"the job is blocked ({codes})", code="E_PREFLIGHT_BLOCKED",
                           exit_code=ExitCode.PREFLIGHT_BLOCKED,
                           hint="the JSON report on stdout says why" if as_json else "see \"why blocked\" above")


# ---- human view --------------------------------------------------------------------------------

_STATE_STYLE = {"ok": "green", "ready": "green", "present": "green", "satisfied": "green", "automated": "green",
                "confirmed": "green", "pinned": "green", "needs_build": "yellow", "downloadable": "yellow",
                "partial": "yellow", "to_install": "yellow", "user_trusted": "yellow", "broken": "yellow",
                "not_checked": "dim"}


def _state(text: Optional[str]) -> str:
    if text is None:
        return "[dim]-[/]"
    return f"[{_STATE_STYLE.get(text, 'red')}]{text}[/]"


def render(report: dict[str, Any]) -> None:
    """The report for people: what was checked, what it found, why a blocked job is blocked."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from envmgr.sizes import human

    console = Console(highlight=False)
    resolved, status = report["resolved"], report["resolved"]["requirements_status"]
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("check")
    table.add_column("state")
    table.add_column("detail", overflow="fold")
    for item in report["inputs"]:
        info = (f"{item['format']} {item['subtype']}, {item['sample_rate']} Hz, {item['channels']} ch, "
                f"{item['duration_s']} s" if item["format"] else "")
        table.add_row("input", _state(item["state"]), Text(f"{item['path']}  {info}".rstrip()))
    table.add_row("model", _state("ok" if resolved["runtime"] or report["model"] else "unknown"),
                  Text(str(report["model"])))
    rt = resolved["runtime"]
    if rt:
        table.add_row("runtime", _state("ok" if rt["in_allowed"] else "not_allowed"),
                      Text(f"{rt['id']} ({rt['why']}); allowed: {', '.join(rt['allowed'])}"))
    settings = resolved["settings"]
    if settings:
        for name, s in settings["settings"].items():
            if s["param"] is None and s["source_value"] is None:
                continue
            value = "runtime default" if s["value"] is None else f"{s['param']} = {s['value']}"
            meaning = f" ({s['meaning']})" if s["meaning"] and s["value"] is not None else ""
            table.add_row(f"setting {name}", _state(s["provenance"].replace("runtime_default", "default")),
                          Text(value + meaning + (f"  {s['note']}" if s["note"] else "")))
    env = status["env"]
    if env:
        table.add_row("env", _state(env["state"]), Text(f"{env['id'] or ''} {env['problem'] or ''}".strip()))
    if status["python"] and status["python"]["version"]:
        py = status["python"]
        table.add_row("python", _state("ok"), Text(f"{py['version']} ({py['seen_in']}); needs {py['required']}"))
    if status["torch"]:
        t = status["torch"]
        table.add_row("torch", _state("ok" if t["version"] else "to_install"),
                      Text(f"{t['version'] or '?'} ({t['variant'] or t['backend']}); needs "
                           + (t["required"] if t["required"] != "torch" else "any version")))
    for p in status["pip"]:
        table.add_row("pip", _state(p["state"]), Text(f"{p['requirement']}  {p['version'] or ''}".rstrip()))
    for a in status["artifacts"]:
        consent = a["unsafe_pickle_consent"]
        extra = " · ".join(x for x in (a["kind"], "sha256 pinned" if a["pinned"] else "unpinned",
                                       f"code: {a['trust']}" if a["trust"] else "",
                                       f"full unpickling: {'not allowed' if consent == 'missing' else 'allowed'}"
                                       if consent else "",
                                       human(a["size"] or a["expected_size"], unknown="")) if x)
        table.add_row("artifact", _state(a["state"]), Text(f"{a['filename']}  ({extra})"))
    for step in status["manual_steps"]:
        by = f" by {step['automated_by']}" if step["automated_by"] else ""
        table.add_row("manual step", _state(step["state"]), Text(step["text"] + by))
    pf = resolved["phase_fix"]
    if pf:
        params = ", ".join(f"{k}={v['value']} ({v['provenance']})" for k, v in pf["params"].items())
        table.add_row("phase fix", _state("ok"), Text(f"reference {pf['reference']}: {params}"))
    mode = report["enforcement"]
    console.print(f"[bold]preflight[/] · enforcement {mode['mode']}"
                  + (" · dev override" if mode["dev_override"] else ""))
    console.print(table)
    for w in report["warnings"]:
        console.print(Text.assemble(("warning ", "yellow"), (f"({w['code']}) ", "dim"), w["message"]))
    overridden = [e for e in report["errors"] if not e["blocking"]]
    for e in overridden:
        console.print(Text.assemble(("error, not enforced ", "yellow"), (f"({e['code']}) ", "dim"), e["message"]))
    blocking = [e for e in report["errors"] if e["blocking"]]
    if blocking:
        console.print("[bold red]why blocked[/]" if not report["can_proceed"] else "[bold red]blocked inputs[/]")
        for e in blocking:
            where = f"{Path(e['input']).name}: " if e["input"] else ""
            console.print(Text.assemble(("  • ", "red"), (f"({e['code']}) ", "dim"), where + e["message"]))
            if e["why"]:
                console.print(Text("      why: " + e["why"]))
            if e["hint"]:
                console.print(Text("      what to do: " + e["hint"]))
    verdict = "[bold green]can proceed[/]" if report["can_proceed"] else "[bold red]blocked[/]"
    console.print(f"{verdict} [dim]({report['seconds']:.2f} s)[/]")
