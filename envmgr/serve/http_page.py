"""The web page of `stemsep serve --http`: `/` and `/static/<file>` from envmgr/serve/web/ (plain ES modules,
no build step, nothing fetched from elsewhere).

How the page authenticates, without changing the API's rule (every /v1 request carries the bearer token):
the start-up prints `/?token=TOKEN` once, as Jupyter does. Opening it sets an HttpOnly, SameSite=Strict
cookie holding the token for this server's port and redirects to `/` (the token leaves the address bar and
history). `/` and `/static/...` are served only with that cookie (or `?token=`); the page's HTML carries
the token in a meta tag, and its script sends `Authorization: Bearer` on every API call, stems included
(fetched as blobs), and reads the event stream with fetch. Other sites cannot read the page (no CORS),
cannot send the cookie (SameSite=Strict) and cannot frame it (frame-ancestors 'none')."""

from __future__ import annotations

import hmac
import html
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

WEB_DIR = Path(__file__).with_name("web")
PAGE_PREFIXES = ("/static/",)
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
        "media-src blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store"}


def is_page_path(path: str) -> bool:
    """Paths the page's own cookie-or-query check guards instead of the API's bearer token."""
    return path == "/" or path.startswith(PAGE_PREFIXES)


def page_url(base_url: str, token: str) -> str:
    return f"{base_url}/?token={quote(token, safe='')}"


def page_routes(token: str) -> list[Route]:
    page = _Page(token)
    return [Route("/", page.index, methods=["GET"]), Route("/static/{name}", page.static, methods=["GET"])]


class _Page:
    def __init__(self, token: str) -> None:
        self.token = token

    def _cookie_name(self, request: Request) -> str:
        # cookies are per host, not per port: two servers on 127.0.0.1 must not overwrite each other's
        return f"stemsep_token_{request.url.port or 80}"

    def _matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def _allowed(self, request: Request) -> bool:
        return self._matches(request.cookies.get(self._cookie_name(request)))

    def index(self, request: Request) -> Response:
        given = request.query_params.get("token")
        if given is not None:
            if not self._matches(given):
                return _refused("this link's token is not this server's")
            response = RedirectResponse("/", status_code=303, headers=_HEADERS)
            response.set_cookie(self._cookie_name(request), self.token, httponly=True, samesite="strict", path="/")
            return response
        if not self._allowed(request):
            return _refused("this browser has not opened the page's link yet")
        text = (WEB_DIR / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(text.replace("{{TOKEN}}", html.escape(self.token, quote=True)), headers=_HEADERS)

    def static(self, request: Request) -> Response:
        if not self._allowed(request):
            return _refused("this browser has not opened the page's link yet")
        name = request.path_params["name"]
        path = WEB_DIR / name
        # only the folder's own files by plain name (no subfolders, no dot files, no ..)
        if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
            return HTMLResponse("not found", status_code=404, headers=_HEADERS)
        return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)


def _refused(why: str) -> HTMLResponse:
    body = ("<!doctype html><meta charset=utf-8><title>stemsep serve: token needed</title>"
            "<h1>Open the link stemsep serve printed</h1>"
            f"<p>{html.escape(why)}.</p><p>At start, <code>stemsep serve</code> prints a line "
            "<code>page: http://127.0.0.1:PORT/?token=...</code>; open that address (the token is also in "
            "<code>&lt;state_dir&gt;/serve/token</code>).</p>")
    return HTMLResponse(body, status_code=401, headers=_HEADERS)
