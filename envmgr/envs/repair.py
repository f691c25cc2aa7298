"""Repairing a damaged env in place: the damaged packages are evicted from uv's cache, installed afresh at
exactly their locked versions, and the env is verified again.

Eviction comes first because a hardlinked env shares its files with uv's cache: an edit made in the env is an
edit of the cache, and reinstalling from it would link the same damaged file back. Evicted, a package comes
back from its source (index or find-links), its wheel checked against the lock's hash. The marker is removed
for the repair and written back only once the env verifies, so a repair cut short leaves an env that is
rebuilt on its next use, never one called ready.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envmgr.config import MachineConfig
from envmgr.envs import uvtool
from envmgr.envs.builder import reinstall_with_pip, sync_with_uv
from envmgr.envs.file_stamp import STAMP, restamp
from envmgr.envs.lock import Lock
from envmgr.envs.request import EnvRequest
from envmgr.envs.store import MARKER
from envmgr.envs.verify import Verification, verify
from envmgr.errors import EnvBuildError, EnvDamagedError
from envmgr.fsutil import atomic_write_text, ensure_dir

Progress = Callable[[str, str], None]


@dataclass
class Repair:
    before: Verification
    after: Verification | None  # None: nothing was damaged
    reinstalled: list[str]
    evicted_from: list[str]  # uv cache dirs the damaged packages were evicted from

    def to_dict(self) -> dict:
        return {"id": self.before.env_id, "before": self.before.to_dict(),
                "after": self.after.to_dict() if self.after else None, "reinstalled": self.reinstalled,
                "evicted_from": self.evicted_from}


def repair_env(env_dir: Path, env_id: str, req: EnvRequest, lock: Lock, config: MachineConfig, *, builder: str,
               uv_bin: str | None, cache_dirs: list[Path], scratch_root: Path, report: Progress,
               before: Verification | None = None, in_build: bool = False) -> Repair:
    """Repair the env at env_dir (call with its file lock held). `before`: a verification already made (a
    sizes-only one is checked again by sizes). `in_build`: a new env in its temp dir, whose own files, stamp and
    marker the build writes afterwards."""
    if before is None:
        report("verify", "hashing every installed file")
        before = verify(env_dir, env_id, locked=lock.packages)
    stray = [o for o in before.own if not o.startswith((MARKER, STAMP))]  # those two are written anew below
    if stray and not in_build:
        raise EnvDamagedError(f"env {env_id} cannot be repaired in place: StemSep's own files are damaged",
                              why="; ".join(stray), hint=f"remove it (`stemsep env rm {env_id}`) and rebuild it "
                              "(`stemsep setup`, or the next `stemsep separate` that needs it)")
    names = tuple(before.damaged)
    evicted: list[str] = []
    after = None
    if names:
        (env_dir / MARKER).unlink(missing_ok=True)
        drop_bytecode(env_dir, [f for d in before.packages for f in d.modified + d.missing])
        with tempfile.TemporaryDirectory(dir=ensure_dir(scratch_root), prefix=f"{env_id}.repair-") as tmp:
            scratch = Path(tmp)
            if builder == "uv":
                if uv_bin is None:
                    raise EnvBuildError(f"env {env_id} was built with uv, which is not available now",
                                        why="its repair reinstalls packages with uv from uv's cache",
                                        hint="set use_uv to true (`stemsep env config set use_uv true`), or "
                                        f"`stemsep env rm {env_id}` and rebuild it")
                report("evict", f"evicting {', '.join(names)} from uv's cache")
                evicted = evict_from_uv_cache(uv_bin, names, cache_dirs, config)
                report("reinstall", f"uv pip sync --reinstall-package {' '.join(names)}")
                lock_file = scratch / "lock.txt"
                lock_file.write_text(lock.text)
                sync_with_uv(uv_bin, env_dir, lock_file, req, config, scratch, reinstall=names)
            else:
                report("reinstall", f"pip install --force-reinstall {' '.join(names)}")
                reinstall_with_pip(env_dir, lock, names, req, config, scratch)
        report("verify", "verifying the repaired env")
        after = verify(env_dir, env_id, quick=not before.hashed, locked=lock.packages)
        if after.packages:
            raise EnvDamagedError(f"env {env_id} is still damaged after its repair", why=after.summary(),
                                  hint=f"remove it (`stemsep env rm {env_id}`), clean uv's cache of those "
                                  "packages (`uv cache clean NAME`) and rebuild it (`stemsep setup`)")
    if not in_build:
        restamp(env_dir)  # a reinstalled file has a new mtime; a touched one too
        atomic_write_text(env_dir / MARKER, env_id + "\n")
    return Repair(before, after, list(names), evicted)


def drop_bytecode(env_dir: Path, paths: list[str]) -> None:
    """Remove the cached bytecode of damaged sources. Python trusts a .pyc whose recorded source mtime (whole
    seconds) and size match: a same-size edit repaired within the same second would otherwise go on running the
    edited code, and the uninstall leaves bytecode no RECORD lists."""
    for rel in paths:
        source = env_dir / rel
        if source.suffix == ".py":
            for cached in (source.parent / "__pycache__").glob(f"{source.stem}.*.pyc"):
                cached.unlink(missing_ok=True)


def evict_from_uv_cache(uv_bin: str, names: tuple[str, ...], cache_dirs: list[Path],
                        config: MachineConfig) -> list[str]:
    """`uv cache clean NAME...` in each cache dir that exists (the one the env was linked from, and the one a
    reinstall reads): a hardlinked damaged file is never linked back."""
    done: list[str] = []
    for cache in dict.fromkeys(cache_dirs):
        if not cache.is_dir():
            continue
        env = uvtool.uv_env(config)
        env["UV_CACHE_DIR"] = str(cache)
        proc = uvtool.run([uv_bin, "cache", "clean", *names], env=env)
        if proc.returncode != 0:
            raise EnvBuildError(f"cannot evict {', '.join(names)} from uv's cache {cache}",
                                why=(proc.stderr or proc.stdout).strip()[-2000:],
                                hint="another uv process may hold the cache; retry, or run "
                                f"`UV_CACHE_DIR={cache} uv cache clean {' '.join(names)}` yourself")
        done.append(str(cache))
    return done
