"""Fixtures of the artifact tests: a real HTTP server on 127.0.0.1, a store in a temp dir, entries."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Iterator

import pytest

from envmgr.artifacts import ArtifactEvent, ArtifactStore, DownloadSettings
from registry.model import ModelEntry
from tests.artifacts.httpserver import FileServer

REPO_ROOT = Path(__file__).resolve().parents[2]

# Quick retries so the failure tests stay fast; the logic is the same as with the defaults.
FAST = DownloadSettings(backoff=0.01, backoff_max=0.05, connect_timeout=5, read_timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy configured on the machine must not swallow requests to our loopback server."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"])))


@pytest.fixture
def server() -> Iterator[FileServer]:
    srv = FileServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_root: Path) -> Iterator[ArtifactStore]:
    with ArtifactStore(store_root, settings=FAST) as s:
        yield s


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def entry(model_id: str, *artifacts: dict[str, Any], **fields: Any) -> ModelEntry:
    """A registry entry; the first artifact is the primary, a second one of kind config the config."""
    arts: dict[str, Any] = {"primary": None, "config": None, "additional": []}
    for a in artifacts:
        if a.get("kind", "checkpoint") == "checkpoint" and arts["primary"] is None:
            arts["primary"] = {"kind": "checkpoint", **a}
        elif a.get("kind") == "config" and arts["config"] is None:
            arts["config"] = a
        else:
            arts["additional"].append(a)
    return ModelEntry.model_validate({"id": model_id, "artifacts": arts, **fields})


def files_under(root: Path) -> set[str]:
    """Every file and symlink below `root`, relative, lock files excepted (they are meant to stay)."""
    if not root.exists():
        return set()
    out = set()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            rel = str((Path(dirpath) / name).relative_to(root))
            if not rel.startswith(".locks/"):
                out.add(rel)
    return out


class Events(list):
    """A progress callback that keeps the events."""

    def __call__(self, event: ArtifactEvent) -> None:
        self.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self]
