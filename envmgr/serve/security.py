"""Who may talk to `stemsep serve --http`: loopback by default, and a bearer token on every request.

The token is generated at each start (or given with --token / STEMSEP_SERVE_TOKEN), written to
`<state_dir>/serve/token` readable by you alone (0600), and printed once. Binding any address that is not
loopback needs both --host and an explicit token: a server other machines can reach must not depend on
a token that only this machine's files hold."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from envmgr.fsutil import atomic_write_text
from registry.errors import ExitCode, StemSepError

DEFAULT_HOST = "127.0.0.1"
TOKEN_FILE = "token"
MIN_TOKEN_LENGTH = 16


class InsecureServe(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_SERVE_INSECURE"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def choose_token(host: str, given: str | None) -> str:
    """The token this server demands: the one given, or a fresh one where that is allowed."""
    if given is not None and len(given) < MIN_TOKEN_LENGTH:
        raise InsecureServe(f"the token is shorter than {MIN_TOKEN_LENGTH} characters",
                            hint="use a long random token, e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`")
    if not is_loopback(host) and given is None:
        raise InsecureServe(f"serving on {host} needs an explicit token",
                            why="other machines can reach that address; a token generated here would only be "
                                "readable on this machine, and a server without one would take anyone's jobs",
                            hint="add --token TOKEN (or STEMSEP_SERVE_TOKEN) and give your clients that token, "
                                 "or serve on 127.0.0.1")
    return given if given is not None else secrets.token_urlsafe(32)


def write_token(folder: Path, token: str) -> Path:
    """The token, in a file only you can read (an older file is removed first, so it never keeps wider rights)."""
    path = folder / TOKEN_FILE
    path.unlink(missing_ok=True)
    atomic_write_text(path, token + "\n")
    os.chmod(path, 0o600)
    return path
