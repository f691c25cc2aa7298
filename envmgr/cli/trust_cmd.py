"""`stemsep models trust MODEL FILE`: let code from a model's file run, after you have reviewed it: a code
artifact the registry does not pin by sha256, or a checkpoint the registry marks `unsafe_pickle` (full
unpickling runs whatever code the pickle carries; the same consent as `--allow-unsafe-pickle`). Trust is
recorded for that exact content (envmgr/preflight/code_trust.py); `--revoke` takes it back, `--list` shows what you
trusted. A pip requirement that installs from a direct URL or path without a pinned `#sha256=` is trusted the
same way, for its exact text (preflight refuses it otherwise: E_REQUIREMENT_UNTRUSTED).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer


def register(models: typer.Typer) -> None:
    """Adds `trust` to the `models` group."""
    models.command("trust")(trust)


def trust(
    model: str = typer.Argument(..., help="Model id."),
    filename: Optional[str] = typer.Argument(None, help="The code artifact's (or unsafe_pickle checkpoint's) file name "
                                 "(see `stemsep models show`), or a pip requirement of the model that installs "
                                 "from a direct URL or path, as the registry writes it."),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="The sha256 you reviewed: refuse if the stored file "
                                         "differs."),
    revoke: bool = typer.Option(False, "--revoke", help="Take back the trust in FILENAME."),
    list_only: bool = typer.Option(False, "--list", help="Show the model's files that run code when loaded, and "
                                   "your trust in them."),
    registry: Optional[list[Path]] = typer.Option(None, "--registry", help="Extra registry file; repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Trust a model's code artifact, or allow full unpickling of its unsafe_pickle checkpoint (its current
    content in the model store), so workers may run it."""
    from envmgr.preflight import code_trust
    from envmgr.artifacts import ArtifactStore
    from envmgr.config import load_config
    from envmgr.catalog.registry_files import load

    config = load_config()
    entry = load(registry or ()).get(model)
    code = [a for a in entry.artifacts.all() if code_trust.runs_code(a)]
    with ArtifactStore(config.model_store) as store:
        paths = {a.filename: store.path_for(entry, a) for a in code}
    if list_only or filename is None:
        trusted = code_trust.trusted_files(config.state_dir, entry.id)
        rows = [{"filename": a.filename, "kind": a.kind, "model_type": a.model_type, "class_name": a.class_name,
                 "pinned_sha256": a.sha256, "trusted": trusted.get(a.filename), "path": str(paths[a.filename])}
                for a in code]
        if as_json:
            _print(rows, True)
        for r in [] if as_json else rows:
            print(f"{r['filename']}: " + _trust_state(r))
        if not rows and not as_json:
            print(f"{entry.id} ships no code artifacts and no checkpoint that needs full unpickling")
        return
    if revoke:
        done = code_trust.revoke(config.state_dir, entry.id, filename)
        _print({"filename": filename, "revoked": done}, as_json,
               f"revoked trust in {filename}" if done else f"{filename} was not trusted")
        return
    record = (code_trust.trust_requirement(config.state_dir, entry, filename) if filename not in paths else None) \
        or code_trust.trust(config.state_dir, entry, filename, paths.get(filename, Path(filename)), sha256)
    _print({"filename": filename, **record}, as_json,
           f"trusted {filename} of {entry.id}: sha256 {record['sha256']} ({record['path']})")


def _trust_state(row: dict) -> str:
    mine = row["trusted"]
    if row["kind"] != "code":  # an unsafe_pickle checkpoint: a registry pin names the file, it does not allow it
        return (f"full unpickling allowed by you (sha256 {mine['sha256']}, {mine['trusted_at']})" if mine else
                "needs full unpickling, not allowed: the model is blocked until you allow it")
    return (f"pinned by the registry (sha256 {row['pinned_sha256']})" if row["pinned_sha256"] else
            f"trusted by you (sha256 {mine['sha256']}, {mine['trusted_at']})" if mine else
            "neither pinned nor trusted: it will not run")


def _print(data: object, as_json: bool, text: str = "") -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        print(text)
