"""Secrets out of a debug bundle: every file of it passes through one `Scrubber` before it is written.

Three kinds of secret are found, and each found value is also remembered, so that the same secret is cut
wherever else it turns up (a uv error quoting the index URL, a worker's stderr, REPORT.md):
- credentials in URLs (`https://user:token@host`: index URLs, find-links, proxies), written `https://***@host`;
- values of keys and variables named like a secret (*token*, *password*, *secret*, *credential*, AUTH,
  *authorization*, *api_key*, *private_key*), written `***`;
- values of proxy variables (HTTPS_PROXY and friends) are URLs: their credentials go as in the first case.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s\"'<>]+)@")
_SECRET_NAME = re.compile(r"token|passw|secret|credential|(?:^|[_-])auth(?:$|[_-]|orization)|api[_-]?key|"
                          r"private[_-]?key", re.I)
_MIN_SECRET = 4  # shorter values (an empty password, "x") would cut ordinary text


def secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


class Scrubber:
    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def learn(self, value: Any, name: str = "") -> None:
        """Remember the secrets in `value` (walking dicts and lists; `name`: the key or variable it is under)."""
        if isinstance(value, dict):
            for key, item in value.items():
                self.learn(item, str(key))
        elif isinstance(value, (list, tuple)):
            for item in value:
                self.learn(item, name)
        elif isinstance(value, str):
            for match in _USERINFO.finditer(value):
                self._remember(match.group("userinfo"))
            if name and secret_name(name) and "://" not in value:
                self._remember(value)

    def _remember(self, secret: str) -> None:
        for part in {secret, *secret.split(":", 1)}:  # user:password: the whole and each part
            for form in {part, unquote(part)}:
                if len(form) >= _MIN_SECRET:
                    self.secrets.add(form)

    def text(self, text: str) -> str:
        """`text` with URL credentials masked and every learned secret cut."""
        for match in _USERINFO.finditer(text):
            self._remember(match.group("userinfo"))
        text = _USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def data(self, value: Any, name: str = "") -> Any:
        """`value` (JSON data) with secrets masked: secret-named keys' values wholly, strings as in `text`."""
        if isinstance(value, dict):
            return {k: self.data(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v, name) for v in value]
        if isinstance(value, str):
            if name and secret_name(name) and "://" not in value:
                return MASK if value else value
            return self.text(value)
        return value
