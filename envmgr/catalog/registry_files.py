"""Which registry files the CLI reads, and where the listing index is cached.

Kept tiny and free of heavy imports (`stemsep models list` runs through here): the packaged registry
(or `STEMSEP_REGISTRY`, os.pathsep-separated files that replace it, e.g. a fork of the data or a test
fixture), then the user's overlays in `<config dir>/registries/*.json`, then `--registry` files.
The config dir and the cache dir (the remembered verdict, the listing index) are envmgr.config's, decided
there once for every command (STEMSEP_HOME, STEMSEP_CACHE_DIR, `cache_dir` in config.toml, platformdirs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from envmgr.config import config_dir, directory, setting
from registry.loader import PACKAGED_REGISTRY, overlay_files


def base_registry_files() -> list[Path]:
    override = os.environ.get("STEMSEP_REGISTRY")
    if override:
        return [Path(p).expanduser() for p in override.split(os.pathsep) if p]
    return [PACKAGED_REGISTRY]


def overlay_registry_files(extra: Sequence[Path] = ()) -> list[Path]:
    return overlay_files(config_dir()) + [Path(p) for p in extra]


def load(extra: Sequence[Path] = ()) -> Any:
    """The registry the CLI works with (a `registry.loader.Registry`). Its semantic validation runs once
    per change of the files; later loads reuse the remembered clean verdict. A broken user overlay is left
    out and reported on stderr (unless `registry_strict`: then it raises, as it always did)."""
    from envmgr.catalog.model_index import VERDICT_NAME
    from registry.loader import load_registry

    base, overlays = registry_files(extra)
    registry = load_registry(base, overlays, verdict_cache=directory("cache_dir") / VERDICT_NAME,
                             isolate=isolated_overlays(overlays))
    report_broken(registry.broken)
    return registry


def isolated_overlays(overlays: Sequence[Path]) -> list[Path]:
    """The overlays a command runs without when they are broken: the user's `<config dir>/registries/*.json`,
    unless the `registry_strict` setting says otherwise. A file given on the command line (`--registry`) or in
    STEMSEP_REGISTRY was asked for by name: broken, it stops the command."""
    if setting("registry_strict"):
        return []
    mine = set(overlay_files(config_dir()))
    return [p for p in overlays if p in mine]


_REPORTED: set[str] = set()  # overlays already reported by this process


def report_broken(broken: Sequence[Any]) -> None:
    """One warning per broken overlay (a `registry.loader.BrokenOverlay`) per process, on stderr: stdout may be
    a command's JSON."""
    import sys

    for item in broken:
        if str(item.path) not in _REPORTED:
            _REPORTED.add(str(item.path))
            sys.stderr.write(f"warning: {item.warning()}\n")


def registry_files(extra: Sequence[Path] = ()) -> tuple[list[Path], list[Path]]:
    """(base files, overlay files). Without packaged data yet, the first overlay stands in as the base."""
    base, overlays = base_registry_files(), overlay_registry_files(extra)
    if base == [PACKAGED_REGISTRY] and not PACKAGED_REGISTRY.exists() and overlays:
        return overlays[:1], overlays[1:]
    return base, overlays


def listing(extra: Sequence[Path] = ()) -> tuple[list[dict[str, Any]], list[Any]]:
    """(one row per model, broken overlays left out) from the cached listing index (envmgr/catalog/model_index.py):
    what `models list` and the servers' catalogs read, without validating the registry when the index is warm."""
    from envmgr.catalog.model_index import load_listing

    paths, overlays = registry_files(extra)
    return load_listing(paths, overlays, directory("cache_dir"), isolate=isolated_overlays(overlays))
