"""Ctrl-C during a third-party runtime's chunk loop: the tqdm bridge checks for `cancel` at every bar
step, so the job stops at the next chunk boundary, nothing is left in the output dir, and the worker
(with its model loaded) takes the next job."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from envmgr.worker.client import Cancelled
from registry.errors import ExitCode
from tests.runtimes.conftest import demo_clip, job, model_entry

NATIVE_OVERLAP_4 = {"msst": {"inference": {"num_overlap": 4}}, "audio-separator": {"mdxc_params": {"overlap": 4}}}


@pytest.mark.parametrize("runtime", ["msst", "audio-separator"])
def test_ctrl_c_stops_between_chunks_worker_stays_usable(request, runtime, tiny_bs, workdir, tmp_path,
                                                         host_stop_signals):
    worker = request.getfixturevalue({"msst": "msst_worker", "audio-separator": "as_worker"}[runtime])
    clip = demo_clip(workdir / "clip8.wav", 8.0)
    config, ckpt = tiny_bs
    model = model_entry("tiny-cancel", [runtime])
    model["artifacts"] = {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                          "config": {"kind": "config", "filename": config.name}}
    arts = {ckpt.name: ckpt, config.name: config}
    seen: list[tuple[float, float]] = []

    def ctrl_c(event: dict[str, Any]) -> None:
        if event.get("type") == "progress" and event["stage"] == "separate":
            seen.append((event["done"], event["total"]))
            if len(seen) == 2:  # once, after the first chunk: a second Ctrl-C would mean "stop now"
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Cancelled) as err:
        worker.run(job(model, arts, clip, tmp_path / "cancelled", NATIVE_OVERLAP_4[runtime]), ctrl_c)
    assert err.value.exit_code == ExitCode.CANCELLED
    assert seen[-1][0] < seen[-1][1], "the job ran to the end instead of stopping"
    assert worker.alive
    assert not (tmp_path / "cancelled").exists() or os.listdir(tmp_path / "cancelled") == []
    assert len(worker.run(job(model, arts, clip, tmp_path / "next", NATIVE_OVERLAP_4[runtime]))["stems"]) == 2
