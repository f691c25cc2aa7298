"""Runs the HTTP app (http_app.py) with uvicorn on a socket bound here, so port 0 works and the port taken
is known before the first request. Imports uvicorn and Starlette: only `stemsep serve` loads this module."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import uvicorn

from envmgr.serve.http_app import create_app
from envmgr.serve.http_page import page_url  # noqa: F401  (serve_cmd prints it; imported through here)

if TYPE_CHECKING:
    from envmgr.config import MachineConfig
    from envmgr.serve.scheduler import Scheduler


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and without it Nagle held
    # each response's body back until the client's delayed ACK (~40 ms on every request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def run(scheduler: Scheduler, config: MachineConfig, token: str, sock: socket.socket) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn stops gracefully: open event streams are closed)."""
    app = create_app(scheduler, config, token)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=3))
    server.run(sockets=[sock])
