"""The worker: `python -m runtimes.worker --runtime R`, run by the host inside a managed env.

Speaks the protocol of runtimes/protocol.py (docs/protocol.md) on stdin/stdout:
1. points fd 1 at stderr and keeps the protocol on a private dup, so prints from libraries and C
   code land on stderr and can never corrupt the stream (fd 0 likewise: nothing can eat protocol
   input);
2. says `hello` at once (before heavy imports), checks the host's protocol version, loads the
   runtime's adapter (heavy imports), says `ready`;
3. runs `separate` jobs one after another; each ends with exactly one `result` or `error`; a
   reader thread takes `cancel` at any time, honoured between chunks; a heartbeat thread shows the
   host that the process is alive during long chunks;
4. on `shutdown` or end of stdin, finishes the jobs already sent and exits; a vanished host (its
   end of stdout closed) cancels them.
Outputs go to a staging dir inside the output dir and are renamed into place only when the whole
job has succeeded; whatever happens, the staging dir is removed.

Test hook: STEMSEP_WORKER_TEST_HOOK may name a Python file that the worker executes after `hello`
(the host passes it through only when set). Tests use it to register fault-injecting model types;
nothing else reads it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import queue
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from runtimes import protocol as p

TEST_HOOK_ENV = "STEMSEP_WORKER_TEST_HOOK"
_TRACEBACK_LIMIT = 64 * 1024
_EOF = object()


class Channel:
    """The protocol's two ends: private dups of fd 0/1; fd 0 then reads /dev/null, fd 1 writes stderr."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._out = os.dup(1)
        self._in = os.fdopen(os.dup(0), "rb")
        os.dup2(2, 1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        self._lock = threading.Lock()
        self.reader = p.LineReader(self._in)
        self.broken = threading.Event()

    def send(self, msg: dict[str, Any]) -> None:
        try:
            line = p.encode(msg)
        except p.ProtocolError as exc:  # e.g. an enormous traceback: say so in a line that fits
            line = p.encode({"type": "error", "job": msg.get("job"), "code": exc.code,
                             "message": f"worker could not encode a `{msg.get('type')}` message: {exc.message}"})
        with self._lock:
            if self.broken.is_set():
                return
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._out, view):]
            except OSError:  # the host is gone: stop work, nothing more to say
                self.broken.set()


class Worker:
    def __init__(self, channel: Channel, adapter: Any, device: str) -> None:
        self.channel = channel
        self.adapter = adapter
        self.device = device
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.current: str | None = None
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    # --- threads -----------------------------------------------------------------------------
    def read_loop(self) -> None:
        """Reader thread: cancels act at once; jobs and shutdown queue for the main loop."""
        while True:
            try:
                line = self.channel.reader.read_line()
                if line is None:
                    break
                msg = p.decode(line, p.HOST_MESSAGES)
            except p.ProtocolError as exc:
                self.channel.send({"type": "error", "job": None, "code": exc.code, "message": exc.message,
                                   "hint": "the host sent a line this worker cannot read; it was ignored"})
                continue
            except OSError:
                break
            if msg["type"] == "cancel":
                with self._lock:
                    self._cancelled.add(msg["job"])
            elif msg["type"] == "shutdown":
                break
            else:
                self.inbox.put(msg)
        self.inbox.put(_EOF)  # no more jobs: finish the queued ones, then exit

    def heartbeat_loop(self, interval: float) -> None:
        while not self.channel.broken.wait(interval):
            self.channel.send({"type": "heartbeat", "job": self.current})

    def is_cancelled(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled or self.channel.broken.is_set()

    # --- jobs --------------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            msg = self.inbox.get()
            if msg is _EOF or self.channel.broken.is_set():
                return
            self.current = msg["job"]
            try:
                self.run_job(msg)
            finally:
                self.current = None
                with self._lock:
                    self._cancelled.discard(msg["job"])

    def run_job(self, msg: dict[str, Any]) -> None:
        from runtimes.adapter import Job, JobContext
        from runtimes.errors import JobCancelled

        started = time.monotonic()
        if msg["type"] == "op":
            self.run_op(msg, started)
            return
        job = Job.from_message(msg)
        staging = job.output_dir / p.staging_dir_name(job.id)
        try:
            _check_job(job)
            if self.is_cancelled(job.id):
                raise JobCancelled()
            _make_staging(staging, job.output_dir)
            ctx = JobContext(job, staging, self.channel.send, lambda: self.is_cancelled(job.id), self.device)
            stems = self.adapter.separate(ctx)
            ctx.check_cancelled()
            staged = _stage(stems, job, staging, ctx)
            ctx.check_cancelled()
            final = _commit(staged, job)
            for info in final:
                self.channel.send({"type": "stem", "job": job.id, **info})
            self.channel.send({"type": "result", "job": job.id, "stems": final,
                               "seconds": round(time.monotonic() - started, 4), "warnings": ctx.warnings})
        except BaseException as exc:  # noqa: BLE001 - libraries call sys.exit(); the worker must answer anyway
            self._send_failure(job.id, exc)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def run_op(self, msg: dict[str, Any], started: float) -> None:
        """An `op` job (runtimes/op_job.py): one audio operation of a recipe, answered like a separation."""
        from runtimes.errors import JobCancelled
        from runtimes.op_job import op_result, run_op

        job_id = msg["job"]
        output_dir = Path(msg["output_dir"])
        staging = output_dir / p.staging_dir_name(job_id)
        try:
            if self.is_cancelled(job_id):
                raise JobCancelled()
            _make_staging(staging, output_dir)
            stem = run_op(msg, staging, self.channel.send, lambda: self.is_cancelled(job_id))
            self.channel.send({"type": "stem", "job": job_id, **{k: v for k, v in stem.items() if k != "warnings"}})
            self.channel.send(op_result(msg, stem, started))
        except BaseException as exc:  # noqa: BLE001 - answered as a separation's failure is
            self._send_failure(job_id, exc)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _send_failure(self, job_id: str, exc: BaseException) -> None:
        from runtimes.errors import JobError

        if isinstance(exc, JobError):
            cause = exc.__cause__
            self.channel.send({"type": "error", "job": job_id, "code": exc.code, "message": exc.message,
                               "hint": exc.hint, "traceback": _format(cause) if cause else None})
            return
        self.channel.send({"type": "error", "job": job_id, "code": p.E_WORKER_INTERNAL,
                           "message": f"{type(exc).__name__}: {exc}",
                           "hint": "this is a bug in the runtime or its adapter; the traceback says where",
                           "traceback": _format(exc)})


def _make_staging(staging: Path, output_dir: Path) -> None:
    from runtimes.errors import JobError

    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JobError(p.E_OUTPUT_WRITE, f"cannot create the output dir {output_dir}: {exc.strerror or exc}",
                       hint="pick an output dir you can write to (-o)") from exc


def _format(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text if len(text) <= _TRACEBACK_LIMIT else "...\n" + text[-_TRACEBACK_LIMIT:]


def _check_job(job: Any) -> None:
    from runtimes.errors import JobError

    if job.output_format not in p.OUTPUT_FORMATS:
        raise JobError(p.E_BAD_JOB, f"unknown output format {job.output_format!r}",
                       hint=f"use one of {', '.join(p.OUTPUT_FORMATS)}")
    for name in [*job.output_names.values(), job.output_template]:
        if not isinstance(name, str) or not _is_bare_name(name.replace("{stem}", "x")):
            raise JobError(p.E_BAD_JOB, f"output name {name!r} is not a bare file name",
                           hint="output names may not contain directories or start with a dot")


def _is_bare_name(name: str) -> bool:
    return bool(name) and os.path.basename(name) == name and not name.startswith(".") and "/" not in name \
        and "\\" not in name and "\0" not in name


def _output_name(job: Any, stem: str) -> str:
    name = job.output_names.get(stem)
    if name is None:
        name = job.output_template.replace("{stem}", re.sub(r"[\\/\0:]", "_", stem) or "stem")
    return name


def _stage(stems: Any, job: Any, staging: Path, ctx: Any) -> list[tuple[Path, str, dict[str, Any]]]:
    """Write array stems into the staging dir (file stems are there already). Returns (temp, final name, info)."""
    import soundfile as sf

    from runtimes.adapter import StemArray
    from runtimes.errors import JobError

    staged, names = [], set()
    total = len(stems)
    ctx.progress("write", 0, total)
    for i, stem in enumerate(stems, 1):
        final = _output_name(job, stem.name)
        if final in names:
            raise JobError(p.E_BAD_JOB, f"two stems would both be written to {final}")
        names.add(final)
        if isinstance(stem, StemArray):
            tmp = staging / f"{i}.{job.output_format}"
            _write_array(tmp, stem, job.output_format, ctx)
        else:
            tmp = (staging / stem.path).resolve()
            if tmp.parent != staging.resolve() or not tmp.is_file():
                raise JobError(p.E_OUTPUT_WRITE, f"the runtime's stem file {stem.path!r} is not in its staging dir")
        try:
            info = sf.info(str(tmp))
        except Exception as exc:  # noqa: BLE001
            raise JobError(p.E_OUTPUT_WRITE, f"stem {stem.name} was written but cannot be read back: {exc}") from exc
        staged.append((tmp, final, {"name": stem.name, "sample_rate": int(info.samplerate), "channels": int(info.channels),
                                    "frames": int(info.frames), "format": info.format, "subtype": info.subtype}))
        ctx.progress("write", i, total)
    return staged


def _write_array(path: Path, stem: Any, fmt: str, ctx: Any) -> None:
    """An array stem as a file in the job's format (the same writer adapters stream their stems through)."""
    import numpy as np

    from runtimes.audio_io import StemWriter

    audio = np.asarray(stem.audio, dtype=np.float32)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    with StemWriter(path, stem.sample_rate, channels, fmt, label=stem.name, warn=ctx.warn) as writer:
        writer.write(audio)


def _commit(staged: list[tuple[Path, str, dict[str, Any]]], job: Any) -> list[dict[str, Any]]:
    """Rename every staged file into place; if one rename fails, take back the ones already done."""
    from runtimes.errors import JobError

    done: list[dict[str, Any]] = []
    try:
        for tmp, final, info in staged:
            target = job.output_dir / final
            os.replace(tmp, target)
            done.append({**info, "path": str(target)})
    except OSError as exc:
        for info in done:
            Path(info["path"]).unlink(missing_ok=True)
        raise JobError(p.E_OUTPUT_WRITE, f"cannot move stems into {job.output_dir}: {exc}") from exc
    return done


def _run_test_hook() -> None:
    path = os.environ.get(TEST_HOOK_ENV)
    if not path:
        return
    spec = importlib.util.spec_from_file_location("stemsep_worker_test_hook", path)
    assert spec and spec.loader, f"{TEST_HOOK_ENV}={path} is not a Python file"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtimes.worker")
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--host-protocol", type=int, required=True)
    parser.add_argument("--env-id", default=None)
    parser.add_argument("--worker-code", default=None, help="content hash of the runtimes/ copy (for hello)")
    parser.add_argument("--heartbeat", type=float, default=2.0, help="seconds between heartbeats")
    args = parser.parse_args(argv)
    # Ctrl-C is the host's to handle (it sends `cancel`); the worker runs in its own session anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = Channel()
    channel.send({"type": "hello", "protocol": p.PROTOCOL_VERSION, "pid": os.getpid(),
                  "python": platform.python_version(), "runtime": args.runtime, "env_id": args.env_id,
                  "worker_code": args.worker_code})
    if args.host_protocol != p.PROTOCOL_VERSION:
        channel.send({"type": "error", "job": None, "code": p.E_PROTOCOL_VERSION,
                      "message": p.version_mismatch(args.host_protocol, p.PROTOCOL_VERSION),
                      "hint": "host and worker code come from different StemSep versions; reinstall stemsep"})
        return 3
    from runtimes.adapter import load_adapter
    from runtimes.errors import JobError

    try:
        _run_test_hook()
        adapter = load_adapter(args.runtime)
        info = adapter.load()
    except JobError as exc:
        channel.send({"type": "error", "job": None, "code": exc.code, "message": exc.message, "hint": exc.hint})
        return 4
    except BaseException as exc:  # noqa: BLE001 - a broken env must still answer with an error
        channel.send({"type": "error", "job": None, "code": p.E_RUNTIME_IMPORT,
                      "message": f"runtime {args.runtime} could not start: {type(exc).__name__}: {exc}",
                      "hint": "the runtime's env may be incomplete or broken; the traceback says what failed",
                      "traceback": _format(exc)})
        return 4
    channel.send({"type": "ready", "runtime": args.runtime, "versions": info.versions, "device": info.device,
                  "warnings": info.warnings})
    worker = Worker(channel, adapter, info.device)
    threading.Thread(target=worker.read_loop, name="protocol-reader", daemon=True).start()
    threading.Thread(target=worker.heartbeat_loop, args=(args.heartbeat,), name="heartbeat", daemon=True).start()
    try:
        worker.serve()
    finally:
        adapter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
