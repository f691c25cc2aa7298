"""Which envs prune picks: broken first, then never used / not used for N days / over a size cap, least
recently used first, with files shared between envs (hardlinks) counted once."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from envmgr.envs.prune import choose_prunable
from envmgr.sizes import disk_usage, parse_size
from envmgr.envs.store import MARKER, Store

DAY = 86400.0


def fake_env(store: Store, env_id: str, *, size: int, last_used: float | None, shared: Path | None = None) -> None:
    """A finished env on disk: marker, pyvenv.cfg, a working interpreter link, `size` bytes of its own."""
    path = store.env_dir(env_id)
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").symlink_to(sys.executable)
    (path / "pyvenv.cfg").write_text("home = /usr\n")
    (path / MARKER).write_text(env_id)
    (path / "payload.bin").write_bytes(os.urandom(size))
    if shared is not None:
        os.link(shared, path / "shared.bin")
    if last_used is not None:
        store.record_use(env_id, f"model-of-{env_id}", when=last_used)


def test_prune_criteria_and_lru_order(tmp_path):
    store = Store(tmp_path / "envs", tmp_path / "logs")
    now = time.time()
    shared = tmp_path / "cache-file.bin"
    shared.write_bytes(os.urandom(4 << 20))
    fake_env(store, "stemsep-legacy-a", size=1 << 20, last_used=now - 40 * DAY, shared=shared)
    fake_env(store, "stemsep-legacy-b", size=1 << 20, last_used=now - 10 * DAY, shared=shared)
    fake_env(store, "stemsep-legacy-c", size=1 << 20, last_used=now - 1 * DAY, shared=shared)
    fake_env(store, "stemsep-legacy-new", size=1 << 20, last_used=None)
    records = store.records()
    assert all(r.state == "ready" for r in records)

    assert [c["id"] for c in choose_prunable(records, unused=True)] == ["stemsep-legacy-new"]
    assert [c["id"] for c in choose_prunable(records, older_than_days=7, now=now)] == \
        ["stemsep-legacy-a", "stemsep-legacy-b"]
    # The shared 4 MiB file counts once: all four envs take ~8 MiB together, not ~20 MiB.
    together = disk_usage([r.path for r in records])
    assert together < 9 << 20
    # A 6.5 MiB cap evicts least recently used first ("new" was never used but was just built: it is
    # more recent than a use 40 days ago) until what is left fits.
    capped = choose_prunable(records, max_size=parse_size("6.5M"), now=now)
    assert [c["id"] for c in capped] == ["stemsep-legacy-a", "stemsep-legacy-b"]
    assert all(c["reason"].startswith("over the size cap") for c in capped)


def test_broken_env_is_always_chosen(tmp_path):
    store = Store(tmp_path / "envs", tmp_path / "logs")
    fake_env(store, "stemsep-legacy-ok", size=1024, last_used=time.time())
    fake_env(store, "stemsep-legacy-bad", size=1024, last_used=time.time())
    (store.env_dir("stemsep-legacy-bad") / "bin" / "python").unlink()
    chosen = choose_prunable(store.records())
    assert [c["id"] for c in chosen] == ["stemsep-legacy-bad"] and "interpreter" in chosen[0]["reason"]
