"""The durable job queue of `stemsep serve` on a real SQLite file: what is accepted survives a reopen, jobs a
server left running run again first, events keep their sequence numbers, reorder/pause/cancel do what they
say, one server owns a queue, and the scheduler's choice groups a model's jobs without starving others."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from envmgr.serve.queue import CANCELLED, COMPLETED, QUEUED, RUNNING, JobQueue, QueueError, QueueBusy
from envmgr.serve.scheduler import pick_next
from envmgr.serve.spec import SpecError, parse_spec

INPUT = "/music/song.flac"


def spec(model: str = "a", **more: object) -> dict[str, object]:
    return {"kind": "separate", "inputs": [INPUT], "models": [model], **more}


def test_accepted_jobs_survive_a_reopen_in_order(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    ids = [queue.submit(spec(m)) for m in "abc"]
    queue.close()
    again = JobQueue(tmp_path)
    assert [j.id for j in again.list((QUEUED,))] == ids
    assert [j.spec.models for j in again.list()] == [("a",), ("b",), ("c",)]
    assert again.events(ids[0])[0]["type"] == "queued" and again.events(ids[0])[0]["seq"] == 1


def test_a_job_left_running_runs_again_first_and_finished_ones_stay(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    first, second, third = (queue.submit(spec(m)) for m in "abc")
    done = queue.claim(lambda q: q[0])
    assert done is not None and done.id == first
    queue.finish(first, COMPLETED, result={"stems": {"x.wav": "/out/x.wav"}})
    running = queue.claim(lambda q: q[-1])  # the third: the recovery must put it ahead of the second
    assert running is not None and running.id == third and running.state == RUNNING
    queue.append_event(third, {"type": "progress", "done": 1, "total": 4})
    queue.close()  # as a kill -9 leaves it: the row still says running

    again = JobQueue(tmp_path)
    assert again.requeued == [third]
    assert [j.id for j in again.list((QUEUED,))] == [third, second]
    assert again.get(first).state == COMPLETED and again.get(first).result == {"stems": {"x.wav": "/out/x.wav"}}
    events = again.events(third)
    assert [e["type"] for e in events] == ["queued", "started", "progress", "requeued"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert again.events(third, after_seq=2) == events[2:]
    rerun = again.claim(lambda q: q[0])
    assert rerun is not None and rerun.id == third and rerun.attempts == 2


def test_a_running_job_whose_cancel_was_asked_is_cancelled_on_reopen(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    job = queue.submit(spec())
    queue.claim(lambda q: q[0])
    assert queue.cancel(job).shown_state == "cancelling"
    queue.close()
    again = JobQueue(tmp_path)
    assert again.get(job).state == CANCELLED and again.events(job)[-1]["type"] == CANCELLED


def test_cancel_reorder_pause(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    a, b, c, d = (queue.submit(spec(m)) for m in "abcd")
    assert queue.cancel(b).state == CANCELLED and queue.events(b)[-1]["type"] == CANCELLED
    with pytest.raises(QueueError) as err:
        queue.cancel(b)
    assert err.value.code == "E_JOB_FINISHED"
    assert [j.id for j in queue.reorder([d, c])] == [d, c, a]
    with pytest.raises(QueueError) as err:
        queue.reorder([b])
    assert err.value.code == "E_JOB_NOT_QUEUED"
    with pytest.raises(QueueError) as err:
        queue.get("nope")
    assert err.value.code == "E_JOB_UNKNOWN"
    queue.pause()
    assert queue.claim(lambda q: q[0]) is None
    queue.close()
    again = JobQueue(tmp_path)
    assert again.paused  # the user's pause outlives the server
    again.resume()
    claimed = again.claim(lambda q: q[0])
    assert claimed is not None and claimed.id == d


def test_one_server_owns_a_queue(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    code = ("import sys; from pathlib import Path; from envmgr.serve.queue import JobQueue, QueueBusy\n"
            "try:\n JobQueue(Path(sys.argv[1]))\nexcept QueueBusy as e:\n print(e.code); sys.exit(3)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (3, "E_QUEUE_BUSY"), proc.stderr
    queue.close()
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert QueueBusy.code == "E_QUEUE_BUSY"


@pytest.mark.parametrize("raw, field", [
    ({"kind": "separate"}, "at least one input"),
    ({"kind": "mix", "inputs": [INPUT]}, "unknown job kind"),
    ({"inputs": [INPUT], "format": "mp3"}, "unknown output format"),
    ({"inputs": [INPUT], "options": {"download": "yes"}}, '"download" must be true or false'),
    ({"inputs": [INPUT], "options": {"sudo": True}}, "unknown job option"),
    ({"inputs": [INPUT], "colour": "red"}, "unknown job spec field"),
    ({"kind": "recipe", "inputs": [INPUT], "models": ["a"]}, "one recipe and no models"),
    ({"inputs": [INPUT], "options": {"setting_meanings": {"overlap": "percent"}}}, "'overlap' cannot be given as"),
    ({"inputs": [INPUT], "options": {"setting_meanings": {"batch_size": "ratio"}}}, "'batch_size' cannot be given"),
])
def test_malformed_specs_are_refused(raw: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert field in err.value.message and err.value.code == "E_JOB_SPEC"


def test_a_recipe_spec_has_its_own_group() -> None:
    recipe = parse_spec({"kind": "recipe", "recipe": "vocals-ensemble", "inputs": [INPUT]})
    assert recipe.group == "recipe:vocals-ensemble:" and parse_spec(spec("a")).group == "separate:a:"


def test_pick_groups_a_model_but_never_starves_the_head(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    for model in "baaaaaa":
        queue.submit(spec(model))
    bypassed: dict[str, int] = {}
    order = []
    last = "separate:a:"  # the slot just ran model a
    while queued := queue.list((QUEUED,)):
        job = pick_next(queued, last, bypassed, max_bypass=3)
        queue.claim(lambda q, job=job: next(j for j in q if j.id == job.id))
        order.append(job.spec.models[0])
        last = job.group
    # three of a's jobs run first (a is warm), then b has waited its maximum and runs, then the rest of a
    assert "".join(order) == "aaabaaa"
    assert pick_next(queue.list(), None, {}, 3).spec.models == ("b",)  # no warm group: plain FIFO
