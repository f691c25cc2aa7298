"""How every `stemsep` command ends, through the real CLI in a child process (envmgr/cli/outcome.py,
docs/errors.md): a bug exits 70 with its traceback in a log file the message names, Ctrl-C exits 130 with
one E_CANCELLED (SIGTERM 143 and SIGHUP 129, each with its own code; SIGINT even where the CLI was started
with it ignored, as `cmd &` does), usage errors exit 2.

A bug is made by a `python -c` driver that replaces one function the command calls with one that raises,
then runs the CLI's own entry point: that tests the handler, whatever the bug.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.cli import STOPS, cli_environ, json_events, run_cli, spawn_cli, under_nohup
from tests.support.wait import blocked_reading_a_pipe, wait_for

# `stemsep ARGS...` whose registry listing raises an exception nobody anticipated.
BUGGY_CLI = """
import sys
import envmgr.catalog.registry_files

def list_registry_files(*args, **kwargs):
    raise RuntimeError("simulated bug in the registry listing")

envmgr.catalog.registry_files.registry_files = list_registry_files
{extra}
from envmgr.cli.main import run
run()
"""
# `stemsep separate ...` whose early worker raises while starting.
BUGGY_SEPARATE = """
import envmgr.worker.prewarm

def start(self):
    raise KeyError("simulated bug in the early worker")

envmgr.worker.prewarm.EarlyWorker.start = start
from envmgr.cli.main import run
run()
"""
LOG_PATH = re.compile(r"the log file (\S+)")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A home of the test's own; the temp dir is the test's too, to see what lands there. COLUMNS: rich wraps
    messages at the terminal width; keep paths on one line."""
    (tmp_path / "tmp").mkdir()
    return {"STEMSEP_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"), "COLUMNS": "400"}


def run_driver(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -c script ARGS...` as run_cli runs the CLI; the log dir is the home's unless `env` names one."""
    return subprocess.run([sys.executable, "-c", script, *args], env=cli_environ(env, unset=["STEMSEP_LOG_DIR"]),
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def crash_log(stderr: str) -> Path:
    found = LOG_PATH.search(stderr)
    assert found, stderr
    return Path(found.group(1))


def test_a_bug_exits_70_and_its_traceback_is_in_the_log_the_message_names(env: dict[str, str], tmp_path: Path):
    r = run_driver(BUGGY_CLI.format(extra=""), "models", "list", env=env)
    assert r.returncode == 70, r.stderr
    assert "error (E_INTERNAL): unexpected error (a bug in stemsep): RuntimeError: simulated bug" in r.stderr
    assert "please report" in r.stderr and "Traceback" not in r.stderr  # the traceback is in the file
    log = crash_log(r.stderr)
    assert log.parent == tmp_path / "home" / "logs" and log.name.startswith("crash-")
    text = log.read_text()
    assert "command: stemsep models list" in text and "stemsep-runtime" in text
    assert "Traceback (most recent call last)" in text and "in list_registry_files" in text
    assert text.rstrip().endswith("RuntimeError: simulated bug in the registry listing")
    assert os.listdir(log.parent) == [log.name]  # written whole, under its final name
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.parametrize("broken", ["log dir is a file", "config does not load"])
def test_a_bug_is_logged_in_the_temp_dir_when_the_log_dir_cannot_be_used(broken: str, env: dict[str, str],
                                                                        tmp_path: Path):
    home = tmp_path / "home"
    if broken == "log dir is a file":
        (tmp_path / "not-a-dir").write_text("")
        env["STEMSEP_LOG_DIR"] = str(tmp_path / "not-a-dir")
    else:
        (home / "config").mkdir(parents=True)
        (home / "config" / "config.toml").write_text('no_such_key = "x"\n')
    r = run_driver(BUGGY_CLI.format(extra=""), "models", "list", env=env)
    assert r.returncode == 70, r.stderr
    log = crash_log(r.stderr)
    assert log.parent == tmp_path / "tmp" and log.name.startswith("stemsep-crash-")
    assert "RuntimeError: simulated bug" in log.read_text()


def test_a_bug_with_nowhere_to_log_prints_its_traceback(env: dict[str, str], tmp_path: Path):
    (tmp_path / "file").write_text("")
    env["STEMSEP_LOG_DIR"] = str(tmp_path / "file")
    no_temp_dir = f"import tempfile\ntempfile.gettempdir = lambda: {str(tmp_path / 'file' / 'tmp')!r}"
    r = run_driver(BUGGY_CLI.format(extra=no_temp_dir), "models", "list", env=env)
    assert r.returncode == 70, r.stderr
    assert "Traceback (most recent call last)" in r.stderr and "in list_registry_files" in r.stderr
    assert "error (E_INTERNAL)" in r.stderr and "no log file could be written" in r.stderr


def test_a_bug_in_a_json_run_ends_the_stream_with_its_exit_event(env: dict[str, str], tmp_path: Path):
    song = tmp_path / "song.wav"
    song.write_bytes(b"")
    r = run_driver(BUGGY_SEPARATE, "separate", "--json", str(song), env=env)
    assert r.returncode == 70, r.stderr
    events = json_events(r.stdout)
    assert events[-1]["type"] == "exit" and events[-1]["code"] == "E_INTERNAL" and events[-1]["exit_code"] == 70
    log = crash_log(events[-1]["hint"])
    assert "KeyError: 'simulated bug in the early worker'" in log.read_text()
    assert crash_log(r.stderr) == log and os.listdir(log.parent) == [log.name]  # reported twice, logged once


@pytest.mark.parametrize("sig, started, code, exit_code, message", STOPS)
def test_a_stop_signal_in_any_command_is_one_error_with_its_exit_code(env: dict[str, str], tmp_path: Path, sig,
                                                                      started, code, exit_code, message):
    proc, writer = _validate_blocked_on_a_fifo(env, tmp_path, preexec_fn=started)
    try:
        proc.send_signal(sig)  # the reader is now blocked in read(): inside the command
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == exit_code, err
    assert err.count(code) == 1 and message in err
    assert "Traceback" not in err and "Aborted" not in err


def test_sighup_under_nohup_changes_nothing(env: dict[str, str], tmp_path: Path):
    proc, writer = _validate_blocked_on_a_fifo(env, tmp_path, preexec_fn=under_nohup)
    try:
        proc.send_signal(signal.SIGHUP)  # ignored, as nohup asked; then the registry arrives
        os.write(writer, b'{"schema_version": "1", "models": []}')
    finally:
        os.close(writer)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "E_HANGUP" not in err


def _validate_blocked_on_a_fifo(env: dict[str, str], tmp_path: Path, **popen) -> tuple[subprocess.Popen[str], int]:
    """`stemsep registry validate FIFO`, once it is blocked reading the FIFO; and the FIFO's write end."""
    fifo = tmp_path / "registry.json"
    os.mkfifo(fifo)
    proc = spawn_cli("registry", "validate", fifo, env=env, **popen)  # blocks reading the FIFO until a writer comes
    writer = wait_for(lambda: _open_writer(fifo), what="stemsep to open the FIFO", process=proc, timeout=60)
    wait_for(lambda: blocked_reading_a_pipe(proc.pid), what="stemsep to block reading the FIFO", process=proc)
    return proc, writer


def _open_writer(fifo: Path) -> int | None:
    """A write end of the FIFO, once a reader has it open (before that, opening without blocking fails)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


def test_usage_errors_exit_2(env: dict[str, str]):
    ours = run_cli("registry", "validate", "--mode", "lenient", env=env)
    assert ours.returncode == 2 and "error (E_USAGE): unknown mode 'lenient'" in ours.stderr
    typers = run_cli("models", "list", "--no-such-option", env=env)  # typer's own check, its own message
    assert typers.returncode == 2 and "No such option" in typers.stderr and "E_INTERNAL" not in typers.stderr
