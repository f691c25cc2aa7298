"""Start the worker a `stemsep separate` will most likely need before the host has planned anything.

A fresh `stemsep separate` process spends a good part of its start on imports and planning (registry
types, preflight, the input probe; figures in scripts/bench/README.md) before it knows which env to start
a worker in, and the worker then pays its own imports. So the host remembers, per set of model arguments
(`-m`, `--runtime`), the worker command it started last, and the next run with the same arguments starts
that command first thing: the worker's imports overlap the host's planning (scripts/bench/separate_latency.py measures both ways).

Nothing is trusted from the memory: planning runs exactly as before, and the early worker is adopted
only when the plan starts the very same command (env python, runtime, worker code hash, protocol)
from the same code copy. Otherwise it is stopped unused. `prewarm = false` turns this off.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from envmgr.config import MachineConfig
from envmgr.errors import StoreError
from envmgr.fsutil import atomic_write_json, read_json
from envmgr.worker.process import signal_group, spawn_worker

_WORKER_ARGS = ["-s", "-m", "runtimes.worker"]


class EarlyWorker:
    """One run's early worker: started from the remembered command, adopted at most once, else stopped."""

    def __init__(self, config: MachineConfig, models: list[str], runtime: str | None) -> None:
        self.config = config
        self.key = json.dumps({"models": models, "runtime": runtime})
        self.hint_path = config.cache_dir / "prewarm" / f"{hashlib.sha256(self.key.encode()).hexdigest()[:16]}.json"
        self.hint: Any = None  # what the memory held when this run started
        self.proc: subprocess.Popen[bytes] | None = None
        self.outcome = "none"  # what became of it, for the worker event: none | adopted | stopped

    def start(self) -> "EarlyWorker":
        """Start the remembered worker, if there is one that still looks runnable. Never raises."""
        if not self.config.prewarm:
            return self
        self.hint = read_json(self.hint_path)
        if self._plausible(self.hint):
            try:
                self.proc = spawn_worker(self.hint["cmd"], Path(self.hint["cwd"]))
            except (OSError, ValueError):
                pass  # env or code copy gone: the plan starts what it needs
        return self

    def take(self, cmd: list[str], code_root: Path) -> subprocess.Popen[bytes] | None:
        """The early worker's process when it runs exactly `cmd` from `code_root` and is still alive."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if self._same(cmd, code_root) and proc.poll() is None:
            self.outcome = "adopted"
            return proc
        _stop(proc)
        self.outcome = "stopped"
        return None

    def remember(self, cmd: list[str], code_root: Path) -> None:
        """Record the worker this run used as the one to start early next time (written only if it changed)."""
        if self.config.prewarm and not self._same(cmd, code_root):
            try:
                atomic_write_json(self.hint_path, {"key": self.key, "cmd": cmd, "cwd": str(code_root)})
            except StoreError:
                pass  # a read-only cache costs speed only

    def discard(self) -> None:
        """Stop the early worker if nothing adopted it."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _stop(proc)

    def _same(self, cmd: list[str], code_root: Path) -> bool:
        return isinstance(self.hint, dict) and self.hint.get("cmd") == cmd and self.hint.get("cwd") == str(code_root)

    def _plausible(self, hint: Any) -> bool:
        """A worker command of ours, with its interpreter in our env store: never run anything else."""
        if not (isinstance(hint, dict) and isinstance(hint.get("cmd"), list) and isinstance(hint.get("cwd"), str)):
            return False
        cmd = hint["cmd"]
        if len(cmd) < 4 or not all(isinstance(a, str) for a in cmd) or cmd[1:4] != _WORKER_ARGS:
            return False
        return Path(cmd[0]).is_relative_to(self.config.env_store) and Path(hint["cwd"]).is_relative_to(
            self.config.cache_dir / "worker-code")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """An unused worker is still importing or idle: nothing to save, so kill its whole session."""
    signal_group(proc, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    proc.wait()
