"""A real `stemsep serve --http` process for tests: started on a free port, its URL and token read from what
it prints, talked to with httpx, stopped with SIGTERM or killed with SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import spawn_cli
from tests.support.wait import wait_for

LISTENING = re.compile(r"listening on (http://\S+)")
TOKEN = re.compile(r"^token: (\S+) ")


class Server:
    def __init__(self, env: Mapping[str, str], *args: Any, cwd: Path) -> None:
        self.stderr_path = cwd / "serve.stderr"
        with open(self.stderr_path, "a") as stderr:  # a file, not a pipe nobody drains
            self.proc = spawn_cli("serve", "--port", "0", *args, env=env, cwd=cwd, stderr=stderr)
        assert self.proc.stdout is not None
        url = token = None
        for line in self.proc.stdout:
            if match := LISTENING.search(line):
                url = match.group(1)
            elif match := TOKEN.match(line):
                token = match.group(1)
                break
        if url is None or token is None:
            self.proc.wait(30)
            raise AssertionError(f"stemsep serve did not start: {self.stderr_path.read_text()}")
        self.url, self.token = url, token
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def submit(self, **spec: Any) -> str:
        response = self.http.post("/v1/jobs", json={"kind": "separate", **spec})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_final(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        return wait_for(lambda: (job := self.job(job_id))["state"] in ("completed", "failed", "cancelled") and job,
                        what=f"job {job_id} to finish", timeout=timeout, interval=0.1, process=self.proc)

    def events(self, job_id: str, last_event_id: int | None = None) -> Iterator[dict[str, Any]]:
        """The job's Server-Sent Events as dicts (with the SSE `id` as `sse_id`), to the stream's end."""
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=120) as response:
            assert response.status_code == 200, response.read()
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if not line:
                    if "data" in fields:
                        yield {**json.loads(fields["data"]), "sse_id": int(fields["id"]), "sse_event": fields["event"]}
                    fields = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    fields[key] = value

    def stop(self) -> int:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self._close_pipes()

    def kill9(self) -> None:
        self.http.close()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc.stdout:
            self.proc.stdout.close()
