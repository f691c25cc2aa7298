"""The content cache of recipe steps: a step's stems on one input, found again by what made them.

A key is the sha256 of a canonical JSON of everything that decides the step's output (envmgr/jobs/recipe_run.py
builds it): the sha256 of every input file, and for a `separate` step the model id, runtime, its artifacts'
sha256, the native settings and the env id (it is derived from the env's lock); for an audio operation its name
and resolved params; and the output format. An entry is a folder `<root>/<key[:2]>/<key>/` holding the stem
files and `entry.json` (stem -> file, sha256, bytes); it appears whole (built in a temp folder, renamed into
place) or not at all. A hit refreshes the entry's mtime: pruning removes the least recently used entries first
until the cache fits its size limit (config `recipe_cache_limit`; `stemsep cache prune`).
Stems enter and leave by hardlink where the filesystem allows (no copy of the audio), else by copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENTRY_FILE = "entry.json"
_HASH_BLOCK = 1 << 20


def content_key(facts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@dataclass(frozen=True)
class CachedStem:
    path: Path
    sha256: str


@dataclass(frozen=True)
class PruneReport:
    removed: int
    freed: int
    kept: int
    size: int


class StepCache:
    def __init__(self, root: Path, limit: int) -> None:
        self.root = root
        self.limit = limit

    def _folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str) -> dict[str, CachedStem] | None:
        """stem -> file of the entry `key`, or None when there is none (or it is incomplete)."""
        folder = self._folder(key)
        try:
            entry = json.loads((folder / ENTRY_FILE).read_text())
            stems = {name: CachedStem(folder / info["file"], info["sha256"]) for name, info in entry["stems"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not all(s.path.is_file() for s in stems.values()):
            return None
        try:
            os.utime(folder / ENTRY_FILE)  # recently used: pruned last
        except OSError:
            pass
        return stems

    def put(self, key: str, stems: dict[str, tuple[Path, str]], facts: dict[str, Any]) -> dict[str, CachedStem]:
        """Store `stems` (stem -> (file, its sha256)) under `key`; returns the entry's files. An entry another
        run stored meanwhile is kept (same key, same content)."""
        final = self._folder(key)
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            record: dict[str, Any] = {"stems": {}, "facts": facts, "created": time.time()}
            for i, (name, (path, digest)) in enumerate(sorted(stems.items())):
                file = f"{i}{path.suffix}"
                link_or_copy(path, tmp / file)
                record["stems"][name] = {"file": file, "sha256": digest, "bytes": (tmp / file).stat().st_size}
            (tmp / ENTRY_FILE).write_text(json.dumps(record, indent=1, default=str))
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:  # there already (another run): keep that one
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        got = self.get(key)
        assert got is not None, f"cache entry {final} was not stored"
        return got

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, folder) of every entry."""
        out: list[tuple[float, int, Path]] = []
        if not self.root.is_dir():
            return out
        for shard in self.root.iterdir():
            if not shard.is_dir() or shard.name.startswith("."):
                continue
            for folder in shard.iterdir():
                try:
                    used = (folder / ENTRY_FILE).stat().st_mtime
                except OSError:
                    used = 0.0  # incomplete: pruned first
                size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                out.append((used, size, folder))
        return out

    def prune(self, limit: int | None = None) -> PruneReport:
        """Remove the least recently used entries until the cache holds at most `limit` bytes (default: its
        configured limit); leftovers of interrupted stores go too."""
        limit = self.limit if limit is None else limit
        if self.root.is_dir():
            for leftover in self.root.glob(".tmp-*"):
                shutil.rmtree(leftover, ignore_errors=True)
        entries = sorted(self.entries())
        size = sum(e[1] for e in entries)
        removed = freed = 0
        for _used, bytes_, folder in entries:
            if size <= limit:
                break
            shutil.rmtree(folder, ignore_errors=True)
            size -= bytes_
            freed += bytes_
            removed += 1
        return PruneReport(removed, freed, len(entries) - removed, size)
