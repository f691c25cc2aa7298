"""A real `stemsep serve --stdio` process, driven as StemSep's desktop app drives its backend: one JSON object
per line on stdin, every stdout line read by a thread (each must be one JSON object: the test fails on any
other), replies matched by `id`, events kept in arrival order."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support.cli import spawn_cli


class StdioBackend:
    def __init__(self, env: Mapping[str, str], cwd: Path, *args: str) -> None:
        self.stderr_path = cwd / "serve-stdio.stderr"
        with open(self.stderr_path, "a") as stderr:
            self.proc = spawn_cli("serve", "--stdio", *args, env=env, cwd=cwd, stderr=stderr, stdin=-1)
        self.lines: list[dict[str, Any]] = []  # everything, in order
        self.not_json: list[str] = []
        self._arrived = threading.Condition()
        self._ids = itertools.count(1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                self.not_json.append(raw)
                continue
            with self._arrived:
                self.lines.append(message)
                self._arrived.notify_all()

    def send_line(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def send(self, command: str, request_id: Any = None, **payload: Any) -> Any:
        """Write a request; returns its id."""
        request_id = next(self._ids) + 1000 if request_id is None else request_id
        self.send_line(json.dumps({"command": command, "id": request_id, **payload}))
        return request_id

    def reply(self, request_id: Any, timeout: float = 60) -> dict[str, Any]:
        return self.wait(lambda m: m.get("id") == request_id and isinstance(m.get("success"), bool),
                         f"the reply to {request_id}", timeout)

    def call(self, command: str, timeout: float = 60, **payload: Any) -> dict[str, Any]:
        return self.reply(self.send(command, **payload), timeout)

    def ok(self, command: str, timeout: float = 60, **payload: Any) -> Any:
        answer = self.call(command, timeout, **payload)
        assert answer["success"] is True, answer
        return answer["data"]

    def wait(self, match: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60,
             start: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = next((m for m in self.lines[start:] if match(m)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no {what} within {timeout} s (exit {self.proc.poll()}); stderr: "
                                         f"{self.stderr_path.read_text()[-3000:]}")
                self._arrived.wait(min(left, 0.5))

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        with self._arrived:
            return [m for m in self.lines if m.get("job_id") == job_id and "type" in m]

    def wait_terminal(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        return self.wait(lambda m: m.get("job_id") == job_id and m.get("type") in TERMINAL,
                         f"terminal event of {job_id}", timeout)

    def index_of(self, message: dict[str, Any]) -> int:
        with self._arrived:
            return next(i for i, m in enumerate(self.lines) if m is message)

    def close_stdin(self, timeout: float = 60) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout)


TERMINAL = ("separation_complete", "separation_error", "separation_cancelled")
