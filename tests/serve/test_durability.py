"""A job the server accepted is never lost: `stemsep serve` is killed with SIGKILL at random moments while jobs
are queued and one runs, then started again on the same state dir. Every accepted job ends `completed` with
the stems `stemsep separate` makes; jobs finished before the kill are not run again; a job the kill
interrupted runs again from the start (a `requeued` event, a second attempt); no partial stem or staging
dir is ever left in an output dir. Real server processes, the default DSP model, short inputs."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.serve.server import Server
from tests.support.cli import home_sharing_session_envs, run_cli
from tests.support.wait import wait_for
from tests.worker.conftest import DEMO_MIX

TRIALS = 12
JOBS_PER_TRIAL = 4


@pytest.fixture(scope="module")
def short_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 30 s (the demo mix three times): long enough that a job is still running at some of the random moments
    audio, rate = sf.read(str(DEMO_MIX), dtype="float32")
    path = tmp_path_factory.mktemp("inputs") / "short.flac"
    sf.write(str(path), np.concatenate([audio] * 3), rate)
    return path


@pytest.fixture(scope="module")
def reference(short_input: Path, tmp_path_factory: pytest.TempPathFactory, dsp_env: Any) -> dict[str, np.ndarray]:
    """What `stemsep separate` makes of the short input: stem file name -> samples."""
    home = tmp_path_factory.mktemp("reference-home")
    out = home / "out"
    proc = run_cli("separate", short_input, "-o", out, env=home_sharing_session_envs(home), cwd=home, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {p.name: sf.read(str(p), dtype="float32")[0] for p in out.iterdir()}


def complete_stems_only(outputs: Path, reference: dict[str, np.ndarray], staging: bool = False) -> bool:
    """Every stem-named file in every job's output dir is a whole stem equal to the reference, and nothing else
    is there but (with `staging`) the hidden staging dirs of workers still running. True if any such dir is."""
    found = False
    for entry in (e for job_dir in (outputs.iterdir() if outputs.exists() else ()) for e in job_dir.iterdir()):
        if staging and entry.name.startswith(".stemsep-") and entry.name.endswith(".partial") and entry.is_dir():
            found = True
            continue
        assert entry.name in reference, f"{entry} is not a stem (a staging dir or partial file was left)"
        assert np.array_equal(sf.read(str(entry), dtype="float32")[0], reference[entry.name]), entry
    return found


def test_kill_9_at_random_moments_loses_no_accepted_job(tmp_path: Path, short_input: Path,
                                                       reference: dict[str, np.ndarray], dsp_env: Any) -> None:
    seed = int(os.environ.get("STEMSEP_TEST_SEED", time.time()))
    rng = random.Random(seed)
    interrupted_trials = 0
    for trial in range(TRIALS):
        home = tmp_path / f"trial-{trial}"
        home.mkdir()
        env = home_sharing_session_envs(home)
        outputs = home / "state" / "serve" / "outputs"
        server = Server(env, cwd=home)
        accepted = [server.submit(inputs=[str(short_input)]) for _ in range(JOBS_PER_TRIAL)]
        if trial == TRIALS - 1 and not interrupted_trials:  # a loaded machine may have let every moment miss a job:
            wait_for(lambda: any(server.job(j)["state"] == "running" for j in accepted),  # kill while one runs
                     what="a job to be running", timeout=120, interval=0.01)
        else:
            time.sleep(rng.uniform(0.0, 2.0))  # the random moment
        before = {job_id: server.job(job_id) for job_id in accepted}
        server.kill9()
        complete_stems_only(outputs, reference, staging=True)  # the killed server's worker may still be stopping

        again = Server(env, cwd=home)
        try:
            finished = {job_id: again.wait_final(job_id) for job_id in accepted}
            context = f"seed {seed}, trial {trial}"
            assert [j["state"] for j in finished.values()] == ["completed"] * JOBS_PER_TRIAL, context
            for job_id, job in finished.items():
                assert sorted(job["result"]["stems"]) == sorted(reference), context
                if before[job_id]["state"] == "completed":  # finished before the kill: kept, not run again
                    assert (job["finished"], job["attempts"]) == (before[job_id]["finished"], 1), context
            requeued = [j for j in accepted if any(e["type"] == "requeued" for e in again.events(j))]
            assert all(finished[j]["attempts"] == 2 for j in requeued), context
            assert len(requeued) <= 1, context  # one slot: at most one job was running
            interrupted_trials += bool(requeued)
            # the killed server's worker sees its pipe break within a heartbeat and removes its staging dir
            wait_for(lambda: not complete_stems_only(outputs, reference, staging=True),
                     what="the staging dirs of the killed server's worker to go", timeout=30)
            complete_stems_only(outputs, reference)
        finally:
            again.stop()
    # the random moments must have caught a running job at least once, or the test proved only the easy half
    assert interrupted_trials >= 1, f"seed {seed}: no kill landed while a job ran"
