"""REPORT.md, the top of a debug bundle: what a person reads first, built from the bundle's own files."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

_STDERR_LINES = 25


def render_report(bundle: dict[str, Any], files: dict[str, Any], path: Path) -> str:
    outcome = bundle["outcome"]
    error = outcome.get("error")
    lines = ["# StemSep debug bundle", ""]
    if error:
        lines += [f"**What failed:** `{bundle['command_line']}` ended with `{error['code']}` "
                  f"(exit {error['exit_code']}): {error['message']}", ""]
        cause = _first_line(error.get("why")) or _first_line(outcome.get("traceback"), last=True)
        if cause:
            lines += [f"**Cause:** {cause}", ""]
        if error.get("hint"):
            lines += [f"**What to do:** {error['hint']}", ""]
    else:
        lines += [f"**Ran well:** `{bundle['command_line']}` (bundle asked for with --debug-bundle)", ""]
    lines += ["## Replay", "", "```", f"stemsep debug replay {shlex.quote(str(path))}"
              + ("" if _audio_bundled(files) else " --audio PATH  # the inputs are not in the bundle"),
              "```", "", "It rebuilds the env from the bundled lock, checks the model files against the recorded "
              "hashes, reports what differs here, then runs the same job.", ""]
    lines += ["## Versions", "", "| what | version |", "|---|---|"]
    lines += [f"| {what} | {value} |" for what, value in _versions(bundle, files)]
    lines += [""]
    for name, data in files.items():
        if name.endswith("/job.json"):
            lines += [f"## Model {data['model']}", "", f"- runtime: {data['runtime']} ({data['runtime_reason']})",
                      f"- settings: `{_compact(data['settings'])}`",
                      f"- output: {data['output_dir']} ({data['output_format']})"]
            env = files.get(name.replace("job.json", "env.json")) or {}
            lines += [f"- env: {env.get('env_id') or 'not resolved'}", ""]
    inputs = files.get("inputs.json") or []
    if inputs:
        lines += ["## Inputs", "", "| input | size | sha256 | audio |", "|---|---|---|---|"]
        for row in inputs:
            meta = row.get("metadata") or {}
            audio = ", ".join(f"{k} {meta[k]}" for k in ("format", "sample_rate", "channels", "duration_s")
                              if meta.get(k))
            lines.append(f"| {row['path']} | {row.get('size')} | {(row.get('sha256') or '-')[:16]} | {audio or '-'} |")
        lines += [""]
    tail = _stderr_tail(files)
    if tail:
        lines += [f"## Worker stderr (last {_STDERR_LINES} lines; all of it in workers/*/stderr.log)", "", "```",
                  *tail, "```", ""]
    lines += ["## Files", ""]
    lines += [f"- `{name}`: {meaning}" for name, meaning in bundle["files"].items()]
    return "\n".join(lines) + "\n"


def _versions(bundle: dict[str, Any], files: dict[str, Any]) -> list[tuple[str, str]]:
    tool = bundle["stemsep"]
    ours = tool.get("version") or "unknown"
    if tool.get("git_revision"):
        ours += f" (git {tool['git_revision'][:12]}{', with local changes' if tool.get('git_dirty') else ''})"
    machine = files.get("machine.json") or {}
    py, plat = machine.get("python", {}), machine.get("platform", {})
    rows = [("stemsep", ours), ("host Python", f"{py.get('implementation')} {py.get('version')}"),
            ("platform", plat.get("platform", "?"))]
    for name, data in files.items():
        if name.endswith("/worker.json") and data.get("ready"):
            ready = data["ready"]
            rows.append((f"worker {name.split('/')[1]} ({data['runtime']})",
                         f"device {ready.get('device')}; " + ", ".join(f"{k} {v}" for k, v in
                                                                      (ready.get("versions") or {}).items())))
    return rows


def _stderr_tail(files: dict[str, Any]) -> list[str]:
    logs = [data for name, data in files.items() if name.endswith("/stderr.log") and data.strip()]
    return logs[-1].rstrip("\n").splitlines()[-_STDERR_LINES:] if logs else []


def _audio_bundled(files: dict[str, Any]) -> bool:
    rows = files.get("inputs.json") or []
    return bool(rows) and all(row.get("bundled") for row in rows)


def _first_line(text: str | None, last: bool = False) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return (lines[-1] if last else lines[0]) if lines else ""


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)
