"""What `stemsep serve` stops keeping: uploads once the jobs that name them are finished, and old finished jobs
with their events (config `serve_jobs_keep`, `serve_jobs_keep_days`). Outputs are never removed: a job's stems
are the user's, wherever they were written.

`release_uploads(job)` runs when a job ends (one query per upload it names; nothing for jobs of plain paths);
`sweep()` runs at start-up and periodically: it prunes the finished jobs beyond the limits, removes the uploads
only finished jobs name (also those whose job ended while no server ran, or was pruned), and uploads no job
names that are older than a day (uploaded, never submitted)."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envmgr.serve.paths import UPLOAD_PREFIX, PathPolicy
from envmgr.serve.queue import FINAL, Job, JobQueue

if TYPE_CHECKING:
    from envmgr.config import MachineConfig

log = logging.getLogger("stemsep.serve")
SWEEP_INTERVAL_S = 3600.0  # how often a running server prunes (it also does at start-up)
UNCLAIMED_UPLOAD_S = 86400.0  # an upload no job names is removed after this long


@dataclass(frozen=True)
class Retention:
    queue: JobQueue
    paths: PathPolicy
    keep_jobs: int  # finished jobs kept, most recent first; 0: no count limit
    keep_days: int  # finished jobs older than this are removed; 0: no age limit

    @classmethod
    def from_config(cls, queue: JobQueue, paths: PathPolicy, config: MachineConfig) -> "Retention":
        return cls(queue, paths, config.serve_jobs_keep, config.serve_jobs_keep_days)

    def release_uploads(self, job: Job) -> None:
        """Remove the uploads a finished job named, unless a job that has not finished names one too."""
        for given in job.spec.inputs:
            if given.startswith(UPLOAD_PREFIX) and all(j.state in FINAL for j in self.queue.naming(given)):
                self._remove_upload(given[len(UPLOAD_PREFIX):])

    def sweep(self, now: float | None = None) -> list[Job]:
        """Prune finished jobs beyond the limits, then the uploads no unfinished job needs. Returns the pruned jobs."""
        now = time.time() if now is None else now
        pruned = self.queue.prune(self.keep_jobs, now - self.keep_days * 86400.0 if self.keep_days else None)
        for job in pruned:  # their uploads too, unless a job that has not finished names one
            self.release_uploads(job)
        folders = sorted(self.paths.uploads.iterdir()) if self.paths.uploads.is_dir() else []
        for folder in folders:
            users = self.queue.naming(UPLOAD_PREFIX + folder.name)
            if users and all(j.state in FINAL for j in users):
                self._remove_upload(folder.name)
            elif not users and _age(folder, now) > UNCLAIMED_UPLOAD_S:
                self._remove_upload(folder.name)
        if pruned:
            log.info("removed %d finished job(s) beyond the retention limits", len(pruned))
        return pruned

    def _remove_upload(self, upload_id: str) -> None:
        folder = self.paths.upload_dir(upload_id)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _age(folder: Path, now: float) -> float:
    try:
        return now - folder.stat().st_mtime
    except OSError:
        return 0.0
