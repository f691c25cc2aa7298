"""The durable job queue `stemsep serve` keeps: jobs and their events in SQLite, in the state dir.

Guarantee: a job `submit` returned an id for is never lost. The row is committed with
`synchronous=FULL` before the id is returned; everything else (events, state changes) is committed
before the caller goes on, so a kill -9 of the server loses at most what happened after the last
commit. On open, a job the last server left `running` is put back at the head of the queue (its
attempt counted, a `requeued` event appended): it runs again from the start; the worker's outputs are
staged and renamed, so no half-written stem is ever in place. Finished jobs stay finished.

Events are stored per job with a sequence number (1, 2, 3... per job, never reused), so an event stream
that reconnects after `seq` N (`events(job, after_seq=N)`, SSE's Last-Event-ID) and a client that polls
the job read the same truth. One server owns a queue at a time (a lock file beside the database).

States: queued -> running -> completed | failed | cancelled; queued -> cancelled. A running job with a
cancel request reads as `cancelling` until the scheduler ends it.
"""

from __future__ import annotations

import builtins  # JobQueue.list shadows the builtin in its class body
import json
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from envmgr.serve.spec import JobSpec, parse_spec
from registry.errors import ExitCode, StemSepError

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "queued", "running", "completed", "failed", "cancelled"
FINAL = (COMPLETED, FAILED, CANCELLED)
TERMINAL_EVENTS = FINAL  # the last event of a job is named after its final state
DB_NAME = "jobs.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL, kind TEXT NOT NULL, grp TEXT NOT NULL, spec TEXT NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL, attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT, last_seq INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, position);
CREATE TABLE IF NOT EXISTS events (
    job TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class QueueError(StemSepError):
    """A queue operation the job's state does not allow, or an unknown job."""

    exit_code = ExitCode.USAGE
    code = "E_QUEUE"


class QueueBusy(StemSepError):
    exit_code = ExitCode.USAGE
    code = "E_QUEUE_BUSY"


@dataclass(frozen=True)
class Job:
    id: str
    position: int
    spec: JobSpec
    state: str
    created: float
    started: float | None
    finished: float | None
    attempts: int
    cancel_requested: bool
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    last_seq: int

    @property
    def group(self) -> str:
        return self.spec.group

    @property
    def shown_state(self) -> str:
        return "cancelling" if self.state == RUNNING and self.cancel_requested else self.state

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.spec.kind, "state": self.shown_state, "spec": self.spec.to_json(),
                "created": self.created, "started": self.started, "finished": self.finished,
                "attempts": self.attempts, "result": self.result, "error": self.error, "last_seq": self.last_seq}


class JobQueue:
    """The queue of one state dir. Thread-safe: one connection behind a lock (SQLite writes are serial anyway).

    `state_dir/serve/jobs.sqlite3` holds it; `open` takes the server's lock and recovers interrupted jobs."""

    def __init__(self, directory: Path) -> None:
        from filelock import FileLock, Timeout

        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / DB_NAME
        self._owner = FileLock(str(directory / "queue.lock"))
        try:
            self._owner.acquire(timeout=0)  # an flock: freed by the kernel when its holder dies, kill -9 too
        except Timeout:
            raise QueueBusy(f"another stemsep serve is using the job queue in {directory}",
                            why="one server owns a queue at a time, so no job runs twice",
                            hint="stop that server, or give this one another STEMSEP_HOME / state_dir") from None
        self._lock = threading.RLock()
        self._cancel_listeners: list[Callable[[str], None]] = []
        self._changed = threading.Condition(self._lock)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: survives a killed process; FULL where it matters
        self._db.executescript(_SCHEMA)
        self.requeued = self._recover()

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._owner.release()

    # --- the client's side ------------------------------------------------------------------------
    def submit(self, spec: JobSpec | dict[str, Any]) -> str:
        """Queue a job; its id is returned only once the row is on disk."""
        spec = spec if isinstance(spec, JobSpec) else parse_spec(spec)
        job_id = str(uuid.uuid4())
        now = time.time()
        with self._write(durable=True) as db:
            position = db.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM jobs").fetchone()[0]
            db.execute("INSERT INTO jobs (id, position, kind, grp, spec, state, created) VALUES (?,?,?,?,?,?,?)",
                       (job_id, position, spec.kind, spec.group, json.dumps(spec.to_json()), QUEUED, now))
            self._append(db, job_id, {"type": QUEUED, "position": position}, now)
        return job_id

    def get(self, job_id: str) -> Job:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise QueueError(f"no job {job_id!r}", code="E_JOB_UNKNOWN", hint="list the jobs to see their ids")
        return _job(row)

    def list(self, states: Sequence[str] = ()) -> list[Job]:
        """Jobs in queue order (running and finished ones keep the place they were queued at)."""
        query = f"SELECT {_COLUMNS} FROM jobs"
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
        with self._lock:
            rows = self._db.execute(query + " ORDER BY position", tuple(states)).fetchall()
        return [_job(r) for r in rows]

    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one is marked and the scheduler stops it (its last
        event is `cancelled` then). A finished job cannot be cancelled."""
        with self._write() as db:
            job = self.get(job_id)
            if job.state == QUEUED:
                now = time.time()
                db.execute("UPDATE jobs SET state = ?, finished = ? WHERE id = ?", (CANCELLED, now, job_id))
                self._append(db, job_id, {"type": CANCELLED, "message": "cancelled while queued"}, now)
            elif job.state == RUNNING:
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            else:
                raise QueueError(f"job {job_id} is already {job.state}", code="E_JOB_FINISHED",
                                 why="only a queued or running job can be cancelled")
        for listener in list(self._cancel_listeners):
            listener(job_id)
        return self.get(job_id)

    def pause(self) -> None:
        """No queued job starts until `resume`; running ones finish. Survives a restart."""
        self._set_meta("paused", "1")

    def resume(self) -> None:
        self._set_meta("paused", "0")

    @property
    def paused(self) -> bool:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'paused'").fetchone()
        return bool(row and row[0] == "1")

    def reorder(self, job_ids: Sequence[str]) -> builtins.list[Job]:
        """The named queued jobs go first, in the given order; the other queued jobs follow in their order.
        Returns the queued jobs in their new order."""
        with self._write() as db:
            queued = [r[0] for r in db.execute("SELECT id FROM jobs WHERE state = ? ORDER BY position", (QUEUED,))]
            wanted = list(dict.fromkeys(job_ids))
            not_queued = [j for j in wanted if j not in set(queued)]
            if not_queued:
                raise QueueError(f"not queued: {', '.join(not_queued)}", code="E_JOB_NOT_QUEUED",
                                 why="only queued jobs can be reordered", hint="list the queued jobs and try again")
            positions = [r[0] for r in db.execute("SELECT position FROM jobs WHERE state = ? ORDER BY position",
                                                   (QUEUED,))]
            order = wanted + [j for j in queued if j not in set(wanted)]
            for job_id, position in zip(order, positions):
                db.execute("UPDATE jobs SET position = ? WHERE id = ?", (position, job_id))
        return self.list((QUEUED,))

    def events(self, job_id: str, after_seq: int = 0, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """The job's events after `after_seq`, oldest first: each its data plus `seq` and `time`."""
        self.get(job_id)  # unknown job: QueueError
        query = "SELECT seq, time, data FROM events WHERE job = ? AND seq > ? ORDER BY seq"
        args: tuple[Any, ...] = (job_id, after_seq)
        if limit is not None:
            query, args = query + " LIMIT ?", args + (limit,)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [{**json.loads(data), "seq": seq, "time": t} for seq, t, data in rows]

    def wait_events(self, job_id: str, after_seq: int, timeout: float) -> bool:
        """Block until the job has an event after `after_seq` or `timeout` passes; True if it has."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.get(job_id).last_seq <= after_seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def naming(self, given_input: str) -> builtins.list[Job]:
        """The jobs whose spec names this input (e.g. `upload:<id>`), in queue order."""
        pattern = "%" + json.dumps(given_input).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE spec LIKE ? ESCAPE '\\' ORDER BY position",
                                    (pattern,)).fetchall()
        return [job for job in map(_job, rows) if given_input in job.spec.inputs]

    def prune(self, keep: int, finished_before: float | None) -> builtins.list[Job]:
        """Remove finished jobs with their events: those that finished before `finished_before` (a time.time();
        None: no age limit) and those beyond the `keep` most recently finished (0: no count limit). Queued and
        running jobs are never removed. Returns the removed jobs."""
        with self._write() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state IN (?,?,?) ORDER BY finished DESC, position DESC",
                              FINAL).fetchall()
            removed = [job for rank, job in enumerate(map(_job, rows))
                       if (keep and rank >= keep) or (finished_before is not None
                                                      and (job.finished or 0) < finished_before)]
            for job in removed:
                db.execute("DELETE FROM events WHERE job = ?", (job.id,))
                db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
        return removed

    # --- the scheduler's side ---------------------------------------------------------------------
    def on_cancel(self, listener: Callable[[str], None]) -> None:
        """`listener(job_id)` after a cancel request (the scheduler stops a running job with it)."""
        self._cancel_listeners = [*self._cancel_listeners, listener]

    def claim(self, pick: Callable[[builtins.list[Job]], Job | None]) -> Job | None:
        """Mark the queued job `pick` chooses from the queued ones (in queue order) as running; None when
        paused, empty, or `pick` declines."""
        with self._write(durable=True) as db:
            if self.paused:
                return None
            queued = self.list((QUEUED,))
            chosen = pick(queued) if queued else None
            if chosen is None:
                return None
            now = time.time()
            db.execute("UPDATE jobs SET state = ?, started = ?, attempts = attempts + 1 WHERE id = ?",
                       (RUNNING, now, chosen.id))
            self._append(db, chosen.id, {"type": "started", "attempt": chosen.attempts + 1}, now)
        return self.get(chosen.id)

    def append_event(self, job_id: str, data: dict[str, Any]) -> int:
        with self._write() as db:
            return self._append(db, job_id, data, time.time())

    def finish(self, job_id: str, state: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, event: dict[str, Any] | None = None) -> Job:
        """End a running job: its final state, result or error, and its terminal event (type = state)."""
        assert state in FINAL
        now = time.time()
        with self._write(durable=True) as db:
            db.execute("UPDATE jobs SET state = ?, finished = ?, result = ?, error = ? WHERE id = ?",
                       (state, now, _dump(result), _dump(error), job_id))
            self._append(db, job_id, {**(event or {}), "type": state}, now)
        return self.get(job_id)

    # --- plumbing ---------------------------------------------------------------------------------
    def _recover(self) -> builtins.list[str]:
        """Jobs a killed server left running run again from the start, ahead of the queued ones (one whose
        cancel was asked for is cancelled instead)."""
        with self._write(durable=True) as db:
            for (job_id,) in db.execute("SELECT id FROM jobs WHERE state = ? AND cancel_requested = 1",
                                        (RUNNING,)).fetchall():
                db.execute("UPDATE jobs SET state = ?, finished = ? WHERE id = ?", (CANCELLED, time.time(), job_id))
                self._append(db, job_id, {"type": CANCELLED, "message": "cancelled; the server stopped meanwhile"},
                             time.time())
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE state = ? ORDER BY position", (RUNNING,))]
            first = db.execute("SELECT COALESCE(MIN(position), 1) FROM jobs WHERE state = ?", (QUEUED,)).fetchone()[0]
            for offset, job_id in enumerate(ids):
                db.execute("UPDATE jobs SET state = ?, started = NULL, position = ? WHERE id = ?",
                           (QUEUED, first - len(ids) + offset, job_id))
                self._append(db, job_id, {"type": "requeued", "message": "the server stopped while this job ran; "
                                          "it runs again from the start"}, time.time())
        return ids

    def _append(self, db: sqlite3.Connection, job_id: str, data: dict[str, Any], now: float) -> int:
        seq = db.execute("UPDATE jobs SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq", (job_id,)).fetchone()[0]
        db.execute("INSERT INTO events (job, seq, time, data) VALUES (?,?,?,?)", (job_id, seq, now, json.dumps(data, default=str)))
        return int(seq)

    def _set_meta(self, key: str, value: str) -> None:
        with self._write(durable=True) as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?",
                       (key, value, value))

    @contextmanager
    def _write(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; `durable` commits with an fsync of the log (accepted jobs, final states)."""
        with self._changed:
            db = self._db
            if durable:
                db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")
            finally:
                if durable:
                    db.execute("PRAGMA synchronous=NORMAL")
            self._changed.notify_all()


_COLUMNS = "id, position, spec, state, created, started, finished, attempts, cancel_requested, result, error, last_seq"


def _job(row: tuple[Any, ...]) -> Job:
    (job_id, position, spec, state, created, started, finished, attempts, cancel, result, error, last_seq) = row
    return Job(id=job_id, position=position, spec=parse_spec(json.loads(spec)), state=state, created=created,
               started=started, finished=finished, attempts=attempts, cancel_requested=bool(cancel),
               result=json.loads(result) if result else None, error=json.loads(error) if error else None,
               last_seq=last_seq)


def _dump(value: dict[str, Any] | None) -> str | None:
    return json.dumps(value, default=str) if value is not None else None
