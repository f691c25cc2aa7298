"""What a worker said and was told, kept in memory for a debug bundle (envmgr/diagnostics/bundle.py).

Both are bounded, so a long batch or a chatty library cannot grow the host: the protocol transcript keeps the
last `max_messages` messages (heartbeats only counted: they say nothing but "alive"), the stderr log the last
`max_bytes` bytes of whole lines. No audio passes through the protocol (jobs name files), so a message is
kept as it was sent, except that an over-long string value is cut.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

_MAX_STRING = 4000  # a traceback fits; a runaway progress stage does not


class Transcript:
    """The protocol messages of one worker, in order: (seconds since start, "host" | "worker", message)."""

    def __init__(self, max_messages: int = 2000) -> None:
        self._start = time.monotonic()
        self._items: collections.deque[tuple[float, str, dict[str, Any]]] = collections.deque(maxlen=max_messages)
        self._lock = threading.Lock()
        self.heartbeats = 0
        self.dropped = 0  # messages older than the kept ones

    def add(self, sender: str, msg: dict[str, Any]) -> None:
        if msg.get("type") == "heartbeat":
            self.heartbeats += 1
            return
        with self._lock:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
            self._items.append((round(time.monotonic() - self._start, 3), sender, _shortened(msg)))

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"t": t, "from": sender, "message": msg} for t, sender, msg in self._items]


class TailLog:
    """The last `max_bytes` of a text stream, line by line."""

    def __init__(self, max_bytes: int = 256 * 1024, max_line: int = 2000) -> None:
        self.max_bytes, self.max_line = max_bytes, max_line
        self._lines: collections.deque[str] = collections.deque()
        self._size = 0
        self.dropped_lines = 0

    def append(self, line: str) -> None:
        line = line[: self.max_line]
        self._lines.append(line)
        self._size += len(line.encode("utf-8", "replace")) + 1
        while self._size > self.max_bytes and len(self._lines) > 1:
            self._size -= len(self._lines.popleft().encode("utf-8", "replace")) + 1
            self.dropped_lines += 1

    def last(self, n: int) -> list[str]:
        return list(self._lines)[-n:]

    def text(self) -> str:
        return "".join(line + "\n" for line in self._lines)


def _shortened(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_STRING:
        return value[:_MAX_STRING] + f"... [{len(value) - _MAX_STRING} more characters]"
    if isinstance(value, dict):
        return {k: _shortened(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shortened(v) for v in value]
    return value
