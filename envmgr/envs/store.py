"""Layout of the env store and the bookkeeping beside the envs (never inside a finished env).

    <env_store>/<env-id>/                 a finished env (venv + stemsep-env.json, stemsep-lock.txt,
                                          stemsep-stamp.json + the marker, written last)
    <env_store>/.tmp/<env-id>.<pid>.<n>/  builds in progress; leftovers of dead builders are removed
    <env_store>/.locks/<env-id>.lock      per-env file lock (check, lock, check again)
    <env_store>/.usage/<env-id>.json      models served, last use
    <log_dir>/envs.jsonl                  one line per build (what, how long, which builder)
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envmgr.fsutil import atomic_write_json, ensure_dir, read_json, store_error
from envmgr.envs.file_stamp import stamp_problem
from envmgr.envs.health import quick_check

if TYPE_CHECKING:
    from filelock import FileLock

MARKER = ".stemsep-ready"
META = "stemsep-env.json"
LOCK_COPY = "stemsep-lock.txt"


@dataclass
class EnvRecord:
    """What the store knows about one env, for `env list` / `env show` / prune."""

    id: str
    path: Path
    state: str  # ready | broken
    problem: str | None
    meta: dict
    usage: dict

    @property
    def runtime(self) -> str:
        return self.meta.get("runtime") or self.id.rsplit("-", 1)[0]

    @property
    def models(self) -> list[str]:
        return sorted(self.usage.get("models", {}))

    @property
    def last_used(self) -> float | None:
        return self.usage.get("last_used")

    @property
    def built_at(self) -> float | None:
        return self.meta.get("built_at")


class Store:
    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root = root
        self.log_dir = log_dir

    def env_dir(self, env_id: str) -> Path:
        return self.root / env_id

    def file_lock(self, env_id: str) -> FileLock:
        return _file_lock(ensure_dir(self.root / ".locks") / f"{env_id}.lock")

    def new_temp_dir(self, env_id: str) -> Path:
        tmp_root = ensure_dir(self.root / ".tmp")
        return tmp_root / f"{env_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"

    def problem(self, env_id: str) -> str | None:
        """None when the env is finished and usable; else why not (cheap: stats only, no process, no hashing)."""
        path = self.env_dir(env_id)
        if not path.exists():
            return "not built"
        if not (path / MARKER).is_file():
            return "its build never finished (no marker)"
        return quick_check(path) or stamp_problem(path)

    def repairable(self, env_id: str) -> bool:
        """Whether the env's one problem is changed files (its import stamp): repaired in place, not rebuilt."""
        path = self.env_dir(env_id)
        return (path / MARKER).is_file() and quick_check(path) is None and stamp_problem(path) is not None

    def clear_leftovers(self, env_id: str) -> None:
        """Remove dead builders' temp dirs and a broken env of this id. Call with the env's lock held."""
        tmp_root = self.root / ".tmp"
        if tmp_root.is_dir():
            for leftover in tmp_root.glob(f"{env_id}.*"):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
        path = self.env_dir(env_id)
        if path.exists() or path.is_symlink():
            self._discard(path)

    def install(self, tmp: Path, env_id: str) -> Path:
        """Rename a finished temp build into place (atomic on one filesystem)."""
        final = self.env_dir(env_id)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            raise store_error(final, exc, "move the new env into") from exc
        return final

    def remove(self, env_id: str) -> None:
        with self.file_lock(env_id):
            self._discard(self.env_dir(env_id))
            (self.root / ".usage" / f"{env_id}.json").unlink(missing_ok=True)

    def _discard(self, path: Path) -> None:
        # Rename first so a half-deleted env is never seen under its id, then delete.
        trash = ensure_dir(self.root / ".trash") / f"{path.name}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except OSError as exc:
            raise store_error(path, exc, "remove") from exc
        shutil.rmtree(trash, ignore_errors=True)

    def record_use(self, env_id: str, model_id: str | None, when: float | None = None) -> None:
        when = when or time.time()
        path = self.root / ".usage" / f"{env_id}.json"
        ensure_dir(path.parent)
        with _file_lock(path.with_suffix(".lock")):
            usage = read_json(path, {}) or {}
            usage["last_used"] = when
            usage["uses"] = int(usage.get("uses", 0)) + 1
            if model_id:
                usage.setdefault("models", {})[model_id] = when
            atomic_write_json(path, usage)

    def add_models(self, env_id: str, model_ids: list[str]) -> None:
        """Note which models an env serves (setup), without counting it as a use."""
        path = self.root / ".usage" / f"{env_id}.json"
        ensure_dir(path.parent)
        with _file_lock(path.with_suffix(".lock")):
            usage = read_json(path, {}) or {}
            models = usage.setdefault("models", {})
            for model_id in model_ids:
                models.setdefault(model_id, None)
            atomic_write_json(path, usage)

    def clear_debris(self) -> None:
        """Temp dirs of dead builders and half-deleted envs (for prune; holds each env's lock)."""
        for sub in (".tmp", ".trash"):
            folder = self.root / sub
            if not folder.is_dir():
                continue
            for item in folder.iterdir():
                env_id = item.name.split(".", 1)[0]
                with self.file_lock(env_id):  # a live builder holds this lock: its temp dir stays
                    if item.is_dir():
                        shutil.rmtree(item, ignore_errors=True)
                    else:
                        item.unlink(missing_ok=True)

    def log_build(self, entry: dict) -> None:
        """Append one build record (JSON line); small appends are atomic enough for a log."""
        path = ensure_dir(self.log_dir) / "envs.jsonl"
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
        except OSError as exc:
            raise store_error(path, exc) from exc

    def builds(self) -> list[dict]:
        path = self.log_dir / "envs.jsonl"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def records(self) -> list[EnvRecord]:
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            out.append(self.record(path.name))
        return out

    def record(self, env_id: str) -> EnvRecord:
        path = self.env_dir(env_id)
        problem = self.problem(env_id)
        return EnvRecord(id=env_id, path=path, state="ready" if problem is None else "broken", problem=problem,
                         meta=read_json(path / META, {}) or {},
                         usage=read_json(self.root / ".usage" / f"{env_id}.json", {}) or {})

    def find(self, prefix: str) -> list[str]:
        """Env ids equal to or starting with `prefix` (ids are long; a unique prefix is enough)."""
        ids = [r.name for r in self.root.iterdir() if not r.name.startswith(".")] if self.root.is_dir() else []
        return [i for i in ids if i == prefix] or [i for i in ids if i.startswith(prefix)]


def _file_lock(path: Path) -> FileLock:
    from filelock import FileLock  # here, not at the top: a warm `separate` takes its one lock after its first progress

    return FileLock(str(path))
