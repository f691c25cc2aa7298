"""The copy of `runtimes/` that a worker runs: content-hashed, so host and worker code always match.

A managed env never sees the host's packages (docs/DESIGN.md §5). Instead the host copies the `runtimes`
package into `<cache_dir>/worker-code/<hash>/runtimes/` and puts that dir first on the worker's path.
The hash covers every file's relative path and bytes, so an edited or upgraded StemSep gets a new
copy, and the same code is copied once however many envs use it. Copies are made in a temp dir and
renamed into place: a half-copied tree is never used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from envmgr.fsutil import ensure_dir, store_error

_SUFFIXES = {".py", ".yaml", ".yml", ".json"}


@dataclass(frozen=True)
class WorkerCode:
    root: Path  # goes on the worker's sys.path; holds `runtimes/`
    digest: str


def source_dir() -> Path:
    """The host's `runtimes` package dir, found without importing it."""
    spec = find_spec("runtimes")
    assert spec is not None and spec.submodule_search_locations, "the runtimes package is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def _files(src: Path) -> list[Path]:
    return sorted(Path(path) for path, _ in _walk(src))


def code_digest(src: Path) -> str:
    """The hash of the tree, read and hashed once per process while its files keep their stamps (path, size,
    mtime): a long-lived host (`stemsep serve`) asks for it on every job."""
    key = _stamp(src)
    cached = _DIGESTS.get(src)
    if cached is not None and cached[0] == key:
        return cached[1]
    digest = _hash_files(src)
    _DIGESTS[src] = (key, digest)
    return digest


_DIGESTS: dict[Path, tuple[list[tuple[str, int, int]], str]] = {}


def _stamp(src: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of the files `_files` would hash: no reads (a tenth of hashing them)."""
    return [(path, st.st_size, st.st_mtime_ns) for path, st in _walk(src)]


def _walk(src: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Each file the worker code is made of, with its stat: a regular file with one of _SUFFIXES, outside
    __pycache__. One walk for the stamp, the hash and the copy, so the cached hash covers what is copied."""
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if os.path.splitext(name)[1] in _SUFFIXES:
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield path, st


def _hash_files(src: Path) -> str:
    h = hashlib.sha256()
    for f in _files(src):
        rel = f.relative_to(src).as_posix().encode()
        data = f.read_bytes()
        h.update(len(rel).to_bytes(4, "big") + rel + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:20]


def ensure_worker_code(cache_dir: Path, src: Path | None = None) -> WorkerCode:
    """Return the content-hashed copy of `runtimes/` under cache_dir, making it if it is not there yet."""
    src = src or source_dir()
    digest = code_digest(src)
    store = ensure_dir(cache_dir / "worker-code")
    root = store / digest
    if (root / "runtimes").is_dir():
        return WorkerCode(root, digest)
    try:
        tmp = Path(tempfile.mkdtemp(dir=store, prefix=f".{digest}."))
        try:
            for f in _files(src):
                target = tmp / "runtimes" / f.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
            try:
                os.rename(tmp, root)
            except OSError:
                if not (root / "runtimes").is_dir():  # not a lost race with another host: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise store_error(store, exc) from exc
    return WorkerCode(root, digest)
