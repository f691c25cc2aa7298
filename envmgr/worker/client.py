"""Host side of the worker protocol: start a worker in an env, run jobs on it, stop it.

One `WorkerClient` is one worker process, kept alive across the jobs of a batch (its model stays
loaded). It
- spawns `<env python> -s -m runtimes.worker` in a clean environment: no inherited PYTHONPATH,
  PYTHONHOME or user site; only the content-hashed copy of `runtimes/` is put on its path, and it
  runs in its own session so a terminal's Ctrl-C reaches the host only;
- reads stdout on a thread (protocol lines, capped) and drains stderr on another, keeping a tail
  for error reports; both directions of the protocol and the stderr tail are kept, bounded, for a debug
  bundle (`transcript`, `stderr_log`: envmgr/worker/transcript.py);
- enforces timeouts: hello and ready (handshake), silence (no line at all, heartbeats included),
  and an optional per-job limit;
- turns worker errors into StemSepErrors with the right exit code, and Ctrl-C (or SIGTERM/SIGHUP,
  raised as it: envmgr/stop_signals.py) into cancel -> terminate -> kill; a second one kills at once.
Nothing here imports numpy or a runtime library.
"""

from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from envmgr import stop_signals
from envmgr.worker.code_copy import WorkerCode
from envmgr.worker.process import signal_group, spawn_worker
from envmgr.worker.transcript import TailLog, Transcript
from envmgr.errors import Cancelled  # one Ctrl-C error for every command; jobs/ catch it from here
from registry.errors import ExitCode, StemSepError
from runtimes import protocol as p

if TYPE_CHECKING:
    from envmgr.worker.prewarm import EarlyWorker

_STDERR_TAIL_LINES = 60


class WorkerError(StemSepError):
    """The worker crashed, could not start, or broke the protocol."""

    exit_code = ExitCode.WORKER
    code = "E_WORKER"


class WorkerTimeout(StemSepError):
    exit_code = ExitCode.TIMEOUT
    code = "E_WORKER_TIMEOUT"


class JobFailed(StemSepError):
    """The worker reported `error` for a job; `code` is the worker's code (docs/protocol.md)."""

    exit_code = ExitCode.JOB
    code = "E_JOB"

    def __init__(self, message: str, *, traceback: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.traceback = traceback


def exit_code_for(code: str) -> ExitCode:
    """Exit code of a worker error code (the table is in docs/protocol.md)."""
    if code.startswith("E_INPUT_"):
        return ExitCode.INPUT
    if code == p.E_CANCELLED:
        return ExitCode.CANCELLED
    if code == p.E_ARTIFACT_MISSING:
        return ExitCode.ARTIFACT
    if code.startswith("E_PROTOCOL_") or code in (p.E_RUNTIME_UNKNOWN, p.E_RUNTIME_IMPORT):
        return ExitCode.WORKER
    return ExitCode.JOB


@dataclass(frozen=True)
class Timeouts:
    hello: float = 30.0  # spawn -> hello: nothing heavy is imported before it (scripts/bench/README.md)
    ready: float = 600.0  # hello -> ready: heavy imports (torch: minutes on a cold network disk)
    silence: float = 30.0  # no line at all during a job; the worker sends a heartbeat every `heartbeat` s
    job: float | None = None  # whole job; None: no limit (a long song on CPU with a big model takes long)
    heartbeat: float = 2.0
    cancel_grace: float = 5.0  # after `cancel`, how long the job may take to stop between chunks
    exit_grace: float = 3.0  # after EOF / SIGTERM, how long before the next step


def staging_dir(output_dir: Path, job: str) -> Path:
    return output_dir / p.staging_dir_name(job)


class WorkerClient:
    def __init__(self, python: Path | str, runtime: str, code: WorkerCode, *, env_id: str | None = None,
                 timeouts: Timeouts = Timeouts(), on_stderr: Callable[[str], None] | None = None,
                 protocol_version: int = p.PROTOCOL_VERSION, pycache_prefix: Path | None = None,
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.python = str(python)
        self.extra_env = dict(extra_env or {})  # over the inherited environment (a server slot's GPU)
        # An adopted env (envmgr/envs/adopted.py) is never written: its worker keeps bytecode under this dir
        self.pycache_prefix = pycache_prefix
        self.runtime = runtime
        self.code = code
        self.env_id = env_id
        self.timeouts = timeouts
        self.protocol_version = protocol_version
        self.hello: dict[str, Any] | None = None
        self.ready: dict[str, Any] | None = None
        self._on_stderr = on_stderr
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stderr_log = TailLog()
        self.transcript = Transcript()
        self._threads: list[threading.Thread] = []
        self._seen_version: int | None = None  # protocol of a first line, even one our schema rejects
        self._send_lock = threading.Lock()  # request_cancel may write from another thread

    # --- lifecycle -------------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The worker's command line: everything that decides which worker this is."""
        cache = ["-X", f"pycache_prefix={self.pycache_prefix}"] if self.pycache_prefix else []
        cmd = [self.python, "-s", *cache, "-m", "runtimes.worker", "--runtime", self.runtime,
               "--host-protocol", str(self.protocol_version), "--worker-code", self.code.digest,
               "--heartbeat", str(self.timeouts.heartbeat)]
        return cmd + ["--env-id", self.env_id] if self.env_id else cmd

    def start(self, early: "EarlyWorker | None" = None) -> dict[str, Any]:
        """Spawn the worker (or adopt `early`'s, when it started this very command) and complete the
        handshake. Returns the `ready` message."""
        cmd = self.command()
        self._proc = early.take(cmd, self.code.root) if early and not self.extra_env else None
        if self._proc is None:
            try:
                self._proc = spawn_worker(cmd, self.code.root, self.extra_env)
            except OSError as exc:
                raise WorkerError(f"cannot start the {self.runtime} worker: {exc}", code="E_WORKER_START",
                                  why=f"running {self.python} failed", hint="the env may be broken; rebuild it") from exc
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True, name="worker-stdout"),
                         threading.Thread(target=self._drain_stderr, daemon=True, name="worker-stderr")]
        for t in self._threads:
            t.start()
        try:
            self.hello = self._handshake_hello()
            self.ready = self._expect("ready", self.timeouts.ready, "ready (the runtime's imports)")
        except BaseException:
            self.kill()
            raise
        return self.ready

    def close(self) -> None:
        """Ask the worker to exit (EOF on stdin), then SIGTERM, then SIGKILL."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._join()
            return
        try:
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            proc.wait(self.timeouts.exit_grace)
        except subprocess.TimeoutExpired:
            self.kill()
        self._join()

    def kill(self, *, now: bool = False) -> None:
        """Stop the worker: SIGTERM to its process group, then SIGKILL; with `now`, SIGKILL at once."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None and not now:
                signal_group(proc, signal.SIGTERM)
                proc.wait(self.timeouts.exit_grace)
        except subprocess.TimeoutExpired:
            pass
        finally:  # also when a stop signal cut the wait short: the worker must not outlive us
            if proc.poll() is None:
                signal_group(proc, signal.SIGKILL)
                proc.wait()
        self._join()

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self.stderr_log.last(_STDERR_TAIL_LINES))

    # --- jobs ------------------------------------------------------------------------------------
    def run(self, job: dict[str, Any], on_event: Callable[[dict[str, Any]], None] = lambda m: None) -> dict[str, Any]:
        """Send one `separate` job (or, with `"type": "op"` in `job`, a recipe's audio operation) and follow it
        to its end. Returns the `result` message.

        Every progress/stem/result message goes to `on_event` as it arrives. On any failure the
        job's staging dir is removed (the worker does that itself unless it died) and the matching
        StemSepError is raised; after a timeout, crash or protocol break the worker is stopped.
        """
        msg = {"type": "separate", **job}
        job_id = msg["job"]
        output_dir = Path(msg["output_dir"])
        what = msg.get("input") or f"the {msg.get('op')} operation"
        try:
            self._send(msg)
            return self._follow(job_id, on_event, what)
        except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM or SIGHUP (stop_signals)
            self._cancel(job_id)
            raise stop_signals.cancelled(stop, why=f"the job on {what} was stopped",
                                         hint="nothing was written; run the command again to start over") from None
        except JobFailed:
            raise  # the worker answered properly and stays usable
        except BaseException:
            self.kill()  # timeout, crash, protocol break: this worker cannot be trusted with another job
            raise
        finally:
            with stop_signals.held():  # a repeated Ctrl-C must not leave half the staged files
                shutil.rmtree(staging_dir(output_dir, job_id), ignore_errors=True)

    def _follow(self, job_id: str, on_event: Callable[[dict[str, Any]], None], input_path: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeouts.job if self.timeouts.job else None
        while True:
            wait = self.timeouts.silence
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            msg = self._next(max(0.0, wait))
            if msg is None:
                if deadline is not None and time.monotonic() >= deadline:
                    raise WorkerTimeout(f"the job on {input_path} took longer than {self.timeouts.job:g} s",
                                        code="E_JOB_TIMEOUT", why=self._why("the worker was stopped"),
                                        hint="raise the limit (--job-timeout) or use a faster model/device")
                raise WorkerTimeout(f"the {self.runtime} worker went silent for {self.timeouts.silence:g} s "
                                    f"during the job on {input_path}", code="E_WORKER_SILENT",
                                    why=self._why("no progress and no heartbeat: the process is hung or frozen"),
                                    hint="run again; if it recurs, report it with the stderr tail above")
            kind = msg["type"]
            if kind == "heartbeat":
                continue
            if msg.get("job") != job_id:
                if kind == "error":  # a job-less error: the worker could not read something we sent
                    raise WorkerError(f"the worker rejected a message: {msg['message']}", code=msg["code"],
                                      why=self._why(""), hint="this is a bug in StemSep; please report it")
                raise WorkerError(f"the worker sent `{kind}` for job {msg.get('job')!r} while running {job_id!r}",
                                  code=p.E_PROTOCOL_UNEXPECTED, why=self._why(""),
                                  hint="this is a bug in the worker; please report it")
            if kind == "error":  # raised, not forwarded: the caller reports failures its own way
                raise JobFailed(msg["message"], code=msg["code"], exit_code=exit_code_for(msg["code"]),
                                hint=msg.get("hint") or "", traceback=msg.get("traceback"),
                                why=_last_line(msg.get("traceback")))
            on_event(msg)
            if kind == "result":
                return msg

    def request_cancel(self, job_id: str) -> None:
        """Ask the worker to stop `job_id` between chunks, from any thread (`stemsep serve` cancels a running
        job so): `run` then raises the worker's E_CANCELLED JobFailed and the worker stays usable. A cancel for
        a job not started yet stops it before its first chunk."""
        self._send({"type": "cancel", "job": job_id})

    def _cancel(self, job_id: str) -> None:
        """Ctrl-C: ask the worker to stop between chunks; if it does not, terminate, then kill. A second
        Ctrl-C (or stop signal) while it is stopping means "stop now": kill at once."""
        try:
            self._send({"type": "cancel", "job": job_id})
            deadline = time.monotonic() + self.timeouts.cancel_grace
            while (left := deadline - time.monotonic()) > 0:
                msg = self._next(left)
                if msg is not None and msg.get("job") == job_id and msg["type"] in ("result", "error"):
                    return  # stopped cleanly; the worker stays usable
        except KeyboardInterrupt:
            self.kill(now=True)
            return
        except StemSepError:  # the worker broke while stopping
            pass
        self.kill()

    # --- plumbing --------------------------------------------------------------------------------
    def _send(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None, "start() the worker first"
        try:
            with self._send_lock:
                self.transcript.add("host", msg)  # before the write: the answer may be read before it returns
                proc.stdin.write(p.encode(msg))
                proc.stdin.flush()
        except (OSError, ValueError) as exc:  # ValueError: stdin closed meanwhile (close() from another thread)
            raise self._crashed(f"while sending `{msg['type']}`") from exc

    def _next(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None after `timeout` seconds of silence. Raises on EOF or a broken line."""
        try:
            kind, value = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if kind == "msg":
            return value
        if kind == "eof":
            self._lines.put((kind, value))  # stays at EOF for any later reader
            raise self._crashed("")
        self.kill()
        raise WorkerError(f"the {self.runtime} worker broke the protocol: {value.message}", code=value.code,
                          why=self._why("the worker's output stream cannot be trusted any more, so it was stopped"),
                          hint="this is a bug in the runtime or its adapter; please report it with the stderr tail")

    def _expect(self, kind: str, timeout: float, what: str) -> dict[str, Any]:
        msg = self._next(timeout)
        if msg is None:
            raise WorkerTimeout(f"the {self.runtime} worker did not say {what} within {timeout:g} s",
                                code="E_HANDSHAKE_TIMEOUT", why=self._why(""),
                                hint="the env may be broken or the disk very slow; rebuild the env or raise the timeout")
        if msg["type"] == "error":
            raise WorkerError(msg["message"], code=msg["code"], exit_code=exit_code_for(msg["code"]),
                              why=_last_line(msg.get("traceback")) or self._why(""), hint=msg.get("hint") or "")
        if msg["type"] != kind:
            raise WorkerError(f"the worker sent `{msg['type']}` where `{kind}` was due",
                              code=p.E_PROTOCOL_UNEXPECTED, why=self._why(""), hint="this is a bug in the worker")
        return msg

    def _handshake_hello(self) -> dict[str, Any]:
        try:
            hello = self._expect("hello", self.timeouts.hello, "hello")
        except WorkerError as exc:
            if exc.code == p.E_PROTOCOL_BAD_FIELD and self._seen_version is not None:
                hello = {"protocol": self._seen_version}  # an incompatible hello: report the versions below
            else:
                raise
        if hello["protocol"] != self.protocol_version:
            raise WorkerError(p.version_mismatch(self.protocol_version, hello["protocol"]), code=p.E_PROTOCOL_VERSION,
                              why=f"the worker code in {self.code.root} does not match this StemSep",
                              hint="remove that dir (it is a cache) or reinstall stemsep so both sides match")
        return hello

    def _read_stdout(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        reader = p.LineReader(proc.stdout)
        while True:
            line: bytes | None = b""  # an over-long line raises before it is returned
            try:
                line = reader.read_line()
                if line is None:
                    break
                if self.hello is None:
                    self._note_version(line)
                msg = p.decode(line, p.WORKER_MESSAGES)
                self.transcript.add("worker", msg)
                self._lines.put(("msg", msg))
            except p.ProtocolError as exc:
                self.transcript.add("worker", {"type": "(unreadable line)", "code": exc.code, "message": exc.message,
                                               "line": (line or b"")[:500].decode("utf-8", "replace")})
                self._lines.put(("error", exc))
            except (OSError, ValueError):
                break
        self._lines.put(("eof", None))

    def _note_version(self, line: bytes) -> None:
        """Keep the protocol version of a first line, even when the rest of it is not our schema."""
        try:
            first = json.loads(line)
            if isinstance(first, dict) and first.get("type") == "hello" and isinstance(first.get("protocol"), int):
                self._seen_version = first["protocol"]
        except ValueError:
            pass

    def _drain_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "backslashreplace").rstrip("\n")
            self.stderr_log.append(line)
            if self._on_stderr:
                self._on_stderr(line)

    def _join(self) -> None:
        for t in self._threads:
            t.join(timeout=2.0)
        proc = self._proc
        if proc is not None:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass

    def _crashed(self, during: str) -> WorkerError:
        proc = self._proc
        assert proc is not None
        try:
            rc = proc.wait(self.timeouts.exit_grace)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = proc.returncode
        self._join()
        how = f"killed by signal {signal.Signals(-rc).name}" if rc is not None and rc < 0 else f"exit code {rc}"
        hint = ("a kill without a message is often the system running out of memory; free memory or use a "
                "smaller model/chunk size" if rc == -signal.SIGKILL else "the stderr tail above says what went wrong")
        return WorkerError(f"the {self.runtime} worker (pid {proc.pid}) stopped unexpectedly{' ' + during if during else ''}"
                           f" ({how})", code="E_WORKER_CRASHED", why=self._why(""), hint=hint)

    def _why(self, lead: str) -> str:
        tail = self.stderr_tail.strip()
        parts = [lead] if lead else []
        if tail:
            parts.append("worker stderr (last lines):\n    " + "\n    ".join(tail.splitlines()[-20:]))
        return "\n".join(parts)


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""
