"""Manual steps the user confirmed having done, remembered per model under the state dir.

    <state_dir>/manual-steps/<model id>.json   {"model_id": ..., "steps": {<step text>: <confirmed at, UTC>}}

A confirmation names the step's exact text: when the registry rewords a step, it is asked for again.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Iterable

from envmgr.fsutil import atomic_write_json, read_json

_PLAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def record_path(state_dir: Path, model_id: str) -> Path:
    """One file per model; ids that are not plain names are hashed (a model id never becomes a path)."""
    name = model_id if _PLAIN_ID.match(model_id) else "id-" + hashlib.sha256(model_id.encode()).hexdigest()[:24]
    return state_dir / "manual-steps" / f"{name}.json"


def confirmed_steps(state_dir: Path, model_id: str) -> set[str]:
    data = read_json(record_path(state_dir, model_id), {})
    if not isinstance(data, dict) or data.get("model_id") != model_id or not isinstance(data.get("steps"), dict):
        return set()
    return set(data["steps"])


def confirm_steps(state_dir: Path, model_id: str, texts: Iterable[str]) -> None:
    """Add `texts` to the model's confirmations (atomic write)."""
    path = record_path(state_dir, model_id)
    data = read_json(path, {})
    steps = data.get("steps") if isinstance(data, dict) and data.get("model_id") == model_id else None
    steps = dict(steps) if isinstance(steps, dict) else {}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for text in texts:
        steps.setdefault(text, now)
    atomic_write_json(path, {"model_id": model_id, "steps": steps})
