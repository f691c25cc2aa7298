"""Two processes downloading the same artifact at once: one downloads, the other waits and reuses it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest

from envmgr.artifacts.errors import StoreBusyError
from tests.artifacts.conftest import REPO_ROOT, blob, entry, files_under
from tests.support.wait import wait_for

DATA = blob(600_000, seed=11)
SHA = hashlib.sha256(DATA).hexdigest()


def spawn(store_root, url):
    return subprocess.Popen([sys.executable, "-m", "tests.artifacts.download_child", str(store_root), "m", url, SHA],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def events_of(proc) -> list[dict]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_two_processes_download_the_same_artifact_once(server, store_root):
    half_way = threading.Event()  # the first download stays half done until the second process waits for it
    url = server.file("/slow.ckpt", DATA, hold=half_way)
    first = spawn(store_root, url)
    wait_for(lambda: server.hits_for("/slow.ckpt"), what="the first process to start downloading", process=first)
    second = spawn(store_root, url)
    ev2 = []
    for line in second.stdout:
        ev2.append(json.loads(line))
        if ev2[-1]["type"] == "artifact.waiting":
            half_way.set()
    half_way.set()  # (when the second never waited: let both end, the assertions below say so)
    assert second.wait(timeout=120) == 0, second.stderr.read()
    ev1 = events_of(first)
    [hit] = server.hits_for("/slow.ckpt")
    assert hit.status == 200 and hit.sent == len(DATA)
    assert (store_root / "m" / "model.ckpt").read_bytes() == DATA
    assert ev1[-1] == ev2[-1] == {"type": "paths", "paths": {"model.ckpt": str(store_root / "m" / "model.ckpt")}}
    assert ev1[-2]["message"] == "downloaded"
    kinds2 = [e["type"] for e in ev2]
    assert "artifact.waiting" in kinds2 and "artifact.start" not in kinds2
    assert ev2[-2]["type"] == "artifact.done" and ev2[-2]["message"] == "present"
    assert files_under(store_root) == {"m/model.ckpt", "m/.manifest.json"}


def test_remove_refuses_while_another_process_holds_the_lock(server, store, store_root):
    url = server.file("/m.ckpt", DATA)
    store.ensure(entry("m", {"filename": "model.ckpt", "url": url, "sha256": SHA}))
    lock = store_root / ".locks" / "m" / "model.ckpt.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from filelock import FileLock; l = FileLock(sys.argv[1]); "
         "l.acquire(); print('held', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusyError) as err:
            store.remove("m")
        assert "another process" in err.value.message
        assert (store_root / "m" / "model.ckpt").read_bytes() == DATA
    finally:
        holder.communicate("", timeout=30)
    report = store.remove("m")
    assert report.bytes >= len(DATA) and not (store_root / "m").exists()
