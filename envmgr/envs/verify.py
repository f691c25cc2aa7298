"""Verifying a built env file by file against what its wheels installed, read by the host.

Every installed distribution lists its files in `*.dist-info/RECORD` (path, `sha256=<urlsafe b64>`, size);
each listed file is checked against it: missing, another size, or (unless `quick`) another hash. Files RECORD
lists without a hash (RECORD itself, bytecode an installer compiled) are counted as skipped; files no RECORD
lists (bytecode Python wrote since) are not looked at. The env's interpreter is not started, so a damaged
env that cannot run Python is verified all the same. StemSep's own files beside the packages (the marker,
the meta record, the lock copy) are checked against each other.

Files hardlinked between envs share an inode: a `digests` memo passed across envs hashes each one once.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

from envmgr.envs.file_stamp import SHARED_LIBRARY, STAMP
from envmgr.envs.store import LOCK_COPY, MARKER, META


class RecordedFile(NamedTuple):  # a tuple: a torch env lists ~23,000 files
    path: str  # relative to the env dir, '/'-separated
    algorithm: str | None  # None: RECORD gives no hash (RECORD itself, compiled bytecode)
    digest: str
    size: int | None


@dataclass
class Distribution:
    name: str  # canonical (PEP 503) name
    version: str
    files: list[RecordedFile]
    problem: str | None = None  # RECORD missing or unreadable


@dataclass
class PackageDamage:
    name: str
    version: str | None
    missing: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    problem: str | None = None  # not installed, RECORD unreadable

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "missing": self.missing, "modified": self.modified,
                "problem": self.problem}


@dataclass
class Verification:
    env_id: str
    path: Path
    hashed: bool  # False: sizes only (`--quick`)
    files_checked: int = 0
    files_skipped: int = 0  # listed in RECORD without a hash
    bytes_hashed: int = 0
    packages: list[PackageDamage] = field(default_factory=list)  # damaged ones only
    own: list[str] = field(default_factory=list)  # problems with StemSep's own files
    seconds: float = 0.0
    libraries: list[str] = field(default_factory=list)  # recorded extension modules and shared libraries

    @property
    def ok(self) -> bool:
        return not self.packages and not self.own

    @property
    def damaged(self) -> list[str]:
        return [p.name for p in self.packages]

    def summary(self) -> str:
        parts = []
        for p in self.packages:
            what = [p.problem] if p.problem else []
            if p.missing:
                what.append(f"{len(p.missing)} missing ({_first(p.missing)})")
            if p.modified:
                what.append(f"{len(p.modified)} modified ({_first(p.modified)})")
            parts.append(f"{p.name} {p.version or ''}: {', '.join(what)}".replace("  ", " "))
        return "; ".join(parts + [f"stemsep: {o}" for o in self.own])

    def to_dict(self) -> dict:
        return {"id": self.env_id, "path": str(self.path), "ok": self.ok, "hashed": self.hashed,
                "files_checked": self.files_checked, "files_skipped_without_hash": self.files_skipped,
                "bytes_hashed": self.bytes_hashed, "damaged": [p.to_dict() for p in self.packages],
                "own_files": self.own, "seconds": round(self.seconds, 3)}


def _first(paths: list[str], n: int = 3) -> str:
    return ", ".join(paths[:n]) + (f" +{len(paths) - n} more" if len(paths) > n else "")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def site_packages(env_dir: Path) -> Path | None:
    found = sorted(env_dir.glob("lib/python*/site-packages")) or sorted(env_dir.glob("Lib/site-packages"))
    return found[0] if found else None


def distributions(env_dir: Path) -> Iterator[Distribution]:
    """Every distribution installed in the env with the files its RECORD lists (paths relative to env_dir)."""
    site = site_packages(env_dir)
    if site is None:
        return
    prefix = site.relative_to(env_dir).as_posix() + "/"
    for info in sorted(site.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        dist = Distribution(canonical(name or info.name), version, [])
        try:
            with open(info / "RECORD", newline="", encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            dist.problem = f"its RECORD cannot be read ({type(exc).__name__}: {exc})"
            yield dist
            continue
        for row in rows:
            if not row or not row[0]:
                continue
            algorithm, _, digest = (row[1] if len(row) > 1 else "").partition("=")
            size = row[2] if len(row) > 2 else ""
            if row[0].startswith(("/", "..")) or "\\" in row[0] or "/../" in row[0]:  # a script in bin/, say
                path = Path(os.path.relpath(os.path.normpath(os.path.join(site, row[0])), env_dir)).as_posix()
            else:
                path = prefix + row[0]
            dist.files.append(RecordedFile(path, algorithm or None, digest, int(size) if size.isdigit() else None))
        yield dist


def verify(env_dir: Path, env_id: str, *, quick: bool = False, locked: dict[str, str] | None = None,
           digests: dict[tuple, str | None] | None = None) -> Verification:
    """Check every recorded file of the env. `locked`: name -> version of the env's lock (default: read from its
    lock copy), so a package that is not installed at all is found too. `digests`: memo by inode (see above)."""
    started = time.perf_counter()
    result = Verification(env_id, env_dir, hashed=not quick)
    result.own = own_file_problems(env_dir, env_id)
    if locked is None:
        locked = _locked_packages(env_dir)
    memo = digests if digests is not None else {}
    to_hash: list[tuple[Distribution, RecordedFile, Path, os.stat_result]] = []
    damage: dict[str, PackageDamage] = {}

    def damaged(dist: Distribution) -> PackageDamage:
        return damage.setdefault(dist.name, PackageDamage(dist.name, dist.version))

    dists = list(distributions(env_dir))
    # A file two packages both install (spafe and torch_optimizer each ship a top-level tests/__init__.py) holds
    # the last one's content: it is intact when it matches any package that claims it.
    claims: dict[str, list[RecordedFile]] = {}
    for dist in dists:
        for rec in dist.files:
            claims.setdefault(rec.path, []).append(rec)
    installed = set()
    for dist in dists:
        installed.add(dist.name)
        if dist.problem:
            damaged(dist).problem = dist.problem
            continue
        for rec in dist.files:
            if rec.algorithm is None:
                result.files_skipped += 1
                continue
            result.files_checked += 1
            if SHARED_LIBRARY.search(rec.path):
                result.libraries.append(rec.path)
            path = env_dir / rec.path
            try:
                st = path.stat()
            except OSError:
                damaged(dist).missing.append(rec.path)
                continue
            if rec.size is not None and all(c.size != st.st_size for c in claims[rec.path]):
                damaged(dist).modified.append(rec.path)
            elif not quick:
                to_hash.append((dist, rec, path, st))
    if to_hash:
        def digest_of(item: tuple[Distribution, RecordedFile, Path, os.stat_result]) -> str | None:
            _, rec, path, st = item
            key = (rec.algorithm, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if key not in memo:  # two threads may hash one file twice: same answer
                memo[key] = _digest(path, rec.algorithm or "sha256")
            return memo[key]

        # hashlib releases the GIL on large buffers: a few threads overlap reading and hashing
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for item, got in zip(to_hash, pool.map(digest_of, to_hash)):
                dist, rec, _, st = item
                result.bytes_hashed += st.st_size
                if got is None:
                    damaged(dist).missing.append(rec.path)
                elif all(got != c.digest for c in claims[rec.path]):
                    damaged(dist).modified.append(rec.path)
    for name, version in sorted(locked.items()):
        if canonical(name) not in installed:
            damage[canonical(name)] = PackageDamage(canonical(name), version, problem="not installed")
    result.packages = sorted(damage.values(), key=lambda d: d.name)
    result.seconds = time.perf_counter() - started
    return result


def _digest(path: Path, algorithm: str) -> str | None:
    try:
        h = hashlib.new(algorithm)
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except (OSError, ValueError):  # gone meanwhile, unreadable, or an algorithm hashlib does not know
        return None
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode("ascii")


def own_file_problems(env_dir: Path, env_id: str) -> list[str]:
    """StemSep's files in the env: the marker names the env, the meta record parses and names it, the lock copy
    is the lock the meta record's digest names, the import stamp parses."""
    problems = []
    try:
        if (env_dir / MARKER).read_text(encoding="utf-8").strip() != env_id:
            problems.append(f"{MARKER} names another env")
    except OSError:
        problems.append(f"{MARKER} is missing")
    try:
        meta = json.loads((env_dir / META).read_text(encoding="utf-8"))
        if meta.get("id") != env_id:
            problems.append(f"{META} names another env")
    except (OSError, ValueError) as exc:
        meta = {}
        problems.append(f"{META} cannot be read ({type(exc).__name__})")
    try:
        text = (env_dir / LOCK_COPY).read_text(encoding="utf-8")
        if meta and hashlib.sha256(text.encode()).hexdigest() != meta.get("lock_digest"):
            problems.append(f"{LOCK_COPY} is not the lock the env was built from")
    except OSError:
        problems.append(f"{LOCK_COPY} is missing")
    stamp = env_dir / STAMP
    if stamp.exists():
        try:
            json.loads(stamp.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            problems.append(f"{STAMP} cannot be read")
    return problems


def _locked_packages(env_dir: Path) -> dict[str, str]:
    """name -> version pinned in the env's lock copy ({} when it cannot be read: own_file_problems says so)."""
    try:
        text = (env_dir / LOCK_COPY).read_text(encoding="utf-8")
    except OSError:
        return {}
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", text, flags=re.M)
    return {canonical(name): version for name, version in pins}
