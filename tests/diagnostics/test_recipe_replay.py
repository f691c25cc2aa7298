"""Replaying a recipe run's bundle: each step model's job runs on the input that step read. Real `stemsep run` and
`stemsep debug replay` processes, the session's DSP env, a chained step that dies through the fault hook
(tests/worker/fault_hook.py).

- the bundle records what the chained step read: the upstream step's cached stem (its sha256, not the mix's),
  bundled with --include-audio;
- replay runs the step on that stem (the bundled copy, else the recorded file when its sha256 matches) and ends
  with the recorded error; neither there: E_REPLAY_NO_AUDIO naming the step;
- a bundle without the step facts (an older one) runs every model on the recipe's input, as before.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from envmgr.jobs.step_cache import StepCache
from envmgr.worker.process import TEST_HOOK_ENV
from tests.preflight.conftest import dsp, write_audio
from tests.recipes.conftest import recipe, sep, write_recipes
from tests.support.cli import home_sharing_session_envs, json_events, run_cli, write_user_registry
from tests.worker.conftest import FAULT_HOOK, dsp_env  # noqa: F401 (the session's DSP env, built once)

pytestmark = pytest.mark.envs
SPLIT = dsp("recipe-replay-split")
FAILING = dsp("recipe-replay-error", test_fault={"fault": "exit"})  # each job dies in a library's sys.exit()
CHAINED = recipe(sep("split", SPLIT["id"]), sep("again", FAILING["id"], "split.vocals"),
                 outputs={"vocals": "again.vocals"}, recipe_id="chained_replay")


@pytest.fixture
def home(tmp_path: Path, dsp_env: Any) -> Path:  # noqa: F811
    home = tmp_path / "home"
    write_user_registry(home, "recipe-replay", [SPLIT, FAILING])
    return home


def cli_env(home: Path) -> dict[str, str]:
    return {**home_sharing_session_envs(home), TEST_HOOK_ENV: str(FAULT_HOOK), "COLUMNS": "200"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewritten(bundle: Path, target: Path, job: dict[str, Any], drop: str | None = None) -> Path:
    """A copy of `bundle` with the failing model's job.json replaced (and the archive member `drop` left out)."""
    name = f"models/{FAILING['id']}/job.json"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(target, "w") as out:
        for member in src.namelist():
            if member != drop:
                out.writestr(member, json.dumps(job) if member == name else src.read(member))
    return target


def replay(home: Path, tmp_path: Path, bundle: Path) -> tuple[int, list[dict[str, Any]], str]:
    proc = run_cli("debug", "replay", bundle, "--json", env=cli_env(home), cwd=tmp_path, timeout=300)
    return proc.returncode, json_events(proc.stdout), proc.stderr


def failures(events: list[dict[str, Any]]) -> dict[str, str]:
    """model -> the error code its job ended with (the replay of two models ends with E_BATCH, exit 11)."""
    return {e["model"]: e["code"] for e in events if e["type"] == "error" and e.get("model")}


def jobs(events: list[dict[str, Any]]) -> list[str]:
    return [e["input"] for e in events if e["type"] == "job"]


def test_a_chained_step_is_replayed_on_the_stem_it_read(home: Path, tmp_path: Path) -> None:
    song = write_audio(tmp_path / "song.wav")
    proc = run_cli("run", write_recipes(tmp_path / "chained.json", CHAINED), song, "-o", tmp_path / "out",
                   "--include-audio", "--json", env=cli_env(home), cwd=tmp_path, timeout=300)
    events = json_events(proc.stdout)
    assert proc.returncode == 11 and events[-1]["code"] == "E_WORKER_INTERNAL", proc.stderr
    bundle = Path(events[-1]["debug_bundle"])

    # the split step's vocals, as the step cache holds them: what the chained step read
    key = next(e["key"] for e in events if e["type"] == "step_input" and e["step"] == "split")
    stem = StepCache(next(home.rglob("recipe-cache")), 1 << 40).get(key)["vocals"]  # type: ignore[index]
    with zipfile.ZipFile(bundle) as z:
        job = json.loads(z.read(f"models/{FAILING['id']}/job.json"))
        split_job = json.loads(z.read(f"models/{SPLIT['id']}/job.json"))
        (row,) = job["step_inputs"]
        bundled = z.read(row["bundled"])
    assert job["step"] == {"id": "again", "reads": "split.vocals"}
    assert row["sha256"] == stem.sha256 == hashlib.sha256(bundled).hexdigest() != sha256(song)
    assert Path(row["path"]) == stem.path and row["metadata"]["sample_rate"] == 44100
    assert [r["sha256"] for r in split_job["step_inputs"]] == [sha256(song)]  # the split step read the mix

    code, replayed, stderr = replay(home, tmp_path, bundle)  # the bundled stem
    assert code == 11 and failures(replayed) == {FAILING["id"]: "E_WORKER_INTERNAL"}, stderr
    first, second = jobs(replayed)
    assert Path(first).name == "song.wav" and Path(second).name == "1-song_(split.vocals).wav"

    recorded = {**job, "step_inputs": [{**row, "bundled": None}]}  # no copy: the recorded file, same sha256
    code, replayed, stderr = replay(home, tmp_path, rewritten(bundle, tmp_path / "no-copy.zip", recorded,
                                                               drop=row["bundled"]))
    assert code == 11 and failures(replayed) == {FAILING["id"]: "E_WORKER_INTERNAL"}, stderr
    assert jobs(replayed)[1] == str(stem.path)

    stem.path.write_bytes(b"another file")  # neither a copy nor the same file: refused, naming the step
    code, replayed, stderr = replay(home, tmp_path, tmp_path / "no-copy.zip")
    assert code == 2 and replayed[-1]["code"] == "E_REPLAY_NO_AUDIO", stderr
    assert "step again" in replayed[-1]["message"] and "--include-audio" in replayed[-1]["hint"]
    assert not jobs(replayed)

    old = {k: v for k, v in job.items() if k not in ("step", "step_inputs")}  # an older bundle: the recipe's input
    code, replayed, stderr = replay(home, tmp_path, rewritten(bundle, tmp_path / "old.zip", old))
    assert code == 11 and failures(replayed) == {FAILING["id"]: "E_WORKER_INTERNAL"}, stderr
    assert [Path(p).name for p in jobs(replayed)] == ["song.wav", "song.wav"]
