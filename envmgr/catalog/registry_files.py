"""Which registry files the CLI reads, and where the listing index is cached.

Kept tiny and free of heavy imports (`stemsep models list` runs through here): the packaged registry
(or `STEMSEP_REGISTRY`, os.pathsep-separated files that replace it, e.g. a fork of the data or a test
fixture), then the user's overlays in `<config dir>/registries/*.json`, then `--registry` files.
Dirs follow envmgr.config: `$STEMSEP_HOME/config` and `/cache` when STEMSEP_HOME is set, else the
platform's dirs; `STEMSEP_CACHE_DIR` moves the cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from registry.loader import PACKAGED_REGISTRY, overlay_files

APP_NAME = "stemsep"


def _home() -> Path | None:
    home = os.environ.get("STEMSEP_HOME")
    return Path(home).expanduser() if home else None


def config_dir() -> Path:
    home = _home()
    if home:
        return home / "config"
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    if os.environ.get("STEMSEP_CACHE_DIR"):
        return Path(os.environ["STEMSEP_CACHE_DIR"]).expanduser()
    home = _home()
    if home:
        return home / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def base_registry_files() -> list[Path]:
    override = os.environ.get("STEMSEP_REGISTRY")
    if override:
        return [Path(p).expanduser() for p in override.split(os.pathsep) if p]
    return [PACKAGED_REGISTRY]


def overlay_registry_files(extra: Sequence[Path] = ()) -> list[Path]:
    return overlay_files(config_dir()) + [Path(p) for p in extra]


def load(extra: Sequence[Path] = ()) -> Any:
    """The registry the CLI works with (a `registry.loader.Registry`). Its semantic validation runs once
    per change of the files; later loads reuse the remembered clean verdict."""
    from envmgr.catalog.model_index import VERDICT_NAME
    from registry.loader import load_registry

    base, overlays = registry_files(extra)
    return load_registry(base, overlays, verdict_cache=cache_dir() / VERDICT_NAME)


def registry_files(extra: Sequence[Path] = ()) -> tuple[list[Path], list[Path]]:
    """(base files, overlay files). Without packaged data yet, the first overlay stands in as the base."""
    base, overlays = base_registry_files(), overlay_registry_files(extra)
    if base == [PACKAGED_REGISTRY] and not PACKAGED_REGISTRY.exists() and overlays:
        return overlays[:1], overlays[1:]
    return base, overlays
