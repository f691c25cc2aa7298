"""Which envs `stemsep env prune` removes: broken ones, then by the user's criteria, least recently used first."""

from __future__ import annotations

import time

from envmgr.sizes import disk_usage
from envmgr.envs.store import EnvRecord


def _recency(record: EnvRecord) -> float:
    """Last use; else when it was built (the metadata, or the dir's mtime for an env without it)."""
    recent = record.last_used or record.built_at
    if recent:
        return recent
    try:
        return record.path.stat().st_mtime
    except OSError:
        return 0.0


def choose_prunable(records: list[EnvRecord], *, unused: bool = False, older_than_days: float | None = None,
                    max_size: int | None = None, now: float | None = None) -> list[dict]:
    now = now or time.time()
    chosen: dict[str, str] = {}
    for record in sorted(records, key=_recency):
        if record.state != "ready":
            chosen[record.id] = f"broken: {record.problem}"
        elif unused and not record.last_used:
            chosen[record.id] = "never used"
        elif older_than_days is not None and now - _recency(record) > older_than_days * 86400:
            chosen[record.id] = f"not used for {(now - _recency(record)) / 86400:.1f} days"
    sizes = {r.id: disk_usage([r.path]) for r in records}
    if max_size is not None:
        keep = [r for r in sorted(records, key=_recency) if r.id not in chosen]
        # Files shared between envs count once, as on disk.
        while keep and disk_usage([r.path for r in keep]) > max_size:
            victim = keep.pop(0)
            chosen[victim.id] = f"over the size cap (least recently used: {time.strftime('%Y-%m-%d', time.localtime(_recency(victim)))})"
    order = {r.id: i for i, r in enumerate(sorted(records, key=_recency))}
    return [{"id": i, "reason": why, "size_bytes": sizes.get(i)} for i, why in sorted(chosen.items(), key=lambda kv: order[kv[0]])]
