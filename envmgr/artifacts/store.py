"""The local model store: status, ensure (download what is missing), import, remove.

This is the API `separate`/preflight and the CLI use:

    store = ArtifactStore(config.model_store)
    store.status(entry)          -> [ArtifactStatus]  (present | partial | missing | downloadable |
                                                        hash_mismatch | unsafe)
    store.ensure(entry, require_hashes=False, download=True, progress=cb) -> {filename: Path}
    store.path_for(entry, artifact) -> Path
    store.import_file(entry, artifact, path, copy=False) -> Path
    store.remove(model_id, partial_only=False) -> RemovalReport

Every artifact is installed under its own lock (check, lock, check again), verified before it is
renamed into place, and recorded in the model's manifest.
"""

from __future__ import annotations

import os
import shutil
import secrets
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Iterator, Optional

from filelock import FileLock, Timeout

from envmgr.artifacts.download import Downloader, DownloadSettings, PartialFile, Target, check_space
from envmgr.artifacts.errors import (
    HashMismatchError,
    HashRequiredError,
    ImportSourceError,
    MissingArtifactError,
    NoSourceError,
    SizeMismatchError,
    StoreBusyError,
    UnsafePathError,
)
from envmgr.errors import StoreError
from envmgr.artifacts.events import ArtifactEvent, ProgressCallback, ignore
from envmgr.artifacts.layout import PARTIAL_DIR, StoreLayout, make_dir, store_error
from envmgr.artifacts.manifest import Record, new_record, read_manifest, sha256_file, update_manifest
from envmgr.artifacts.safety import check_name, is_regular_file, refuse_symlink
from envmgr.artifacts.sources import sources_for
from registry.view import artifacts_for

if TYPE_CHECKING:  # typed entries or their registry.frozen forms: the store only reads them
    from registry.view import ArtifactView, ModelView


class ArtifactState(str, Enum):
    PRESENT = "present"  # in the store and matching the registry's pins
    PARTIAL = "partial"  # an interrupted download waits to be resumed
    MISSING = "missing"  # not in the store and the registry gives no URL: import it
    DOWNLOADABLE = "downloadable"  # not in the store, the registry gives a URL
    HASH_MISMATCH = "hash_mismatch"  # in the store but its sha256 or size is not the registry's
    UNSAFE = "unsafe"  # a symlink or non-file where the artifact belongs, or a bad filename


@dataclass(frozen=True)
class ArtifactStatus:
    model_id: str
    filename: str
    kind: str
    state: ArtifactState
    path: Path
    size: Optional[int] = None  # bytes on disk (for partial: bytes received so far)
    expected_size: Optional[int] = None
    sha256: Optional[str] = None  # of the stored file (recorded or just computed)
    expected_sha256: Optional[str] = None
    sources: tuple[str, ...] = ()
    source: Optional[str] = None  # where the stored file came from
    detail: str = ""

    @property
    def downloadable(self) -> bool:
        return bool(self.sources) and self.state is not ArtifactState.UNSAFE

    def to_dict(self) -> dict[str, object]:
        return {"model_id": self.model_id, "filename": self.filename, "kind": self.kind,
                "state": self.state.value, "path": str(self.path), "size": self.size,
                "expected_size": self.expected_size, "sha256": self.sha256,
                "expected_sha256": self.expected_sha256, "pinned": self.expected_sha256 is not None,
                "sources": list(self.sources), "source": self.source, "downloadable": self.downloadable,
                "detail": self.detail}


@dataclass
class RemovalReport:
    model_id: str
    files: list[Path] = field(default_factory=list)
    bytes: int = 0


class ArtifactStore:
    def __init__(self, root: Path, *, settings: DownloadSettings = DownloadSettings(),
                 downloader: Optional[Downloader] = None) -> None:
        self.layout = StoreLayout(root)
        self.root = self.layout.root
        self.downloader = downloader or Downloader(settings)

    def close(self) -> None:
        self.downloader.close()

    def __enter__(self) -> "ArtifactStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries -----------------------------------------------------------------------------------

    def path_for(self, entry: ModelView, artifact: ArtifactView) -> Path:
        return self.layout.artifact_path(entry.id, artifact.filename)

    def model_ids(self) -> list[str]:
        return self.layout.model_ids()

    def status(self, entry: ModelView, *, verify: bool = False, progress: Optional[ProgressCallback] = None,
               runtime: Optional[str] = None) -> list[ArtifactStatus]:
        """State of each of the model's artifacts (only those `runtime` uses, when given). Hashes only files not
        yet recorded (or changed since), or all of them with `verify`; what it computes is recorded so the next
        call is cheap."""
        emit = progress if progress is not None else ignore
        records = read_manifest(self.layout, entry.id) if _safe_id(entry.id) else {}
        return [self._inspect(entry, a, records, verify, emit) for a in artifacts_for(entry, runtime)]

    # -- downloads ---------------------------------------------------------------------------------

    def ensure(self, entry: ModelView, *, require_hashes: bool = False, download: bool = True,
               progress: Optional[ProgressCallback] = None, runtime: Optional[str] = None) -> dict[str, Path]:
        """Make every artifact of `entry` (every one `runtime` uses, when given) present and verified; return
        {filename: path}.

        Checks everything it can before writing anything: names, `require_hashes`, sources and the
        disk space the registry's sizes call for.
        """
        emit = progress if progress is not None else ignore
        artifacts = artifacts_for(entry, runtime)
        check_name(entry.id, "model id")
        for a in artifacts:
            check_name(a.filename, "artifact filename")
        if require_hashes:
            unpinned = [a.filename for a in artifacts if not a.sha256]
            if unpinned:
                raise HashRequiredError(
                    f"{entry.id}: no sha256 pinned for {', '.join(unpinned)}, and hashes are required.",
                    why="--require-hashes refuses artifacts whose content the registry does not pin.",
                    hint="Add the sha256 to the registry entry (a user registry overlay can do it), or "
                    "drop --require-hashes.",
                )
        todo = [s for s in self.status(entry, progress=emit, runtime=runtime) if s.state is not ArtifactState.PRESENT]
        for s in todo:
            if s.state is ArtifactState.UNSAFE:
                refuse_symlink(s.path)
                raise UnsafePathError(f"Refusing {s.path}: {s.detail}", hint="Remove it, then retry.")
            if not download:
                raise MissingArtifactError(
                    f"{entry.id}: {s.filename} is {s.state.value.replace('_', ' ')} and downloads are off.",
                    why=s.detail or "It is not in the model store.",
                    hint=f"Run `stemsep models download {entry.id}`, or import the file with "
                    f"`stemsep models import {entry.id}`.",
                )
            if not s.sources and not s.expected_sha256:
                raise _no_source(entry, s)
        known = sum((s.expected_size or 0) - ((s.size or 0) if s.state is ArtifactState.PARTIAL else 0)
                    for s in todo)
        if known > 0:
            check_space(self.layout.model_dir(entry.id), known, self.downloader.settings.free_space_margin)
        for a in artifacts:
            if any(s.filename == a.filename for s in todo):
                self._ensure_one(entry, a, emit)
        return {a.filename: self.path_for(entry, a) for a in artifacts}

    def _ensure_one(self, entry: ModelView, artifact: ArtifactView, emit: ProgressCallback) -> Path:
        path = self.path_for(entry, artifact)
        with self._locked(entry.id, artifact.filename, emit):
            st = self._inspect(entry, artifact, read_manifest(self.layout, entry.id), False, emit)
            if st.state is ArtifactState.PRESENT:  # another process finished it while we waited
                emit(ArtifactEvent("done", entry.id, artifact.filename, done=st.size or 0, total=st.size,
                                   message="present"))
                return path
            if st.state is ArtifactState.UNSAFE:
                refuse_symlink(path)
                raise UnsafePathError(f"Refusing {path}: {st.detail}", hint="Remove it, then retry.")
            if st.state is ArtifactState.HASH_MISMATCH:
                emit(ArtifactEvent("warning", entry.id, artifact.filename,
                                   message=f"replacing the stored file: {st.detail}"))
            if artifact.sha256 and self._reuse(entry, artifact, artifact.sha256.lower(), emit):
                return path
            if not st.sources:
                raise _no_source(entry, st)
            target = Target(entry.id, artifact.filename, artifact.sha256.lower() if artifact.sha256 else None,
                            artifact.size_bytes)
            partial = PartialFile(self.layout.partial_path(entry.id, artifact.filename))
            try:
                fetched = self.downloader.fetch(target, list(st.sources), partial, emit)
                self._install(partial.path, path)
                partial.discard()
            finally:  # a failed download leaves nothing but a resumable partial
                _remove_if_empty(partial.path.parent)
                _remove_if_empty(path.parent)
            self._record(entry.id, artifact.filename, path, fetched.sha256, fetched.url, bool(artifact.sha256))
        if not artifact.sha256:
            emit(ArtifactEvent("warning", entry.id, artifact.filename, url=fetched.url,
                               message=f"the registry pins no sha256; recorded the downloaded file's: "
                               f"{fetched.sha256}"))
        emit(ArtifactEvent("done", entry.id, artifact.filename, done=fetched.size, total=fetched.size,
                           url=fetched.url, message="downloaded"))
        return path

    def _reuse(self, entry: ModelView, artifact: ArtifactView, want: str, emit: ProgressCallback) -> bool:
        """Hardlink a file with the pinned sha256 `want` that another model already holds (no download)."""
        for other in self.model_ids():
            if other == entry.id:
                continue
            for name, rec in read_manifest(self.layout, other).items():
                src = self.root / other / name
                if rec.sha256 != want or not is_regular_file(src) or not rec.matches_file(src):
                    continue
                path = self.path_for(entry, artifact)
                try:
                    self._link_or_copy_in(src, path, artifact, link=True, emit=emit)
                except (HashMismatchError, StoreError):
                    continue
                self._record(entry.id, artifact.filename, path, want, f"store:{other}/{name}", True)
                emit(ArtifactEvent("done", entry.id, artifact.filename, done=rec.size, total=rec.size,
                                   message=f"reused from {other}"))
                return True
        return False

    # -- import ------------------------------------------------------------------------------------

    def import_file(self, entry: ModelView, artifact: ArtifactView, source: Path, *, copy: bool = False,
                    progress: Optional[ProgressCallback] = None) -> Path:
        """Put a file the user already has into the store: hardlink (or copy) it, verify the pinned sha256."""
        emit = progress if progress is not None else ignore
        source = Path(source).expanduser()
        if not source.is_file():
            raise ImportSourceError(
                f"Cannot import {source}: " + ("it does not exist." if not source.exists() else "it is not a file."),
                hint=f"Give the path of the downloaded {artifact.kind} file for {entry.id}.",
            )
        size = source.stat().st_size
        if artifact.size_bytes is not None and size != artifact.size_bytes:
            raise SizeMismatchError(
                f"{source} is {size:,} bytes; the registry says {artifact.filename} of {entry.id} is "
                f"{artifact.size_bytes:,}.",
                why="It is not the file the registry describes (truncated download, or another version); "
                "nothing was imported.",
                hint="Check that you picked the right file, or download it again.",
            )
        path = self.path_for(entry, artifact)
        with self._locked(entry.id, artifact.filename, emit):
            try:
                sha = self._link_or_copy_in(source, path, artifact, link=not copy, emit=emit)
            finally:
                _remove_if_empty(path.parent)  # a refused import leaves no empty model folder
            self._record(entry.id, artifact.filename, path, sha, f"import:{source.resolve()}",
                         bool(artifact.sha256))
        if not artifact.sha256:
            emit(ArtifactEvent("warning", entry.id, artifact.filename,
                               message=f"the registry pins no sha256; recorded the imported file's: {sha}"))
        emit(ArtifactEvent("done", entry.id, artifact.filename, done=size, total=size, message="imported"))
        return path

    def _link_or_copy_in(self, source: Path, path: Path, artifact: ArtifactView, *, link: bool,
                         emit: ProgressCallback) -> str:
        """Install `source` at `path` via a temp name, verified against the pinned sha256; return its sha256."""
        refuse_symlink(path)
        tmp_dir = make_dir(path.parent / PARTIAL_DIR)
        tmp = tmp_dir / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.import"  # we hold the lock
        model_id = path.parent.name
        total = source.stat().st_size
        done = 0

        def on_bytes(n: int) -> None:
            nonlocal done
            done += n
            emit(ArtifactEvent("verify", model_id, path.name, done=done, total=total))

        try:
            linked = False
            if link:
                try:
                    os.link(source, tmp)
                    linked = True
                except OSError:  # other file system, or links not allowed: copy instead
                    pass
            if not linked:
                try:
                    shutil.copyfile(source, tmp)
                except OSError as exc:
                    raise store_error(tmp, exc) from exc
            sha = sha256_file(tmp, on_bytes)
            if artifact.sha256 and sha != artifact.sha256.lower():
                raise HashMismatchError(
                    f"sha256 mismatch for {source} as {path.name} of {model_id}: expected "
                    f"{artifact.sha256.lower()}, got {sha}.",
                    why="It is not the file the registry pins; nothing was imported.",
                    hint="Check that you picked the right file (same model, same version), or download it "
                    f"with `stemsep models download {model_id}`.",
                )
            self._install(tmp, path)
            return sha
        finally:
            if tmp.exists():
                tmp.unlink()
            _remove_if_empty(tmp_dir)

    # -- removal -----------------------------------------------------------------------------------

    def remove(self, model_id: str, *, partial_only: bool = False) -> RemovalReport:
        """Delete a model's folder (or only its interrupted downloads); refuses while one is in progress."""
        model_dir = self.layout.model_dir(model_id)
        report = RemovalReport(model_id)
        if model_dir.is_symlink():  # never follow it; removing the link itself is safe
            model_dir.unlink()
            report.files.append(model_dir)
            return report
        if not model_dir.is_dir():
            return report
        target = model_dir / PARTIAL_DIR if partial_only else model_dir
        names = {p.name for p in model_dir.iterdir() if not p.name.startswith(".")}
        partial_dir = model_dir / PARTIAL_DIR
        if partial_dir.is_dir() and not partial_dir.is_symlink():
            names |= {p.name for p in partial_dir.iterdir() if not p.name.startswith(".")}
        locks = [FileLock(str(self.layout.lock_path(model_id, n))) for n in sorted(names)]
        held = []
        try:
            for lock in locks:
                make_dir(Path(lock.lock_file).parent)
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    raise StoreBusyError(
                        f"{model_id} is being downloaded or imported by another process.",
                        why=f"{Path(lock.lock_file).name[:-5]} is locked.",
                        hint="Wait for it to finish (or stop it), then retry.",
                    ) from None
                held.append(lock)
            for path in _walk_files(target):
                report.files.append(path)
                report.bytes += os.lstat(path).st_size
            if target.exists() or target.is_symlink():
                try:
                    shutil.rmtree(target) if not target.is_symlink() else target.unlink()
                except OSError as exc:
                    raise store_error(target, exc) from exc
        finally:
            for lock in held:
                lock.release()
        return report

    # -- internals ---------------------------------------------------------------------------------

    def _inspect(self, entry: ModelView, artifact: ArtifactView, records: dict[str, Record], verify: bool,
                 emit: ProgressCallback) -> ArtifactStatus:
        base: dict[str, Any] = dict(model_id=entry.id, filename=artifact.filename, kind=artifact.kind,
                    expected_size=artifact.size_bytes,
                    expected_sha256=artifact.sha256.lower() if artifact.sha256 else None,
                    sources=tuple(sources_for(entry, artifact)))
        try:
            path = self.path_for(entry, artifact)
        except UnsafePathError as exc:
            return ArtifactStatus(state=ArtifactState.UNSAFE, path=self.root, detail=exc.message, **base)
        if path.parent.is_symlink():
            return ArtifactStatus(state=ArtifactState.UNSAFE, path=path, detail="the model's folder in the store "
                                  "is a symlink", **base)
        if path.is_symlink() or (path.exists() and not is_regular_file(path)):
            return ArtifactStatus(state=ArtifactState.UNSAFE, path=path, detail="a symlink or non-file is in the "
                                  "store where the artifact belongs", **base)
        if is_regular_file(path):
            return self._inspect_file(path, artifact, records.get(artifact.filename), verify, emit, base)
        partial = self.layout.partial_path(entry.id, artifact.filename)
        if is_regular_file(partial):
            return ArtifactStatus(state=ArtifactState.PARTIAL, path=path, size=partial.stat().st_size,
                                  detail="an interrupted download; `models download` resumes it", **base)
        state = ArtifactState.DOWNLOADABLE if base["sources"] else ArtifactState.MISSING
        return ArtifactStatus(state=state, path=path, **base)

    def _inspect_file(self, path: Path, artifact: ArtifactView, rec: Optional[Record], verify: bool,
                      emit: ProgressCallback, base: dict[str, Any]) -> ArtifactStatus:
        size = path.stat().st_size
        if rec is not None and rec.matches_file(path) and not verify:
            sha, source = rec.sha256, rec.source
        else:
            done = 0

            def on_bytes(n: int) -> None:
                nonlocal done
                done += n
                emit(ArtifactEvent("verify", base["model_id"], artifact.filename, done=done, total=size))

            sha = sha256_file(path, on_bytes)
            source = rec.source if rec is not None else "found in store"
            try:
                self._record(base["model_id"], artifact.filename, path, sha, source, bool(artifact.sha256))
            except StoreError:
                pass  # a read-only store still answers status, it just cannot cache the hash
        problems = []
        if artifact.size_bytes is not None and size != artifact.size_bytes:
            problems.append(f"size {size:,} bytes, expected {artifact.size_bytes:,}")
        if base["expected_sha256"] and sha != base["expected_sha256"]:
            problems.append(f"sha256 {sha}, expected {base['expected_sha256']}")
        state = ArtifactState.HASH_MISMATCH if problems else ArtifactState.PRESENT
        return ArtifactStatus(state=state, path=path, size=size, sha256=sha, source=source,
                              detail="; ".join(problems), **base)

    def _record(self, model_id: str, filename: str, path: Path, sha: str, source: str, pinned: bool) -> None:
        update_manifest(self.layout, model_id, {filename: new_record(path, sha, source, pinned)})

    @staticmethod
    def _install(tmp: Path, path: Path) -> None:
        refuse_symlink(path.parent)
        try:
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise store_error(path, exc) from exc

    def _locked(self, model_id: str, filename: str, emit: ProgressCallback) -> ContextManager[object]:
        """The artifact's lock, acquired (use in `with`); says so when another process holds it."""
        lock_path = self.layout.lock_path(model_id, filename)
        make_dir(lock_path.parent)
        make_dir(self.layout.model_dir(model_id))
        lock = FileLock(str(lock_path))
        try:
            return lock.acquire(timeout=0)
        except Timeout:
            emit(ArtifactEvent("waiting", model_id, filename,
                               message="another process is downloading this file; waiting for it"))
            return lock.acquire()


def _safe_id(model_id: str) -> bool:
    try:
        check_name(model_id, "model id")
        return True
    except UnsafePathError:
        return False


def _no_source(entry: ModelView, st: ArtifactStatus) -> NoSourceError:
    flag = {"checkpoint": "--checkpoint ", "config": "--config "}.get(st.kind, f"--file {st.filename}=")
    return NoSourceError(
        f"{entry.id}: {st.filename} is not in the store and the registry gives no URL for it.",
        why="Some models are only published on pages that need a browser (or not at all).",
        hint=f"Get the file from the model's homepage ({entry.links.homepage or 'see `stemsep models show`'}) "
        f"and run `stemsep models import {entry.id} {flag}PATH`.",
    )


def _walk_files(top: Path) -> Iterator[Path]:
    if top.is_symlink() or not top.is_dir():
        if top.is_symlink() or top.is_file():
            yield top
        return
    for dirpath, _dirs, files in os.walk(top):  # os.walk does not follow symlinked dirs
        for name in files:
            yield Path(dirpath) / name


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
