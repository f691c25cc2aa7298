"""Download one artifact from its sources into a partial file: resumable, retried, verified.

Per source URL, in order: GET with `Range` when a partial file exists (kept only when the server
answers 206 with a Content-Range that starts where we asked; anything else restarts from byte 0),
transient failures (timeouts, dropped connections, 408/429/5xx) retried with exponential backoff and
jitter, permanent ones (404, HTML page, wrong size, wrong sha256, too many redirects) moving on to
the next source at once. Redirects, timeouts and proxies from the environment (HTTP(S)_PROXY,
NO_PROXY) are httpx's. The caller renames the verified partial into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional
from urllib.parse import urlsplit

if TYPE_CHECKING:  # imported when a download starts: httpx's import costs start-up time preflight/separate need not pay
    import httpx

from envmgr.artifacts.errors import (
    ArtifactError,
    DownloadFailedError,
    HashMismatchError,
    InsufficientSpaceError,
    NotAFileError,
    SizeMismatchError,
)
from envmgr.artifacts.events import ArtifactEvent, ProgressCallback
from envmgr.artifacts.layout import make_dir, store_error
from envmgr.artifacts.safety import open_for_append
from envmgr.artifacts.sources import unusable_reason
from envmgr.sizes import human

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")
_SNIFF_BYTES = 1024


@dataclass(frozen=True)
class DownloadSettings:
    retries: int = 5  # consecutive failed tries of one URL before moving on (a try that got bytes resets it)
    max_attempts: int = 100  # tries of one URL in all, progress or not
    backoff: float = 0.5  # seconds before the first retry; doubles per consecutive failure
    backoff_max: float = 30.0
    connect_timeout: float = 20.0
    read_timeout: float = 60.0  # longest silence while waiting for bytes
    max_redirects: int = 10
    progress_interval: float = 0.1  # seconds between progress events
    free_space_margin: int = 64 << 20  # bytes left free on the disk after a download
    user_agent: str = "stemsep-runtime"


@dataclass(frozen=True)
class Target:
    """What to fetch: the registry's name and pins for one artifact."""

    model_id: str
    filename: str
    sha256: Optional[str]
    size: Optional[int]


@dataclass(frozen=True)
class Fetched:
    sha256: str
    size: int
    url: str


class _Transient(Exception):
    """Worth retrying the same URL, after `wait` seconds (None: the backoff decides).

    `connect`: no connection could be made at all (DNS, refused, connect timeout).
    """

    def __init__(self, reason: str, wait: Optional[float] = None, connect: bool = False) -> None:
        super().__init__(reason)
        self.wait = wait
        self.connect = connect


class _SourceFailed(Exception):
    """This URL will not give the file; try the next one.

    `keep_partial`: the bytes received are good (the URL just stopped answering), so a later run or
    the next source (when the sha256 is pinned) may resume them.
    """

    def __init__(self, error: ArtifactError, keep_partial: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.keep_partial = keep_partial


class PartialFile:
    """The bytes received so far, their running sha256, and where they came from (a sidecar JSON)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta_path = path.with_name(f".{path.name}.json")  # dot-names never clash with artifacts
        self.offset = 0
        self.hasher = hashlib.sha256()
        self.validator: Optional[str] = None  # ETag or Last-Modified, sent as If-Range when resuming

    def load(self, url: str, pinned: bool) -> None:
        """Pick up bytes left by an earlier run, when they can be trusted to belong to this file.

        With a pinned sha256 any partial is fine (the final hash check catches a mix); otherwise
        only one from the same URL.
        """
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        if not self.path.is_file() or self.path.is_symlink() or not (pinned or meta.get("url") == url):
            self.reset()
            return
        self.hasher = hashlib.sha256()
        self.offset = 0
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                self.hasher.update(chunk)
                self.offset += len(chunk)
        self.validator = meta.get("validator") if meta.get("url") == url else None

    def reset(self) -> None:
        self.discard()
        self.offset = 0
        self.hasher = hashlib.sha256()
        self.validator = None

    def begin(self, url: str, validator: Optional[str]) -> None:
        """A full response starts: note its source so a later run may resume it."""
        self.validator = validator
        make_dir(self.path.parent)
        self._write_meta({"url": url, "validator": validator})

    def append(self, fd: int, data: bytes) -> None:
        os.write(fd, data)
        self.hasher.update(data)
        self.offset += len(data)

    def open(self) -> int:
        make_dir(self.path.parent)
        fd = open_for_append(self.path)
        os.ftruncate(fd, self.offset)  # drop anything written after the last byte we hashed
        return fd

    def discard(self) -> None:
        for p in (self.path, self.meta_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def _write_meta(self, meta: dict[str, object]) -> None:
        tmp = self.meta_path.with_name(self.meta_path.name + ".tmp")
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp, self.meta_path)


class Downloader:
    def __init__(self, settings: DownloadSettings = DownloadSettings(), client: Optional[httpx.Client] = None) -> None:
        self.settings = settings
        self._client = client
        # host:port -> why; a host that could not be reached after all retries is not tried again in
        # this run (a batch of 100 models on an unreachable host fails in seconds, not in 25 minutes).
        self._unreachable: dict[str, str] = {}

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            import httpx

            s = self.settings
            self._client = httpx.Client(
                follow_redirects=True,
                max_redirects=s.max_redirects,
                timeout=httpx.Timeout(s.read_timeout, connect=s.connect_timeout),
                trust_env=True,  # HTTP(S)_PROXY / ALL_PROXY / NO_PROXY / SSL_CERT_FILE
                headers={"User-Agent": s.user_agent, "Accept-Encoding": "identity"},
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def fetch(self, target: Target, urls: list[str], partial: PartialFile, emit: ProgressCallback) -> Fetched:
        """Try each URL in order; return when `partial` holds the verified file; raise when all fail.

        A source that served the wrong thing (HTML, wrong size or sha256) leaves no bytes behind; one
        that stopped answering, or an interrupted run (Ctrl-C, kill), leaves the partial to resume.
        """
        failures: list[tuple[str, ArtifactError]] = []
        for i, url in enumerate(urls):
            reason = unusable_reason(url)
            host = _host(url) if not reason else ""
            error: ArtifactError
            if reason:
                error = DownloadFailedError(f"{url}: {reason}")
            elif host in self._unreachable:
                error = DownloadFailedError(f"{url}: {host} was unreachable earlier in this run "
                                            f"({self._unreachable[host]}); not tried again")
            else:
                try:
                    return self._fetch_from(url, target, partial, emit)
                except _SourceFailed as failed:
                    if not failed.keep_partial:
                        partial.reset()
                    error = failed.error
            failures.append((url, error))
            if i + 1 < len(urls):
                emit(ArtifactEvent("fallback", target.model_id, target.filename, url=url,
                                   message=f"{error.message} Trying the next source."))
        raise _combine(target, failures)

    def _fetch_from(self, url: str, target: Target, part: PartialFile, emit: ProgressCallback) -> Fetched:
        s = self.settings
        part.load(url, pinned=bool(target.sha256))
        failures = attempts = 0
        while True:
            attempts += 1
            before = part.offset
            emit(ArtifactEvent("start", target.model_id, target.filename, done=part.offset, total=target.size,
                               url=url))
            try:
                self._attempt(url, target, part, emit)
                break
            except _Transient as exc:
                failures = 1 if part.offset > before else failures + 1  # progress resets the count
                if failures > s.retries or attempts >= s.max_attempts:
                    if exc.connect:
                        self._unreachable[_host(url)] = str(exc)
                    raise _SourceFailed(DownloadFailedError(f"{url}: {exc} (gave up after {attempts} tries)"),
                                        keep_partial=True) from None
                wait = exc.wait if exc.wait is not None else min(s.backoff_max, s.backoff * 2 ** (failures - 1))
                wait *= 0.5 + random.random() / 2  # jitter: concurrent clients do not retry in step
                emit(ArtifactEvent("retry", target.model_id, target.filename, done=part.offset,
                                   total=target.size, url=url, message=f"{exc}; retrying in {wait:.1f}s"))
                time.sleep(wait)
        return self._verify(url, target, part)

    def _verify(self, url: str, target: Target, part: PartialFile) -> Fetched:
        size = part.offset
        if target.size is not None and size != target.size:
            raise _SourceFailed(_size_error(target, url, size))
        digest = part.hasher.hexdigest()
        if target.sha256 and digest != target.sha256.lower():
            raise _SourceFailed(HashMismatchError(
                f"sha256 mismatch for {target.filename} of {target.model_id} from {url}: "
                f"expected {target.sha256.lower()}, got {digest}.",
                why="The server's file is not the one the registry pins (changed upstream, or corrupted); "
                "it was deleted.",
                hint="Check the model's homepage; if the new file is right, update the sha256 in your "
                "registry; or import a known-good copy with `stemsep models import`.",
            ))
        return Fetched(sha256=digest, size=size, url=url)

    def _attempt(self, url: str, target: Target, part: PartialFile, emit: ProgressCallback) -> None:
        """One GET; returns when the body is complete, raises _Transient or _SourceFailed otherwise."""
        import httpx

        headers = {}
        if part.offset:
            headers["Range"] = f"bytes={part.offset}-"
            if part.validator:
                headers["If-Range"] = part.validator
        try:
            with self.client.stream("GET", url, headers=headers) as resp:
                total = self._check_response(resp, url, target, part)
                self._receive(resp, url, target, part, total, emit)
        except _Complete:
            return
        except httpx.TooManyRedirects:
            raise _SourceFailed(DownloadFailedError(
                f"{url}: more than {self.settings.max_redirects} redirects")) from None
        except httpx.UnsupportedProtocol as exc:
            raise _SourceFailed(DownloadFailedError(f"{url}: redirected to an unsupported URL ({exc})")) from None
        except httpx.ConnectTimeout:
            raise _Transient(f"cannot connect (no answer within {self.settings.connect_timeout:g}s)",
                             connect=True) from None
        except httpx.TimeoutException:
            raise _Transient(f"timed out (no data for {self.settings.read_timeout:g}s)") from None
        except (httpx.ConnectError, httpx.ProxyError) as exc:
            raise _Transient(f"cannot connect ({exc})", connect=True) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise _Transient(f"connection lost at byte {part.offset:,} ({exc})") from None
        except httpx.InvalidURL as exc:
            raise _SourceFailed(DownloadFailedError(f"{url}: invalid URL ({exc})")) from None

    def _check_response(self, resp: httpx.Response, url: str, target: Target, part: PartialFile) -> Optional[int]:
        """Classify the status; return the file's total size when the server says it."""
        status = resp.status_code
        if status == 416 and part.offset:
            total = _content_range(resp.headers.get("content-range"))[2]
            if total == part.offset:
                raise _Complete()
            part.reset()
            raise _Transient("the server refused to resume; starting over", wait=0)
        if status in _RETRYABLE_STATUS:
            raise _Transient(f"HTTP {status} {resp.reason_phrase}", wait=_retry_after(resp, self.settings))
        if status not in (200, 206):
            raise _SourceFailed(DownloadFailedError(f"{url}: HTTP {status} {resp.reason_phrase}".rstrip()))
        if status == 206:
            start, _end, total = _content_range(resp.headers.get("content-range"))
            if start != part.offset:
                part.reset()
                raise _Transient(f"the server answered the resume request with the wrong range "
                                 f"({resp.headers.get('content-range')!r}); starting over", wait=0)
        else:
            if part.offset:  # the server ignored Range, or If-Range says the file changed
                part.reset()
            length = resp.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
        if total is not None and target.size is not None and total != target.size:
            raise _SourceFailed(_size_error(target, url, total))
        if _is_html_type(resp.headers.get("content-type", "")) and not target.filename.lower().endswith(
                (".html", ".htm")):
            raise _SourceFailed(_html_error(target, url, resp.headers.get("content-type", "")))
        need = (total if total is not None else (target.size or 0)) - part.offset
        check_space(part.path.parent, need, self.settings.free_space_margin)
        if status == 200:
            etag = resp.headers.get("etag")
            strong_etag = etag if etag and not etag.startswith("W/") else None
            part.begin(url, strong_etag or resp.headers.get("last-modified"))
        return total

    def _receive(self, resp: httpx.Response, url: str, target: Target, part: PartialFile,
                 total: Optional[int], emit: ProgressCallback) -> None:
        limit = target.size if target.size is not None else total
        sniff = part.offset == 0
        head = b""
        last_emit = 0.0
        fd = part.open()
        try:
            for chunk in resp.iter_bytes():
                if sniff:  # hold back the first bytes until we know it is not an HTML page
                    head += chunk
                    if len(head) < _SNIFF_BYTES:
                        continue
                    self._sniffed(head, url, target)
                    sniff, chunk = False, head
                if limit is not None and part.offset + len(chunk) > limit:
                    raise _SourceFailed(_size_error(target, url, part.offset + len(chunk), more=True))
                try:
                    part.append(fd, chunk)
                except OSError as exc:
                    raise store_error(part.path, exc) from exc
                now = time.monotonic()
                if now - last_emit >= self.settings.progress_interval:
                    last_emit = now
                    emit(ArtifactEvent("progress", target.model_id, target.filename, done=part.offset,
                                       total=total, url=url))
            if sniff and head:
                self._sniffed(head, url, target)
                part.append(fd, head)
            os.fsync(fd)
        finally:
            os.close(fd)
        emit(ArtifactEvent("progress", target.model_id, target.filename, done=part.offset, total=total, url=url))

    @staticmethod
    def _sniffed(head: bytes, url: str, target: Target) -> None:
        if looks_like_html(head) and not target.filename.lower().endswith((".html", ".htm")):
            raise _SourceFailed(_html_error(target, url, "a body that starts like an HTML page"))


class _Complete(Exception):
    """A resume found the partial file already whole (416 with the same total)."""


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()


def looks_like_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith(_HTML_STARTS)


def _is_html_type(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")


def _content_range(value: Optional[str]) -> tuple[Optional[int], Optional[int], Optional[int]]:
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None, None, None
    start, end, total = m.groups()
    as_int = lambda v: int(v) if v and v != "*" else None  # noqa: E731
    return as_int(start), as_int(end), as_int(total)


def _retry_after(resp: httpx.Response, settings: DownloadSettings) -> Optional[float]:
    value = resp.headers.get("retry-after", "")
    return min(float(value), settings.backoff_max) if value.isdigit() else None


def check_space(folder: Path, need: int, margin: int) -> None:
    """Raise InsufficientSpaceError unless `need` bytes fit in `folder` (or its nearest existing parent)."""
    if need <= 0:
        return
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free - need < margin:
        raise InsufficientSpaceError(
            f"Not enough free space in {folder}: the download needs {human(need)}, {human(free)} are free "
            f"(keeping {human(margin)} spare).",
            why="Downloads check the space before they start so they do not fill the disk halfway.",
            hint="Free some space, or point STEMSEP_MODEL_STORE at a bigger disk.",
        )


def _size_error(target: Target, url: str, got: int, more: bool = False) -> SizeMismatchError:
    expected = f"{target.size:,} bytes" if target.size is not None else "the announced length"
    return SizeMismatchError(
        f"Wrong size for {target.filename} of {target.model_id} from {url}: expected {expected}, "
        f"got {'more than ' if more else ''}{got:,}.",
        why="The server's file is not the one the registry describes; it was not kept.",
        hint="The upstream file may have changed: check the model's homepage and your registry's size_bytes.",
    )


def _html_error(target: Target, url: str, what: str) -> NotAFileError:
    return NotAFileError(
        f"{url} served an HTML page ({what}) instead of {target.filename}.",
        why="File hosts answer 200 with a login, quota or error page when a link is broken or needs a browser.",
        hint=f"Open the URL in a browser, download the file, then `stemsep models import {target.model_id} "
        "--checkpoint PATH` (or --config/--file).",
    )


def _combine(target: Target, failures: list[tuple[str, ArtifactError]]) -> ArtifactError:
    """One error for all sources: the source's own error when there was one, else a summary."""
    if len(failures) == 1 and failures[0][1].hint:
        return failures[0][1]
    kinds = {type(err) for _url, err in failures}
    cls = kinds.pop() if len(kinds) == 1 else DownloadFailedError
    what = f"Could not download {target.filename} for {target.model_id}"
    hint = next((err.hint for _url, err in failures if err.hint),
                "Check the network and proxy settings (HTTPS_PROXY, NO_PROXY) and retry later (an "
                "interrupted download resumes), or get the file another way and `stemsep models import` it.")
    if len(failures) == 1:
        return cls(f"{what}: {failures[0][1].message}", hint=hint)
    return cls(f"{what}: all {len(failures)} sources failed.",
               why="\n".join(f"- {err.message}" for _url, err in failures), hint=hint)
