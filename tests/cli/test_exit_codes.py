"""Every exit code docs/errors.md documents ("Exit codes") is what a real `stemsep` process ends with in a
real case, together with the E_ code that says why (the `--json` exit event's, else `error (E_...)` on stderr).

The table is read from the page, so a row without a case here fails: a new exit code comes with its proof.
Most cases are `separate --json` runs with a user registry of test models: the worker's fault hook
(tests/worker/fault_hook.py) makes the crash, the timeout and the job error; preflight finds the conflicting
pins, the dead index and the impossible Python before anything is built. The others run the command that
owns the code. Each failure is tested in depth elsewhere (tests/worker/test_separate_cli.py,
tests/envmgr/test_bad_input.py and test_cli_outcome.py, tests/preflight/test_cli.py); this is the one table.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from envmgr.worker.process import TEST_HOOK_ENV
from registry.errors import ExitCode
from tests.artifacts.httpserver import FileServer
from tests.conftest import REPO
from tests.envmgr.test_bad_input import closed_port
from tests.envmgr.test_cli_outcome import BUGGY_CLI, run_driver
from tests.preflight.conftest import dsp, write_audio
from tests.support.cli import STOPS, home_sharing_session_envs, json_events, run_cli, write_user_registry
from tests.worker.conftest import FAULT_HOOK
from tests.worker.test_separate_cli import _separate_until_staged

ERRORS_PAGE = REPO / "docs" / "errors.md"
STDERR_CODE = re.compile(r"error \((E_[A-Z0-9_]+)\)")

SLOW = dsp("exit-slow", test_fault={"chunks": 100, "chunk_seconds": 0.1})  # 10 s of job, cancellable per chunk
MODELS = [
    SLOW,
    dsp("exit-worker-dies", test_fault={"fault": "die"}),  # SIGKILLs itself in its first chunk
    dsp("exit-job-error", test_fault={"fault": "exit"}),  # a library's sys.exit() inside the job
    dsp("exit-conflicting-pins", requirements={"pip": {"packages": ["six>=1.17,<1.16"]}}),  # uv says so offline
    dsp("exit-needs-six", requirements={"pip": {"packages": ["six"]}}),  # an env of its own: resolved afresh
    dsp("exit-future-python", requirements={"python": {"min": "3.99"}}),
]
MISSING_FILE = b"the server does not have this\n"


def documented_exit_codes() -> list[int]:
    """The first column of the table under "## Exit codes" in docs/errors.md."""
    section = ERRORS_PAGE.read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return [int(n) for n in re.findall(r"^\| (\d+) \|", section, re.M)]


@dataclass(frozen=True)
class Ended:
    exit_code: int
    code: str | None  # the E_ code the run ended with; None for a run that ended well
    output: str  # what it printed, for the failure message


def ended_json_run(returncode: int, stdout: str, stderr: str) -> Ended:
    """A `--json` run: its stream ends with one exit event, whose exit code is the process's."""
    events = json_events(stdout)
    last = events[-1] if events else {}
    assert last.get("type") == "exit" and last.get("exit_code") == returncode, (returncode, stdout, stderr)
    return Ended(returncode, last.get("code"), stdout + stderr)


def ended(proc: subprocess.CompletedProcess[str]) -> Ended:
    """A run without --json: the code of the first `error (E_...)` on stderr."""
    found = STDERR_CODE.search(proc.stderr)
    return Ended(proc.returncode, found.group(1) if found else None, proc.stdout + proc.stderr)


@dataclass
class Cli:
    """A CLI home of this module's own (the test models as a user registry; the session's envs and caches)
    and the test's own dir."""

    env: dict[str, str]
    tmp_path: Path

    def separate(self, *args: Any, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> Ended:
        """`stemsep separate --json ARGS -o <tmp>/out`, from the test's dir; `unset` drops variables of this
        module's home too."""
        own = {k: v for k, v in self.env.items() if k not in unset}
        proc = run_cli("separate", "--json", *args, "-o", self.tmp_path / "out", env={**own, **(env or {})},
                       unset=unset, cwd=self.tmp_path, timeout=300)
        return ended_json_run(proc.returncode, proc.stdout, proc.stderr)

    def song(self) -> Path:
        return write_audio(self.tmp_path / "song.wav")


@pytest.fixture(scope="module")
def server() -> Iterator[FileServer]:
    srv = FileServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory, stemsep_home: Path, server: FileServer) -> dict[str, str]:
    home = tmp_path_factory.mktemp("exit-codes-home")
    gone = dsp("exit-file-gone", artifacts={"additional": [{  # the server answers 404: it has no such route
        "kind": "other", "filename": "data.bin", "url": server.url("/exit-codes/data.bin"),
        "sha256": hashlib.sha256(MISSING_FILE).hexdigest(), "size_bytes": len(MISSING_FILE)}]})
    write_user_registry(home, "exit-codes", [*MODELS, gone])
    return {**home_sharing_session_envs(home), TEST_HOOK_ENV: str(FAULT_HOOK), "COLUMNS": "200",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@pytest.fixture
def cli(cli_env: dict[str, str], tmp_path: Path) -> Cli:
    return Cli(cli_env, tmp_path)


# exit code -> (the E_ code the run ends with, the run)
CASES: dict[int, tuple[str | None, Callable[[Cli], Ended]]] = {}


def case(exit_code: int, code: str | None) -> Callable[[Callable[[Cli], Ended]], Callable[[Cli], Ended]]:
    def register(run: Callable[[Cli], Ended]) -> Callable[[Cli], Ended]:
        assert exit_code not in CASES, f"two cases for exit code {exit_code}"
        CASES[int(exit_code)] = (code, run)
        return run
    return register


@case(ExitCode.OK, None)
def default_model_separates(cli: Cli) -> Ended:
    return cli.separate(cli.song())


@case(ExitCode.INVALID, "E_REGISTRY_INVALID")
def registry_breaking_a_rule(cli: Cli) -> Ended:
    bad = cli.tmp_path / "registry.json"
    bad.write_text('{"schema_version": "1", "models": [{"id": "Not A Slug"}]}')
    return ended(run_cli("models", "list", "--registry", bad, env=cli.env, cwd=cli.tmp_path))


@case(ExitCode.USAGE, "E_UNKNOWN_MODEL")
def unknown_model(cli: Cli) -> Ended:
    return cli.separate("-m", "exit-no-such-model", cli.song())


@case(ExitCode.PREFLIGHT_BLOCKED, "E_PREFLIGHT_BLOCKED")
def runtime_the_model_does_not_allow(cli: Cli) -> Ended:
    return cli.separate("--runtime", "msst", cli.song())


@case(ExitCode.UNRESOLVABLE, "E_ENV_UNRESOLVABLE")
def conflicting_pins(cli: Cli) -> Ended:
    return cli.separate("-m", "exit-conflicting-pins", cli.song())


@case(ExitCode.ENV_BUILD, "E_ENV_RESOLVE")
def package_index_unreachable(cli: Cli) -> Ended:
    dead = f"http://127.0.0.1:{closed_port()}/simple"
    return cli.separate("-m", "exit-needs-six", cli.song(),
                        env={"STEMSEP_INDEX_URL": dead, "STEMSEP_FIND_LINKS": "", "UV_HTTP_RETRIES": "0"})


@case(ExitCode.NO_INTERPRETER, "E_NO_INTERPRETER")
def python_nothing_satisfies(cli: Cli) -> Ended:
    return cli.separate("-m", "exit-future-python", cli.song())


@case(ExitCode.STORE, "E_STORE")
def home_under_a_regular_file(cli: Cli) -> Ended:
    blocker = cli.tmp_path / "not-a-dir"
    blocker.write_text("")
    dirs = ("ENV_STORE", "CACHE_DIR", "UV_CACHE_DIR", "MODEL_STORE", "LOG_DIR", "STATE_DIR")
    return cli.separate(cli.song(), env={"STEMSEP_HOME": str(blocker / "home")},
                        unset=tuple(f"STEMSEP_{d}" for d in dirs))


@case(ExitCode.ARTIFACT, "E_ARTIFACT_DOWNLOAD_FAILED")
def model_file_not_on_the_server(cli: Cli) -> Ended:
    return cli.separate("-m", "exit-file-gone", cli.song())


@case(ExitCode.WORKER, "E_WORKER_CRASHED")
def worker_killed_mid_job(cli: Cli) -> Ended:
    return cli.separate("-m", "exit-worker-dies", cli.song())


@case(ExitCode.TIMEOUT, "E_JOB_TIMEOUT")
def job_past_its_timeout(cli: Cli) -> Ended:
    return cli.separate("-m", SLOW["id"], "--job-timeout", "1", cli.song())


@case(ExitCode.JOB, "E_WORKER_INTERNAL")
def job_error_reported_by_the_worker(cli: Cli) -> Ended:
    return cli.separate("-m", "exit-job-error", cli.song())


@case(ExitCode.INPUT, "E_INPUT_NOT_FOUND")
def input_missing(cli: Cli) -> Ended:
    return cli.separate(cli.tmp_path / "no-such-song.wav")


@case(ExitCode.INTERNAL, "E_INTERNAL")
def bug_in_stemsep(cli: Cli) -> Ended:
    """The CLI's own entry point with one function replaced by one that raises (no real bug is kept around)."""
    return ended(run_driver(BUGGY_CLI.format(extra=""), "models", "list",
                            env={"STEMSEP_HOME": str(cli.tmp_path / "home"), "COLUMNS": "200"}))


def stopped_mid_job(sig: int, started: Any) -> Callable[[Cli], Ended]:
    """`separate --json` of the slow model, sent `sig` once its job is under way."""
    def run(cli: Cli) -> Ended:
        proc, _ = _separate_until_staged(cli.env, cli.tmp_path, SLOW["id"], preexec_fn=started)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
        return ended_json_run(proc.returncode, stdout, stderr)
    return run


for _stop in STOPS:  # one per exit code: the first way that ends with it (Ctrl-C for 130)
    _sig, _started, _code, _exit_code, _ = _stop.values
    if _exit_code not in CASES:
        case(_exit_code, _code)(stopped_mid_job(_sig, _started))


def test_the_exit_code_table_is_the_enum() -> None:
    assert documented_exit_codes() == sorted(int(c) for c in ExitCode), \
        "docs/errors.md's exit code table and registry.errors.ExitCode differ"


def _label(exit_code: int) -> str:
    return f"{exit_code}-{ExitCode(exit_code).name.lower()}" if exit_code in set(ExitCode) else str(exit_code)


@pytest.mark.parametrize("exit_code", sorted(set(documented_exit_codes()) | set(CASES)), ids=_label)
def test_a_real_run_ends_with_each_documented_exit_code(exit_code: int, cli: Cli) -> None:
    if exit_code not in documented_exit_codes():
        pytest.fail(f"a case ends with exit code {exit_code}, which docs/errors.md does not document")
    if exit_code not in CASES:
        pytest.fail(f"docs/errors.md documents exit code {exit_code} but no case here ends with it: add one")
    code, run = CASES[exit_code]
    result = run(cli)
    assert (result.exit_code, result.code) == (exit_code, code), result.output[-4000:]
