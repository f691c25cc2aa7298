"""`stemsep models show`: a model explained in plain language, from registry data only.

`explain_model` gathers the facts (JSON-ready; `--json` prints it as is); `render_explanation` prints
them for people.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from registry.capabilities import cannot_run
from registry.routing import choose_runtime
from registry.settings import SettingsError, pinned_version, resolve_settings, family_of
from registry.errors import StemSepError
from registry.vocab import RUNTIME_IDS

if TYPE_CHECKING:  # typed, not a frozen view: this reads pydantic's model_dump
    from registry.model import ModelEntry

MEANING_WORDS = {
    "divisor": "divisor: chunks step by chunk_size // N",
    "ratio": "ratio: this fraction of each window overlaps the next",
    "seconds": "seconds: chunks step by this many seconds",
    "none": "no overlap parameter",
}
UNIT_WORDS = {"samples": "samples", "frames": "STFT frames (dim_t)", "seconds": "seconds"}


def explain_model(entry: ModelEntry, *, source: Path, default_model: Optional[str], raw: dict) -> dict[str, Any]:
    rt = entry.runtime
    try:
        choice = choose_runtime(entry)
        default_runtime: dict[str, Optional[str]] = {"runtime": choice.runtime, "reason": choice.reason,
                                                     "explanation": choice.explain()}
    except StemSepError as err:
        default_runtime = {"runtime": None, "reason": None, "explanation": str(err)}
    runtimes = []
    for runtime in RUNTIME_IDS:
        allowed = runtime in rt.allowed
        try:
            version = pinned_version(entry, runtime) if allowed else None
        except SettingsError:
            version = None
        runtimes.append({"runtime": runtime, "allowed": allowed, "preferred": runtime == rt.preferred,
                         "pin": entry.requirements.runtime_pins.get(runtime), "library_version": version,
                         "cannot_run": list(cannot_run(entry, runtime))})  # its capability facts against the model
    return {
        "id": entry.id,
        "name": entry.name,
        "architecture": entry.architecture,
        "family": family_of(entry),
        "type": entry.type,
        "description": entry.description,
        "source": str(source),
        "is_default": entry.id == default_model,
        "capabilities": entry.capabilities.model_dump(mode="json", include={"stems", "roles", "supports_mono",
                                                                              "supports_stereo"}),
        "runtimes": runtimes,
        "default_runtime": default_runtime,
        "blocking_reason": rt.blocking_reason,
        "catalog_only": rt.catalog_only,
        "requirements": _requirements(entry),
        "manual_steps": _manual_steps(entry),
        "artifacts": _artifacts(entry),
        "phase_fix": _phase_fix(entry),
        "settings": _settings(entry),
        "known_issues": list(entry.compatibility.known_issues),
        "evidence": [e.model_dump(mode="json") for e in entry.evidence],
        "entry": raw,
    }


def _requirements(entry: ModelEntry) -> list[str]:
    req = entry.requirements
    lines = []
    if req.python.min or req.python.max:
        lines.append("Python " + ", ".join(x for x in (f">= {req.python.min}" if req.python.min else "",
                                                       f"<= {req.python.max}" if req.python.max else "") if x))
    if req.torch.required is False:
        lines.append("No torch needed: runs on a fresh machine without a GPU stack.")
    elif req.torch.min or req.torch.max:
        lines.append("torch " + ", ".join(x for x in (f">= {req.torch.min}" if req.torch.min else "",
                                                      f"<= {req.torch.max}" if req.torch.max else "") if x))
    if req.torch.cuda or req.torch.rocm:
        lines.append("GPU builds: " + ", ".join(list(req.torch.cuda) + list(req.torch.rocm)))
    if req.pip.packages:
        scope = f" (only on {', '.join(req.pip.runtimes)})" if req.pip.runtimes else ""
        lines.append(f"Extra packages installed into its environment{scope}: " + ", ".join(req.pip.packages))
    for runtime, pin in req.runtime_pins.items():
        lines.append(f"{runtime} library pinned: {pin}")
    if req.files.expects:
        lines.append("Expects files: " + ", ".join(req.files.expects))
    if req.files.provides:
        lines.append("Provides files: " + ", ".join(req.files.provides))
    return lines


def _manual_steps(entry: ModelEntry) -> list[dict[str, Any]]:
    code = {a.filename: a for a in entry.artifacts.all() if a.kind == "code"}
    steps = []
    for step in entry.requirements.manual_steps:
        text = step if isinstance(step, str) else step.text
        by = None if isinstance(step, str) else step.automated_by
        how = None
        if by:
            artifact = code.get(by)
            how = (f"automated: the worker loads {by} as model type {artifact.model_type}; nothing to do"
                   if artifact else f"automated by {by}")
            if artifact and artifact.runtimes:
                how += f" (only on {', '.join(artifact.runtimes)}: the other runtimes need neither step nor file)"
        steps.append({"text": text, "automated_by": by, "automated": by is not None, "how": how})
    return steps


def _artifacts(entry: ModelEntry) -> list[dict[str, Any]]:
    out = []
    a = entry.artifacts
    slots = [("primary", a.primary), ("config", a.config)] + [("additional", x) for x in a.additional]
    for slot, artifact in slots:
        if artifact is not None:
            out.append({"slot": slot, "kind": artifact.kind, "filename": artifact.filename,
                        "sha256": artifact.sha256, "url": artifact.url, "unsafe_pickle": artifact.unsafe_pickle})
    return out


def _phase_fix(entry: ModelEntry) -> dict[str, Any]:
    pf = entry.phase_fix
    params = {k: v for k, v in pf.recommended_params.model_dump(include={"lowHz", "highHz", "highFreqWeight"}).items()
              if v is not None}
    return {"is_valid_reference": pf.is_valid_reference is True, "recommended_params": params,
            "recommended_usage": list(pf.recommended_usage)}


def _settings(entry: ModelEntry) -> dict[str, Any]:
    rec = entry.recommended_settings
    semantics = entry.settings_semantics
    recommended = {k: v for k, v in rec.model_dump(include={"segment_size", "overlap", "batch_size", "tta",
                                                             "shifts", "bit_depth"}).items() if v is not None}
    per_runtime: dict[str, Any] = {}
    for runtime in entry.runtime.allowed:
        try:
            per_runtime[runtime] = resolve_settings(entry, runtime).to_dict()
        except StemSepError as err:
            per_runtime[runtime] = {"error": err.to_dict()}
    return {"recommended": recommended, "overlap_meaning": semantics.overlap_semantics().meaning,
            "segment_unit": semantics.segment_size.unit or "samples",
            "notes": semantics.overlap_semantics().notes, "per_runtime": per_runtime}


# ---- rendering ----------------------------------------------------------------------------------

def render_explanation(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape as e

    out = Console(highlight=False)
    head = f"[bold]{e(info['id'])}[/]" + (f" - {e(info['name'])}" if info["name"] else "")
    out.print(head + ("  [green](default model)[/]" if info["is_default"] else ""))
    out.print(f"{e(info['architecture'])}" + (f" | {e(info['type'])}" if info["type"] else ""))
    if info["description"]:
        out.print(e(info["description"]))
    caps = info["capabilities"]
    out.print(f"Stems: {e(', '.join(caps['stems']) or 'not declared')}   Roles: {e(', '.join(caps['roles']) or '-')}")
    channels = [w for w, ok in (("stereo", caps["supports_stereo"]), ("mono", caps["supports_mono"])) if ok]
    if channels:
        out.print("Input: " + " and ".join(channels))

    out.print("\n[bold]Where it runs[/]")
    for r in info["runtimes"]:
        if r["allowed"]:
            extra = [x for x in ("preferred" if r["preferred"] else "",
                                 r["pin"] or (f"{r['runtime']} {r['library_version']}" if r["library_version"] else ""))
                     if x]
            out.print(f"  [green]yes[/] {r['runtime']}" + (f" ({e('; '.join(extra))})" if extra else ""))
            for reason in r["cannot_run"]:  # a user's entry may allow what the runtime cannot run
                out.print(f"      [red]but {e(reason)}[/]")
        else:
            out.print(f"  [red]no[/]  {r['runtime']}" + (f": {e('; '.join(r['cannot_run']))}" if r["cannot_run"]
                                                         else ""))
    d = info["default_runtime"]
    if d["runtime"]:
        out.print(f"  Runs in [bold]{d['runtime']}[/]: {e(d['explanation'])}.")
    elif info["catalog_only"]:
        out.print("  [red]Listed for reference only: no runtime here can run it.[/]")
    if info["blocking_reason"]:
        out.print(f"  Why not elsewhere: {e(info['blocking_reason'])}")

    _bullets(out, "Special requirements", info["requirements"])
    if info["manual_steps"]:
        out.print("\n[bold]Manual steps[/] (for people running the model by hand)")
        for i, step in enumerate(info["manual_steps"], 1):
            out.print(f"  {i}. {e(step['text'])}")
            out.print(f"     [green]{e(step['how'])}[/]" if step["automated"]
                      else "     [yellow]not automated: do this yourself before running the model[/]")
    if info["artifacts"]:
        out.print("\n[bold]Files[/]")
        for a in info["artifacts"]:
            pinned = "sha256 pinned" if a["sha256"] else "no sha256 recorded"
            out.print(f"  {a['slot']}: {e(a['filename'])} ({a['kind']}, {pinned})")

    pf = info["phase_fix"]
    out.print("\n[bold]Phase Fix[/]")
    if pf["is_valid_reference"]:
        params = ", ".join(f"{k} {v:g}" for k, v in pf["recommended_params"].items())
        out.print("  Valid Phase Fix reference" + (f": {e(params)}" if params else "") + ".")
        for usage in pf["recommended_usage"]:
            out.print(f"  - {e(usage)}")
    else:
        out.print("  Not a Phase Fix reference (do not use it as the phase source).")

    s = info["settings"]
    out.print("\n[bold]Recommended settings[/]")
    if s["recommended"]:
        parts = []
        for k, v in s["recommended"].items():
            unit = (f" ({s['overlap_meaning']})" if k == "overlap" and s["overlap_meaning"]
                    else f" {s['segment_unit']}" if k == "segment_size" else "")
            parts.append(f"{k} {v}{unit}")
        out.print("  " + e(", ".join(parts)))
    else:
        out.print("  none recorded: each runtime uses the model config's own values")
    for runtime, res in s["per_runtime"].items():
        if "error" in res:
            out.print(f"  In {runtime}: [red]{e(res['error']['message'])}[/]")
            continue
        version = f" {res['library_version']}" if res["library_version"] else ""
        out.print(f"  In {runtime}{version}:")
        for name, item in res["settings"].items():
            line = _setting_line(name, item)
            if line:
                out.print(f"    {e(line)}")
    _bullets(out, "Known issues", info["known_issues"])
    if info["evidence"]:
        sources = sorted({ev["source"] for ev in info["evidence"]})
        out.print(f"\n[dim]Evidence: {e('; '.join(sources))}[/]")
    out.print(f"[dim]Registry file: {e(info['source'])}[/]")


def _bullets(out: Any, title: str, lines: list[str]) -> None:
    from rich.markup import escape

    if lines:
        out.print(f"\n[bold]{title}[/]")
        for line in lines:
            out.print(f"  - {escape(line)}")


def describe_setting(name: str, item: dict[str, Any]) -> Optional[dict[str, Any]]:
    """One resolved setting (`settings.per_runtime[r].settings[name]`) in words: {setting, param, value, meaning,
    provenance, note}; None when the runtime has no such parameter and the registry gives no value. `value`
    None: the runtime's default applies. The note is kept where it says something: a default's reason, or a
    translation from the registry's meaning to the runtime's."""
    if item["param"] is None and item["source_value"] is None:
        return None
    meaning = item["meaning"]
    translated = bool(item["source_meaning"]) and item["source_meaning"] != meaning
    return {"setting": name, "param": item["param"] or name, "value": item["value"],
            "meaning": MEANING_WORDS.get(meaning) if name == "overlap" else UNIT_WORDS.get(meaning or "", meaning),
            "provenance": item["provenance"], "note": item["note"] if item["value"] is None or translated else ""}


def _setting_line(name: str, item: dict[str, Any]) -> Optional[str]:
    d = describe_setting(name, item)
    if d is None:
        return None
    if d["value"] is None:
        return f"{d['param']}: runtime default" + (f" ({d['note']})" if d["note"] else "")
    text = f"{d['param']} = {d['value']}" + (f" ({d['meaning']})" if d["meaning"] else "")
    text += f", from the {d['provenance']}"
    if d["note"]:
        text += f" [{d['note']}]"
    return text
