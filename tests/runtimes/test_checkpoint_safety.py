"""Checkpoints load weights-only on both third-party runtimes: a checkpoint holding pickled Python
objects is refused with a clear error, and the objects never run (unpickling would create a file)."""

from __future__ import annotations

import pytest

from envmgr.worker.client import JobFailed
from tests.runtimes.conftest import job, model_entry, pickled_checkpoint


@pytest.mark.parametrize("runtime", ["msst", "audio-separator"])
def test_checkpoint_with_pickled_objects_is_refused_unrun(request, runtime, msst_env, tiny_bs, clip3, tmp_path):
    worker = request.getfixturevalue({"msst": "msst_worker", "audio-separator": "as_worker"}[runtime])
    config = tiny_bs[0]
    ckpt, marker = pickled_checkpoint(msst_env.python, config, tmp_path)
    model = model_entry("tiny-pickled", [runtime])
    model["artifacts"] = {"primary": {"kind": "checkpoint", "filename": ckpt.name},
                          "config": {"kind": "config", "filename": config.name}}
    with pytest.raises(JobFailed) as err:
        worker.run(job(model, {ckpt.name: ckpt, config.name: config}, clip3, tmp_path / "out"))
    assert err.value.code == "E_MODEL_LOAD"
    assert "unpickling" in err.value.message or "pickled Python objects" in err.value.message
    assert not marker.exists(), "loading the checkpoint ran code from it"
