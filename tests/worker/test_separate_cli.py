"""`stemsep separate` as a user runs it: a real CLI process, the packaged registry's default model, a
real uv-built env and worker. The main job, the --json stream, bad inputs, batches, and Ctrl-C, SIGTERM and
SIGHUP mid-job (also with the CLI started as `cmd &` starts it: SIGINT ignored)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from envmgr.worker.client import Timeouts
from envmgr.worker.process import TEST_HOOK_ENV
from tests.support.cli import STOPS, home_sharing_session_envs, run_cli, spawn_cli, write_user_registry
from tests.support.wait import pid_gone, wait_for
from tests.worker.conftest import DEMO_MIX, FAULT_HOOK

DEFAULT_MODEL = "builtin-center-split"
SLOW_MODEL = {
    "id": "test-slow-fault", "name": "test: slow chunks", "architecture": "DSP",
    # The DSP type passes preflight's capability facts; the fault hook loads its FaultModel for it (test_fault).
    "runtime": {"allowed": ["stemsep-legacy"], "preferred": "stemsep-legacy", "model_type": "dsp_center_split"},
    "requirements": {"torch": {"required": False}}, "capabilities": {"stems": ["vocals", "instrumental"]},
    "test_fault": {"chunks": 100, "chunk_seconds": 0.1},  # read by tests/worker/fault_hook.py
}

NOISY_MODEL = {**SLOW_MODEL, "id": "test-noisy-fault", "name": "test: prints garbage to fd 1",
               "test_fault": {"fault": "c_garbage", "chunks": 2}}
# Hangs in its first chunk with its heartbeat going, so `cancel` is never honoured, and ignores SIGTERM.
STUCK_MODEL = {**SLOW_MODEL, "id": "test-stuck-fault", "name": "test: stuck in a chunk, deaf to SIGTERM",
               "test_fault": {"fault": "sleep_deaf_to_sigterm"}}
CANCEL_GRACE = Timeouts().cancel_grace  # how long the host waits for a cancelled job to stop
EXIT_GRACE = Timeouts().exit_grace  # how long it then waits after SIGTERM before SIGKILL


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory, stemsep_home: Path, dsp_env: Any) -> dict[str, str]:
    """What CLI processes set over os.environ: own config dir (with a user registry holding the test model),
    the session's env store and caches (so the DSP env built once is reused)."""
    home = tmp_path_factory.mktemp("cli-home")
    write_user_registry(home, "test-models", [SLOW_MODEL, NOISY_MODEL, STUCK_MODEL])
    return {**home_sharing_session_envs(home), "COLUMNS": "120", TEST_HOOK_ENV: str(FAULT_HOOK)}


def stemsep(cli_env: dict[str, str], *args: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=cli_env, cwd=cwd, timeout=300)


def files_in(folder: Path) -> list[str]:
    """Everything in the output dir, hidden staging dirs included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_main_job_default_model_no_options(cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = stemsep(cli_env, "separate", DEMO_MIX, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "separated"
    expected = [f"demo_mix_({s})_{DEFAULT_MODEL}.wav" for s in ("vocals", "instrumental")]
    assert proc.stdout.splitlines() == [str(out / name) for name in expected]
    assert files_in(out) == sorted(expected)
    info = sf.info(str(DEMO_MIX))
    for name in expected:
        stem = sf.info(str(out / name))
        assert (stem.format, stem.subtype) == ("WAV", "FLOAT")
        assert (stem.frames, stem.samplerate, stem.channels) == (info.frames, info.samplerate, info.channels)
    assert DEFAULT_MODEL in proc.stderr and "100%" in proc.stderr


def test_json_stream_flac_and_output_dir(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "nested" / "out"
    proc = stemsep(cli_env, "separate", "--json", "--format", "flac", "-o", out, DEMO_MIX, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["preflight", "plan"] and kinds[-2:] == ["summary", "exit"] and events[-1]["exit_code"] == 0
    assert kinds.count("worker") == 1 and kinds.count("result") == 1
    assert events[1]["model"] == DEFAULT_MODEL and events[1]["runtime"] == "stemsep-legacy"
    separate = [e for e in events if e["type"] == "progress" and e["stage"] == "separate"]
    assert [e["done"] for e in separate] == list(range(1, len(separate) + 1)) and separate[-1]["done"] == separate[-1]["total"]
    stems = [e for e in events if e["type"] == "stem"]
    assert {s["name"] for s in stems} == {"vocals", "instrumental"}
    for s in stems:
        assert Path(s["path"]).parent == out and s["path"].endswith(".flac")
        assert sf.info(s["path"]).subtype == "PCM_24"
    assert files_in(out) == sorted(Path(s["path"]).name for s in stems)


def _write(path: Path, data: np.ndarray, sr: int = 44100, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sr, subtype=subtype)
    return path


def _stereo(seconds: float, sr: int = 44100) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 1000 * t),
                     np.sin(2 * np.pi * 440 * t)], axis=1) * 0.3


def _truncated(path: Path) -> Path:
    _write(path, _stereo(1.0), subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 22050 * 4 + 1])  # half the frames, cut inside a frame
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def _nan(path: Path) -> Path:
    data = _stereo(1.0)
    data[1000, 0] = np.nan
    return _write(path, data)


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.wav", 12, "E_INPUT_NOT_FOUND"),
    "directory": (lambda d: _dir(d / "adir"), 12, "E_INPUT_IS_DIR"),
    "empty file": (lambda d: _bytes(d / "empty.wav", b""), 12, "E_INPUT_EMPTY"),
    "not audio": (lambda d: _bytes(d / "notes.wav", b"these are not samples\n" * 50), 12, "E_INPUT_UNDECODABLE"),
    "header only": (lambda d: _write(d / "zero.wav", np.zeros((0, 2))), 12, "E_INPUT_EMPTY"),
    "NaN samples": (lambda d: _nan(d / "nan.wav"), 12, "E_INPUT_NONFINITE"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_fail_clearly_and_write_nothing(cli_env: dict[str, str], tmp_path: Path, case: str) -> None:
    make, exit_code, code = BAD_INPUTS[case]
    path = make(tmp_path)
    proc = stemsep(cli_env, "separate", path, "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == exit_code, proc.stderr
    assert code in proc.stderr and "what to do" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert files_in(tmp_path / "out") == []


GOOD_INPUTS = {
    "unicode and spaces": (lambda d: _write(d / "dir with space" / "ünïcødé mix ♪.wav", _stereo(1.0)), 44100, 2),
    "mono": (lambda d: _write(d / "mono.wav", _stereo(1.0)[:, :1]), 44100, 1),
    "8-bit": (lambda d: _write(d / "eight.wav", _stereo(1.0), subtype="PCM_U8"), 44100, 2),
    "192 kHz": (lambda d: _write(d / "hires.wav", _stereo(0.5, 192000), sr=192000, subtype="PCM_24"), 192000, 2),
    "truncated WAV": (lambda d: _truncated(d / "cut.wav"), 44100, 2),
}


@pytest.mark.parametrize("case", list(GOOD_INPUTS))
def test_unusual_inputs_are_separated(cli_env: dict[str, str], tmp_path: Path, case: str) -> None:
    make, sr, channels = GOOD_INPUTS[case]
    path = make(tmp_path)
    out = tmp_path / "out"
    proc = stemsep(cli_env, "separate", "--json", path, "-o", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = next(json.loads(x) for x in proc.stdout.splitlines() if json.loads(x)["type"] == "result")
    frames = sf.info(str(path)).frames
    names = {f"{path.stem}_({s})_{DEFAULT_MODEL}.wav" for s in ("vocals", "instrumental")}
    assert set(files_in(out)) == names
    stems = {s["name"]: sf.read(s["path"], always_2d=True) for s in result["stems"]}
    for audio, rate in stems.values():
        assert audio.shape == (frames, channels) and rate == sr
    if case == "mono":
        assert np.all(stems["vocals"][0] == 0)
        assert np.allclose(stems["instrumental"][0], sf.read(str(path), always_2d=True)[0])
        assert any("mono input" in w for w in result["warnings"])
    if case == "truncated WAV":
        assert frames == 22050 and any("truncated" in w for w in result["warnings"])


def test_batch_keeps_going_past_a_bad_input_with_one_worker(cli_env: dict[str, str], tmp_path: Path) -> None:
    good = [_write(tmp_path / f"song{i}.wav", _stereo(0.5)) for i in range(3)]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    proc = stemsep(cli_env, "separate", "--json", good[0], bad, good[1], good[2], "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 12, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["type"] for e in events].count("worker") == 1  # one persistent worker for the batch
    summary = next(e for e in events if e["type"] == "summary")
    assert (summary["ok"], summary["failed"]) == (3, 1)
    assert events[-1]["code"] == "E_BATCH" and "broken.wav" in events[-1]["why"]
    assert len(files_in(tmp_path / "out")) == 6


@pytest.mark.parametrize("case", ["parent is a file", "read-only dir", "name too long", "path too long"])
def test_output_problems_are_found_before_any_work(cli_env: dict[str, str], tmp_path: Path, case: str) -> None:
    """An -o that cannot be written, or stem names the filesystem refuses, end the run at planning: exit 2 with
    the reason, before the model's files are fetched, its env built or a worker started."""
    song, out = _write(tmp_path / "song.wav", _stereo(0.2)), tmp_path / "out"
    if case == "parent is a file":
        out = song / "stems"
    elif case == "read-only dir":
        if os.geteuid() == 0:  # root writes anywhere: the permission bits cannot make the case
            pytest.xfail("root ignores directory permissions; the parent-is-a-file case covers the check as root")
        out.mkdir(mode=0o555)
    elif case == "name too long":
        song = _write(tmp_path / ("s" * 240 + ".wav"), _stereo(0.2))
    else:
        out = tmp_path.joinpath(*["d" * 200] * 21)  # > 4096 bytes of path
    proc = stemsep(cli_env, "separate", "--json", song, "-o", out, cwd=tmp_path)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    code = "E_OUTPUT_NAME_TOO_LONG" if "long" in case else "E_OUTPUT_UNWRITABLE"
    assert proc.returncode == 2 and events[-1]["code"] == code, proc.stdout + proc.stderr
    assert events[-1]["why"] and ("-o" in events[-1]["hint"] or "rename" in events[-1]["hint"])
    assert [e["type"] for e in events] == ["preflight", "exit"]  # no plan, download, env or worker event
    assert not list(tmp_path.rglob("*_(vocals)_*"))


@pytest.mark.parametrize("variable", ["STEMSEP_ENV_STORE", "STEMSEP_UV_CACHE_DIR"])
def test_a_store_dir_that_cannot_be_created_blocks_in_preflight(cli_env: dict[str, str], tmp_path: Path,
                                                                variable: str) -> None:
    """An env that must be built, with its store or uv's cache under a regular file: preflight says so (E_STORE,
    exit 7) before any download or build, not the build after them."""
    song, blocker = _write(tmp_path / "song.wav", _stereo(0.2)), tmp_path / "a-file"
    blocker.write_text("not a dir")
    env = {**cli_env, variable: str(blocker / "sub")}
    if variable == "STEMSEP_UV_CACHE_DIR":
        env["STEMSEP_ENV_STORE"] = str(tmp_path / "fresh-envs")  # the env must be built for the cache to matter
    proc = stemsep(env, "separate", "--json", song, "-o", tmp_path / "out", cwd=tmp_path)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 7 and events[-1]["code"] == "E_STORE", proc.stdout + proc.stderr
    assert "a-file" in events[-1]["message"] and events[-1]["hint"]
    assert [e["type"] for e in events] == ["preflight", "exit"]


def test_same_name_from_two_dirs_is_refused_before_any_work(cli_env: dict[str, str], tmp_path: Path) -> None:
    a, b = _write(tmp_path / "a" / "x.wav", _stereo(0.2)), _write(tmp_path / "b" / "x.wav", _stereo(0.2))
    proc = stemsep(cli_env, "separate", a, b, "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2 and "E_OUTPUT_COLLISION" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_model_and_disallowed_runtime(cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = stemsep(cli_env, "separate", DEMO_MIX, "-m", "builtin-center-splt", cwd=tmp_path)
    assert proc.returncode == 2 and DEFAULT_MODEL in proc.stderr  # nearest id suggested
    proc = stemsep(cli_env, "separate", DEMO_MIX, "--runtime", "msst", cwd=tmp_path)
    assert proc.returncode != 0 and "stemsep-legacy" in proc.stderr
    assert not (tmp_path / "separated").exists()


@pytest.mark.parametrize("sig, started, code, exit_code, message", STOPS)
def test_a_stop_signal_mid_job_cancels_and_leaves_nothing(cli_env: dict[str, str], tmp_path: Path, sig: int,
                                                          started: Any, code: str, exit_code: int,
                                                          message: str) -> None:
    out = tmp_path / "out"
    proc, worker_pid = _separate_until_staged(cli_env, tmp_path, SLOW_MODEL["id"], preexec_fn=started)
    proc.send_signal(sig)
    rest = [json.loads(x) for x in proc.stdout]  # type: ignore[union-attr]
    assert proc.wait(timeout=30) == exit_code, proc.stderr.read() if proc.stderr else ""
    assert rest[-1]["type"] == "exit" and rest[-1]["exit_code"] == exit_code and rest[-1]["code"] == code
    assert rest[-1]["message"] == message and not [e for e in rest if e["type"] == "result"]
    assert files_in(out) == []
    wait_for(lambda: pid_gone(worker_pid), what=f"the worker (pid {worker_pid}) to be gone too")


def test_a_second_signal_while_stopping_kills_the_stuck_worker_at_once(cli_env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    proc, worker_pid = _separate_until_staged(cli_env, tmp_path, STUCK_MODEL["id"])
    proc.send_signal(signal.SIGTERM)  # the job cannot honour `cancel`: the host waits CANCEL_GRACE for it
    first = time.monotonic()
    time.sleep(1.0)
    assert proc.poll() is None, "the host did not wait for the cancelled job to stop"
    proc.send_signal(signal.SIGINT)  # "stop now"
    second = time.monotonic()
    rest = [json.loads(x) for x in proc.stdout]  # type: ignore[union-attr]
    assert proc.wait(timeout=30) == 143, proc.stderr.read() if proc.stderr else ""
    assert time.monotonic() - first < CANCEL_GRACE, "the second signal did not cut the wait for `cancel` short"
    assert time.monotonic() - second < EXIT_GRACE, "the worker got SIGTERM and its grace, not SIGKILL at once"
    assert rest[-1]["type"] == "exit" and rest[-1]["code"] == "E_TERMINATED"  # the first signal's error
    assert files_in(tmp_path / "out") == []
    wait_for(lambda: pid_gone(worker_pid), what=f"the worker (pid {worker_pid}) to be gone too")


def _separate_until_staged(cli_env: dict[str, str], tmp_path: Path, model: str,
                           **popen: Any) -> tuple[subprocess.Popen[str], int]:
    """`stemsep separate --json -m model` on a 1 s input into tmp_path/out, once its job has written into
    its staging dir; and the worker's pid."""
    src = _write(tmp_path / "in.wav", _stereo(1.0))
    out = tmp_path / "out"
    proc = spawn_cli("separate", "--json", "-m", model, src, "-o", out, env=cli_env, cwd=tmp_path, **popen)
    assert proc.stdout is not None
    worker_pid = None
    for line in proc.stdout:
        event = json.loads(line)
        if event["type"] == "worker":
            worker_pid = event["pid"]
        if event["type"] == "progress" and event["stage"] == "separate":
            assert (out / ".stemsep-{}.partial".format(event["job"])).exists()  # work in progress is staged
            break
    assert worker_pid is not None, proc.stderr.read() if proc.stderr else ""
    return proc, worker_pid


def test_verbose_shows_the_workers_own_output_and_garbage_never_reaches_stdout(cli_env: dict[str, str],
                                                                               tmp_path: Path) -> None:
    src = _write(tmp_path / "in.wav", _stereo(0.5))
    proc = stemsep(cli_env, "separate", "-v", "-m", NOISY_MODEL["id"], src, "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "GARBAGE from fd 1" in proc.stderr and "garbage from C puts()" in proc.stderr
    assert proc.stdout.splitlines() == [str(tmp_path / "out" / f"in_({s})_{NOISY_MODEL['id']}.wav")
                                        for s in ("vocals", "instrumental")]
