"""A real HTTP server on 127.0.0.1 for the download tests, with the misbehaviours file hosts show.

Each route is a small function `(handler, hit) -> None` that writes the whole response; `hit` counts
the requests to that route (1 for the first), so a route can fail first and work later. Every request
is logged (path, Range and If-Range headers, bytes of body sent) for the tests to assert on.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

Route = Callable[["Handler", int], None]
HOLD_LIMIT = 120  # seconds a held file waits for the test before it sends the rest anyway


@dataclass
class Hit:
    path: str
    range: Optional[str]
    if_range: Optional[str]
    status: int = 0
    sent: int = 0  # body bytes written
    headers: dict[str, str] = field(default_factory=dict)


class Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        srv = self.server.owner
        with srv.lock:
            route = srv.routes.get(self.path)
            srv.counts[self.path] = srv.counts.get(self.path, 0) + 1
            self.hit = Hit(self.path, self.headers.get("Range"), self.headers.get("If-Range"),
                           headers=dict(self.headers.items()))
            srv.hits.append(self.hit)
            n = srv.counts[self.path]
        if route is None:
            self.send_status(404, b"not found\n", "text/plain")
            return
        try:
            route(self, n)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests): fine

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client dropped a kept-alive connection: normal

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    # -- building blocks for routes ----------------------------------------------------------------

    def send_status(self, code: int, body: bytes = b"", content_type: str = "text/plain",
                    headers: Optional[dict[str, str]] = None) -> None:
        self.hit.status = code
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.write(body)

    def write(self, body: bytes, rate: Optional[int] = None) -> None:
        """Write `body`, at about `rate` bytes/s when given."""
        step = 16384 if rate is None else max(1, rate // 20)
        for i in range(0, len(body), step):
            piece = body[i:i + step]
            self.wfile.write(piece)
            self.hit.sent += len(piece)
            if rate is not None:
                self.wfile.flush()
                time.sleep(len(piece) / rate)
        self.wfile.flush()

    def requested_range(self, size: int) -> Optional[int]:
        """Start offset of a `bytes=N-` Range header that If-Range (when sent) allows; None: whole file."""
        value = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-", value or "")
        if not m:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != self.server.owner.etag_of(self.path):
            return None
        return int(m.group(1))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "FileServer"


class FileServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.counts: dict[str, int] = {}
        self.etags: dict[str, str] = {}
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()  # wakes stalled routes at teardown
        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def start(self) -> "FileServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, route: Route) -> str:
        """Serve `route` at `path`; return its URL."""
        self.routes[path] = route
        return self.url(path)

    def etag_of(self, path: str) -> Optional[str]:
        return self.etags.get(path)

    def hits_for(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    # -- routes ------------------------------------------------------------------------------------

    def file(self, path: str, data: bytes, *, ranges: bool = True, rate: Optional[int] = None,
             content_type: str = "application/octet-stream", headers: Optional[dict[str, str]] = None,
             cut_at: Optional[int] = None, cut_times: int = 0, length: bool = True,
             hold: Optional[threading.Event] = None) -> str:
        """A file with Range support (ranges=False: Range ignored) and a strong ETag.

        cut_at/cut_times: the first `cut_times` requests announce the full length but drop the
        connection after `cut_at` body bytes. length=False: no Content-Length, close-delimited body.
        hold: send the first half of the body, then a byte every half second until the test sets `hold`, then
        the rest (a download that stays in progress for as long as the test needs, whatever the machine's
        speed; at most HOLD_LIMIT s).
        """
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        self.etags[path] = etag

        def serve(h: Handler, n: int) -> None:
            start = h.requested_range(len(data)) if ranges else None
            if start is not None and start >= len(data):
                h.send_status(416, b"", headers={"Content-Range": f"bytes */{len(data)}"})
                return
            body = data[start:] if start is not None else data
            h.hit.status = 206 if start is not None else 200
            h.send_response(h.hit.status)
            h.send_header("Content-Type", content_type)
            h.send_header("ETag", etag)
            h.send_header("Accept-Ranges", "bytes" if ranges else "none")
            if length:
                h.send_header("Content-Length", str(len(body)))
            else:
                h.send_header("Connection", "close")
                h.close_connection = True
            if start is not None:
                h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            if cut_at is not None and n <= cut_times:
                h.write(body[:cut_at], rate)
                h.close_connection = True
                h.connection.shutdown(2)  # drop it mid-body
                return
            if hold is not None:
                sent = len(body) // 2
                h.write(body[:sent], rate)
                deadline = time.monotonic() + HOLD_LIMIT
                while not hold.wait(0.5) and time.monotonic() < deadline and sent < len(body) - 1:
                    h.write(body[sent:sent + 1])  # a byte now and then: the client's read timeout never fires
                    sent += 1
                body = body[sent:]
            h.write(body, rate)

        return self.route(path, serve)

    def status(self, path: str, code: int, *, times: Optional[int] = None, then: Optional[Route] = None,
               headers: Optional[dict[str, str]] = None) -> str:
        """Answer `code` (the first `times` requests, then delegate to `then`)."""

        def serve(h: Handler, n: int) -> None:
            if then is not None and times is not None and n > times:
                then(h, n - times)
            else:
                h.send_status(code, f"error {code}\n".encode(), headers=headers)

        return self.route(path, serve)

    def redirect(self, path: str, location: str, code: int = 302) -> str:
        def serve(h: Handler, n: int) -> None:
            h.send_status(code, b"", headers={"Location": location})

        return self.route(path, serve)

    def html(self, path: str, content_type: str = "text/html; charset=utf-8") -> str:
        page = (b"\n  <!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
                b"<body>Please sign in to download this file.</body></html>\n") + b" " * 2000

        def serve(h: Handler, n: int) -> None:
            h.send_status(200, page, content_type)

        return self.route(path, serve)

    def stall(self, path: str, seconds: float) -> str:
        """Accept the request, then say nothing for `seconds` (a hung file host)."""

        def serve(h: Handler, n: int) -> None:
            self.stop_event.wait(seconds)
            h.send_status(503, b"too late\n")

        return self.route(path, serve)

    def wrong_range(self, path: str, data: bytes) -> str:
        """Answers a Range request with 206 for a range that starts at 0 (a broken cache/proxy)."""

        def serve(h: Handler, n: int) -> None:
            if h.headers.get("Range"):
                h.send_status(206, data, "application/octet-stream",
                              headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
            else:
                h.send_status(200, data, "application/octet-stream")

        return self.route(path, serve)
