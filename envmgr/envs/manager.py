"""Managed envs: a model's needs -> an env request -> a lock -> an env id -> a built, healthy env.

The env id is a hash of the resolved lock plus the interpreter and platform (docs/DESIGN.md §5), so identical
requirement sets share one env and conflicting ones get their own. Building is safe under concurrency
and crashes: per-env file lock (check, lock, check again), build in a temp dir, health check, marker
written last, atomic rename; anything without the marker is never used and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from envmgr.config import MachineConfig, load_config
from envmgr.envs.builder import Progress, build_with_uv, build_with_virtualenv, link_mode
from envmgr.envs.file_stamp import stamp_paths, write_stamp
from envmgr.envs.health import ImportCheck, env_python, lock_mismatches, probe
from envmgr.envs.interpreters import Interpreter, find_interpreter
from envmgr.envs.lock import Lock, cached_lock, resolve
from envmgr.envs.repair import Repair, repair_env
from envmgr.envs.request import EnvRequest
from envmgr.envs.store import LOCK_COPY, MARKER, META, Store
from envmgr.envs.torch_variant import variant_problems
from envmgr.envs.uvtool import find_uv
from envmgr.envs.verify import Verification, verify
from envmgr.errors import EnvBuildError, EnvDamagedError, UnresolvableError
from envmgr.fsutil import atomic_write_json, atomic_write_text, ensure_dir, read_json

# progress(stage, message); stages in order: interpreter, resolve, venv, sync, health, marker, rename, ready


@dataclass(frozen=True)
class Env:
    id: str
    path: Path
    python: Path  # the env's interpreter: spawn `<python> -m runtimes.worker` with it
    lock: Lock
    versions: dict[str, str]  # "python" and every installed distribution -> version
    runtime: str = ""
    torch: dict | None = None  # {"version", "cuda", "hip"} from torch's version file


class EnvManager:
    def __init__(self, config: MachineConfig | None = None) -> None:
        self.config = config or load_config()
        self.store = Store(self.config.env_store, self.config.log_dir)

    # -- resolution -------------------------------------------------------------------------------
    def interpreter(self, req: EnvRequest, *, refresh: bool = False) -> Interpreter:
        return find_interpreter(req.python, self.config, refresh=refresh)

    def lock(self, req: EnvRequest, *, refresh: bool = False) -> Lock:
        """The lock for `req` (cached: a warm call spawns no process)."""
        return resolve(req, self.interpreter(req, refresh=refresh), self.config, refresh=refresh)

    def cached_lock(self, req: EnvRequest) -> Lock | None:
        return cached_lock(req, self.interpreter(req), self.config)

    def env_id(self, req: EnvRequest) -> str:
        return env_id_for(req.runtime, self.lock(req))

    # -- state --------------------------------------------------------------------------------------
    def status(self, req: EnvRequest) -> str:
        """ready | needs_build | broken | unresolvable. Resolves when no lock is cached; imports nothing heavy."""
        try:
            env_id = self.env_id(req)
        except UnresolvableError:
            return "unresolvable"
        return self._state(env_id)

    def cached_status(self, req: EnvRequest) -> tuple[str | None, str]:
        """(env id, ready | needs_build | broken) from the cached lock alone, or (None, "not_resolved") when
        none is cached: never resolves (a page view must not run uv). The interpreter lookup is remembered."""
        lock = self.cached_lock(req)
        if lock is None:
            return None, "not_resolved"
        env_id = env_id_for(req.runtime, lock)
        return env_id, self._state(env_id)

    def _state(self, env_id: str) -> str:
        problem = self.store.problem(env_id)  # the store's cheap check: stats only
        if problem is None:
            return "ready"
        return "needs_build" if problem == "not built" else "broken"

    def ensure(self, req: EnvRequest, progress: Progress | None = None, *, lock: Lock | None = None) -> Env:
        """A ready env for `req`, building (or rebuilding a broken one) if needed. `lock`: build exactly this
        lock (a debug bundle's, for a replay) instead of the request's resolved one; the env id derives from
        it, so the same lock on the same interpreter is the same env."""
        report = progress or (lambda stage, message: None)
        if lock is None:
            report("interpreter", f"Python {req.python}")
            interp = self.interpreter(req)
            report("resolve", f"{req.runtime}: lock")
            lock = resolve(req, interp, self.config)
        env_id = env_id_for(req.runtime, lock)
        if self.store.problem(env_id) is None:
            return self._open(env_id, lock, report)
        ensure_dir(self.config.env_store)
        with self.store.file_lock(env_id):
            if self.store.problem(env_id) is None:  # another process built it while we waited
                return self._open(env_id, lock, report)
            if self.store.repairable(env_id):  # files changed since the build: reinstall those packages
                try:
                    self._repair(env_id, req, lock, report)
                    return self._open(env_id, lock, report)
                except EnvDamagedError:
                    pass  # what a repair cannot fix, a rebuild from the evicted cache does
            self.store.clear_leftovers(env_id)
            self._build(env_id, req, lock, report)
        return self._open(env_id, lock, report)

    def verify(self, env_id: str, *, quick: bool = False, digests: dict | None = None) -> Verification:
        """Every installed file of a stored env against its RECORD (envmgr/envs/verify.py); reads only."""
        return verify(self.store.env_dir(env_id), env_id, quick=quick, digests=digests)

    def repair(self, env_id: str, progress: Progress | None = None) -> Repair:
        """Verify a stored env and reinstall its damaged packages from verified sources (envmgr/envs/repair.py);
        its request and lock come from the env's own records."""
        report = progress or (lambda stage, message: None)
        path = self.store.env_dir(env_id)
        with self.store.file_lock(env_id):
            meta = read_json(path / META, None)
            try:
                text = (path / LOCK_COPY).read_text(encoding="utf-8")
                req = EnvRequest.from_dict(meta["request"])
                lock = Lock(text, Interpreter(**meta["interpreter"]), "", 0.0)
            except (OSError, KeyError, TypeError, ValueError) as exc:
                raise EnvDamagedError(f"env {env_id} cannot be repaired in place: its own records are unreadable",
                                      why=f"{META} / {LOCK_COPY}: {type(exc).__name__}: {exc}",
                                      hint=f"remove it (`stemsep env rm {env_id}`) and rebuild it "
                                      "(`stemsep setup`)") from exc
            return self._repair(env_id, req, lock, report)

    def _repair(self, env_id: str, req: EnvRequest, lock: Lock, report: Progress) -> Repair:
        path = self.store.env_dir(env_id)
        meta = read_json(path / META, {}) or {}
        caches = [Path(meta["uv_cache_dir"])] if meta.get("uv_cache_dir") else []
        result = repair_env(path, env_id, req, lock, self.config, builder=meta.get("builder", "uv"),
                            uv_bin=find_uv(self.config), cache_dirs=[*caches, self.config.uv_cache_dir],
                            scratch_root=self.config.env_store / ".tmp", report=report)
        self.store.log_build({"event": "repaired" if result.reinstalled else "verified", "env_id": env_id,
                              "runtime": req.runtime, "packages": result.reinstalled, "pid": os.getpid(),
                              "at": time.time()})
        return result

    def record_use(self, env_id: str, model_id: str | None = None) -> None:
        self.store.record_use(env_id, model_id)

    # -- building -----------------------------------------------------------------------------------
    def _build(self, env_id: str, req: EnvRequest, lock: Lock, report: Progress) -> None:
        started = time.time()
        ensure_dir(self.config.uv_cache_dir)
        tmp = self.store.new_temp_dir(env_id)
        import_check = ImportCheck(tmp, req.health_modules)
        lock_file = tmp.with_name(tmp.name + ".lock.txt")
        try:
            atomic_write_text(lock_file, lock.text)
            uv_bin = find_uv(self.config)
            if uv_bin:
                builder = build_with_uv(uv_bin, tmp, lock_file, lock, req, self.config, report,
                                        on_partial=import_check.start)
            else:
                builder = build_with_virtualenv(tmp, lock_file, lock, req, self.config, report)
            libraries = None
            if uv_bin:
                repaired, libraries = self._undamaged_from_cache(tmp, env_id, req, lock, uv_bin)
                if repaired:
                    import_check.stop()  # it imported the damaged files: the health check probes the repaired env
            report("health", "import check")
            early = import_check.finish()
            found = self._health(tmp, req, lock, early)
            meta = {"id": env_id, "runtime": req.runtime, "request": req.as_dict(), "lock_digest": lock.digest,
                    "interpreter": lock.interpreter.__dict__, "python": found["python"], "torch": found["torch"],
                    "versions": found["dists"], "builder": builder, "built_at": time.time(),
                    "link_mode": link_mode(self.config) if uv_bin else "copy",
                    "uv_cache_dir": str(self.config.uv_cache_dir) if uv_bin else None,
                    "health_import": "overlapped the last packages' install" if early else "after the install",
                    "build_seconds": round(time.time() - started, 3)}
            atomic_write_text(tmp / LOCK_COPY, lock.text)
            atomic_write_json(tmp / META, meta)
            write_stamp(tmp, stamp_paths(tmp, found.get("loaded", []), libraries))
            report("marker", "marking the env complete")
            atomic_write_text(tmp / MARKER, env_id + "\n")
            report("rename", "moving the env into place")
            self.store.install(tmp, env_id)
        except BaseException:
            import_check.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            lock_file.unlink(missing_ok=True)
        self.store.log_build({"event": "built", "env_id": env_id, "runtime": req.runtime, "builder": builder,
                              "seconds": meta["build_seconds"], "pid": os.getpid(), "at": meta["built_at"]})

    def _undamaged_from_cache(self, tmp: Path, env_id: str, req: EnvRequest, lock: Lock,
                              uv_bin: str) -> tuple[bool, list[str]]:
        """A file edited in another env that shared it with uv's cache is damaged in the cache too, and a new env
        links it again: check every file's size (0.1-0.4 s in a torch env; hashes are `env verify`'s) and reinstall
        what differs from its source, evicted from the cache. Whether anything was reinstalled, and the env's
        shared libraries (for its stamp)."""
        sizes = verify(tmp, env_id, quick=True, locked=lock.packages)
        if not sizes.packages:
            return False, sizes.libraries
        repair_env(tmp, env_id, req, lock, self.config, builder="uv", uv_bin=uv_bin,
                   cache_dirs=[self.config.uv_cache_dir], scratch_root=self.config.env_store / ".tmp",
                   report=lambda stage, message: None, before=sizes, in_build=True)
        return True, sizes.libraries

    def _health(self, env_dir: Path, req: EnvRequest, lock: Lock, found: dict | None = None) -> dict:
        """Judge the probe's findings (`found`: an ImportCheck's, else a fresh probe's)."""
        try:
            found = found or probe(env_dir, req.health_modules)
        except (RuntimeError, ValueError) as exc:
            raise EnvBuildError(f"the new {req.runtime} env failed its health check", why=str(exc),
                                hint="rerun `stemsep setup`; if it persists, report the output above") from exc
        problems = [f"import {m}: {e}" for m, e in found["errors"].items()]
        problems += lock_mismatches(found["dists"], lock.packages)
        if req.torch:
            problems += variant_problems(found["torch"], backend=req.torch_backend, overrides=req.overrides)
        if problems:
            raise EnvBuildError(f"the new {req.runtime} env failed its health check", why="; ".join(problems),
                                hint="check the torch override/backend in `stemsep env config`; the broken "
                                "build was discarded and is rebuilt on the next request")
        return found

    def _open(self, env_id: str, lock: Lock, report: Progress) -> Env:
        path = self.store.env_dir(env_id)
        meta = read_json(path / META, {}) or {}
        report("ready", env_id)
        versions = {"python": meta.get("python", lock.interpreter.version), **meta.get("versions", {})}
        return Env(id=env_id, path=path, python=env_python(path), lock=lock, versions=versions,
                   runtime=meta.get("runtime", ""), torch=meta.get("torch"))


def env_id_for(runtime: str, lock: Lock) -> str:
    """`<runtime>-<16 hex>`: a hash of the lock text plus the interpreter and platform it was resolved for."""
    data = json.dumps([lock.text, lock.interpreter.key])
    return f"{runtime}-{hashlib.sha256(data.encode()).hexdigest()[:16]}"
