"""What `stemsep serve` stops keeping, on a real queue and real files: the uploads of finished jobs (not while a
queued job still names them), finished jobs beyond the configured count or age with their events (never queued
ones, never the stems), at start-up; and the config keys that set the limits are checked."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from envmgr.config import load_config
from envmgr.errors import ConfigError
from envmgr.serve.paths import PathPolicy, serve_dir
from envmgr.serve.queue import CANCELLED, COMPLETED, QUEUED, JobQueue, QueueError
from envmgr.serve.retention import UNCLAIMED_UPLOAD_S, Retention
from envmgr.serve.scheduler import Scheduler


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STEMSEP_HOME", str(tmp_path / "home"))
    for name in ("STEMSEP_SERVE_JOBS_KEEP", "STEMSEP_SERVE_JOBS_KEEP_DAYS", "STEMSEP_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def upload(paths: PathPolicy, name: str = "song.flac") -> str:
    upload_id, path = paths.new_upload(name)
    path.write_bytes(b"audio")
    return upload_id


def finish(queue: JobQueue, job_id: str) -> None:
    claimed = queue.claim(lambda queued: next(j for j in queued if j.id == job_id))
    assert claimed is not None
    queue.finish(job_id, COMPLETED, result={"stems": {}})


def test_an_upload_goes_when_the_last_job_naming_it_ends(home: Path) -> None:
    config = load_config()
    queue = JobQueue(serve_dir(config))
    paths = PathPolicy.from_config(config, 1 << 20)
    scheduler = Scheduler(queue, config, paths)  # not started: its cancel listener releases uploads
    try:
        shared, own = upload(paths), upload(paths)
        first = scheduler.submit({"inputs": [f"upload:{shared}"]})
        second = scheduler.submit({"inputs": [f"upload:{shared}", f"upload:{own}"]})
        queue.cancel(first)
        assert (paths.uploads / shared).is_dir()  # the second job, still queued, names it
        queue.cancel(second)
        assert not (paths.uploads / shared).exists() and not (paths.uploads / own).exists()
        assert queue.get(second).state == CANCELLED  # the job itself stays until the retention limits
    finally:
        queue.close()


def test_finished_jobs_beyond_count_or_age_go_with_their_events(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "serve")
    paths = PathPolicy((tmp_path / "out",), tmp_path / "serve" / "uploads", 1 << 20)
    stem = tmp_path / "out" / "job" / "song_(vocals)_m.wav"  # a stem the user asked for: never removed
    stem.parent.mkdir(parents=True)
    stem.write_bytes(b"stem")
    try:
        ids = [queue.submit({"inputs": ["/music/song.flac"]}) for _ in range(5)]
        for job_id in ids[:4]:
            finish(queue, job_id)
        assert Retention(queue, paths, keep_jobs=0, keep_days=0).sweep() == []  # 0 and 0: keep everything
        pruned = Retention(queue, paths, keep_jobs=2, keep_days=0).sweep()
        assert sorted(j.id for j in pruned) == sorted(ids[:2])  # the two finished first
        assert [j.id for j in queue.list()] == ids[2:]
        for job_id in ids[:2]:
            with pytest.raises(QueueError):
                queue.events(job_id)
        assert queue._db.execute("SELECT COUNT(*) FROM events WHERE job IN (?,?)", ids[:2]).fetchone()[0] == 0

        later = time.time() + 2 * 86400  # two days on: both finished jobs are older than one day
        assert sorted(j.id for j in Retention(queue, paths, keep_jobs=0, keep_days=1).sweep(later)) == sorted(ids[2:4])
        assert [(j.id, j.state) for j in queue.list()] == [(ids[4], QUEUED)]  # a queued job is never removed
        assert stem.read_bytes() == b"stem"
    finally:
        queue.close()


def test_the_start_up_sweep_applies_the_config_and_clears_stale_uploads(home: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEMSEP_SERVE_JOBS_KEEP", "1")
    config = load_config()
    assert (config.serve_jobs_keep, config.serve_jobs_keep_days) == (1, 30)
    queue = JobQueue(serve_dir(config))
    paths = PathPolicy.from_config(config, 1 << 20)
    named, unclaimed, fresh = upload(paths), upload(paths), upload(paths)
    old = time.time() - UNCLAIMED_UPLOAD_S - 60
    os.utime(paths.uploads / unclaimed, (old, old))
    ids = [queue.submit({"inputs": [f"upload:{named}"]}), queue.submit({"inputs": ["/music/a.flac"]}),
           queue.submit({"inputs": ["/music/b.flac"]})]
    finish(queue, ids[0])  # finished while no server released its upload (a kill -9 before the release)
    finish(queue, ids[1])
    queue.pause()  # the started scheduler must not run the third
    scheduler = Scheduler(queue, config, paths).start()
    try:
        assert [j.id for j in queue.list()] == ids[1:]  # keep 1 finished: the most recent
        assert sorted(p.name for p in paths.uploads.iterdir()) == [fresh]  # a fresh unclaimed upload may be
    finally:                                                              # about to be submitted: it stays
        scheduler.stop()
        queue.close()


@pytest.mark.parametrize("value", ["-1", "many", "1.5"])
def test_a_bad_limit_is_a_config_error(home: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("STEMSEP_SERVE_JOBS_KEEP_DAYS", value)
    with pytest.raises(ConfigError) as err:
        load_config()
    assert "serve_jobs_keep_days" in err.value.message and "whole number" in (err.value.why or "")
