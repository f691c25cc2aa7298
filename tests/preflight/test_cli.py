"""`stemsep preflight` and `stemsep separate` as a user runs them: real CLI processes, a user registry
file with test models, a real HTTP server for artifacts, real uv-built envs and real worker runs.

What `separate` must never do when preflight says no is checked on the filesystem (no env dir, no
model-store file, no output) and on the HTTP server (no request)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.preflight.conftest import TEST_MODELS, dsp, write_audio
from tests.support.cli import home_sharing_session_envs, json_events, run_cli, write_user_registry

ARTIFACT = b"model data " * 100


def files_under(root: Path) -> list[str]:
    """Every file below root (lock files excepted: they are meant to stay)."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if not p.is_dir() and ".locks" not in p.parts)


def env_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


@pytest.fixture
def cli(tmp_path: Path, stemsep_home: Path, light_env: Any, server: Any) -> Any:
    """A CLI home of the test's own (user registry with the test models + one fetched over HTTP, model
    store, state dir), sharing the session's envs and caches unless a test points STEMSEP_ENV_STORE away."""
    home = tmp_path / "home"
    url = server.file("/pf/data.bin", ARTIFACT)
    fetched = dsp("pf-fetch", requirements={"pip": {"packages": ["six"]}, "manual_steps": ["Rename the file by hand"]},
                  artifacts={"additional": [{"kind": "other", "filename": "data.bin", "url": url,
                                             "sha256": hashlib.sha256(ARTIFACT).hexdigest(),
                                             "size_bytes": len(ARTIFACT)}]})
    write_user_registry(home, "test", TEST_MODELS + [fetched])
    env = {**home_sharing_session_envs(home), "COLUMNS": "200"}

    class Cli:
        def __init__(self) -> None:
            self.env, self.home, self.server, self.song = env, home, server, write_audio(tmp_path / "song.wav")
            self.models = home / "models"

        def __call__(self, *args: Any, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
            return run_cli(*args, env={**self.env, **(extra_env or {})}, unset=["STEMSEP_ENFORCEMENT"], cwd=tmp_path)

        def events(self, proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
            return json_events(proc.stdout)

    return Cli()


def test_a_broken_user_registry_file_blocks_nothing_else(cli: Any) -> None:
    """The default model runs its preflight past a malformed user file (reported once); strict mode fails as before."""
    broken = cli.home / "config" / "registries" / "zz-broken.json"
    broken.write_text('{"models": [\n  {"id": "x"\n]}')
    ok = cli("preflight", cli.song)
    assert ok.returncode == 0, ok.stderr
    assert "can proceed" in ok.stdout and "builtin-center-split" in ok.stdout
    assert ok.stderr.count("warning: skipped user registry file") == 1 and f"{broken}:3:1" in ok.stderr
    strict = cli("preflight", cli.song, extra_env={"STEMSEP_REGISTRY_STRICT": "1"})
    assert strict.returncode == 2 and f"{broken}:3:1" in strict.stderr and "skipped" not in strict.stderr


def test_a_direct_url_requirement_runs_only_pinned_or_trusted(cli: Any) -> None:
    """`pkg @ file:///...` installs whatever is there: preflight refuses it until you trust that exact requirement
    (`stemsep models trust`), and `--revoke` takes the trust back."""
    requirement = "six @ file:///nonexistent/six-1.17.0-py2.py3-none-any.whl"
    write_user_registry(cli.home, "url", [dsp("pf-url", requirements={"pip": {"packages": [requirement]}})])
    refused = cli("preflight", cli.song, "-m", "pf-url", "--json")
    assert refused.returncode == 3 and "E_REQUIREMENT_UNTRUSTED" in refused.stdout
    trusted = cli("models", "trust", "pf-url", requirement)
    assert trusted.returncode == 0, trusted.stderr
    again = cli("preflight", cli.song, "-m", "pf-url", "--json")
    assert "E_REQUIREMENT_UNTRUSTED" not in again.stdout and "W_REQUIREMENT_USER_TRUSTED" in again.stdout
    assert cli("models", "trust", "pf-url", requirement, "--revoke").returncode == 0
    assert "E_REQUIREMENT_UNTRUSTED" in cli("preflight", cli.song, "-m", "pf-url", "--json").stdout


def test_preflight_human_view_and_exit_codes(cli: Any) -> None:
    ok = cli("preflight", cli.song)
    assert ok.returncode == 0, ok.stderr
    assert "can proceed" in ok.stdout and "builtin-center-split" in ok.stdout and "ready" in ok.stdout

    blocked = cli("preflight", cli.song, "-m", "pf-steps", "--runtime", "msst")
    assert blocked.returncode == 3, blocked.stderr
    out = blocked.stdout
    assert "why blocked" in out and "E_RUNTIME_NOT_ALLOWED" in out and "E_MANUAL_STEPS" in out
    assert all(step in out for step in TEST_MODELS[3]["requirements"]["manual_steps"])
    assert "E_PREFLIGHT_BLOCKED" in blocked.stderr and "Traceback" not in blocked.stderr

    quoted = cli("preflight", cli.song, "-m", "builtin-center-split", "--runtime", "msst")
    assert quoted.returncode == 3 and "only stemsep-legacy implements it" in quoted.stdout  # blocking_reason


def test_preflight_json_report_matches_its_schema(cli: Any, schema_validator: Any) -> None:
    for args, code in ((["-m", "pf-dsp"], 0), (["-m", "pf-steps", "--overlap", "4"], 3), (["-m", "nope"], 3)):
        proc = cli("preflight", cli.song, "--json", *args)
        assert proc.returncode == code, proc.stderr
        report = json.loads(proc.stdout)
        assert not list(schema_validator.iter_errors(report))
        assert report["can_proceed"] is (code == 0)


def test_separate_blocked_creates_no_env_no_download_no_output(cli: Any, tmp_path: Path) -> None:
    envs, out = tmp_path / "private-envs", tmp_path / "out"
    isolated = {"STEMSEP_ENV_STORE": str(envs)}
    for extra in ([], ["--enforcement", "soft"], ["--confirm-manual-steps", "--no-download"]):
        proc = cli("separate", "--json", "-m", "pf-fetch", cli.song, "-o", out, *extra, extra_env=isolated)
        events = cli.events(proc)
        assert [e["type"] for e in events] == ["preflight", "exit"], proc.stdout
        report = events[0]["report"]
        assert not report["can_proceed"]
        expected = "E_ARTIFACT_NOT_LOCAL" if "--no-download" in extra else "E_MANUAL_STEPS"
        assert [e["code"] for e in report["errors"]] == [expected]
        assert proc.returncode == (8 if "--no-download" in extra else 3) == events[-1]["exit_code"], proc.stderr
        assert env_dirs(envs) == [] and files_under(cli.models) == [] and not out.exists()
        assert cli.server.hits == []  # not even a HEAD: nothing was fetched

    # The same job once preflight says yes (the confirmation above was recorded): download, env, stems.
    proc = cli("separate", "--json", "-m", "pf-fetch", cli.song, "-o", out, extra_env=isolated)
    assert proc.returncode == 0, proc.stderr
    kinds = [e["type"] for e in cli.events(proc)]
    assert kinds.index("artifact.done") < kinds.index("env_ready") < kinds.index("result")
    assert files_under(cli.models) == ["pf-fetch/.manifest.json", "pf-fetch/data.bin"]
    assert (cli.models / "pf-fetch" / "data.bin").read_bytes() == ARTIFACT
    assert len(env_dirs(envs)) == 1 and len(cli.server.hits) == 1
    assert sorted(p.name for p in out.iterdir()) == ["song_(instrumental)_pf-fetch.wav", "song_(vocals)_pf-fetch.wav"]


def test_enforcement_modes_in_separate(cli: Any, tmp_path: Path) -> None:
    def separate(*args: str, extra_env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], list[str]]:
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        proc = cli("separate", "--json", "-m", "pf-steps", cli.song, "-o", out, *args, extra_env=extra_env)
        report = cli.events(proc)[0]["report"]
        return proc.returncode, report, sorted(p.name for p in out.iterdir()) if out.exists() else []

    code, report, made = separate()  # strict: the default
    assert (code, report["enforcement"]["mode"], made) == (3, "strict", [])
    code, report, made = separate("--enforcement", "soft")
    assert (code, made) == (3, [])
    code, report, made = separate("--enforcement", "soft", "--dev-override")
    assert code == 0 and len(made) == 2
    assert report["enforcement"]["overridden"] == ["E_MANUAL_STEPS"]
    assert [e["blocking"] for e in report["errors"]] == [False]
    assert any(w["code"] == "W_DEV_OVERRIDE" and "DEV OVERRIDE" in w["message"] for w in report["warnings"])
    code, report, made = separate("--enforcement", "report")
    assert code == 0 and len(made) == 2 and "W_NOT_ENFORCED" in {w["code"] for w in report["warnings"]}
    code, report, made = separate("--dev-override")  # strict ignores it, and says so
    assert code == 3 and "W_DEV_OVERRIDE_IGNORED" in {w["code"] for w in report["warnings"]}

    # The config decides when no flag does; a fatal error blocks even in report mode.
    code, report, made = separate(extra_env={"STEMSEP_ENFORCEMENT": "report"})
    assert code == 0 and report["enforcement"] == {"mode": "report", "source": "env STEMSEP_ENFORCEMENT",
                                                   "dev_override": False, "overridden": ["E_MANUAL_STEPS"]}
    proc = cli("separate", "--json", "--enforcement", "report", tmp_path / "missing.wav", "-o", tmp_path / "o")
    assert proc.returncode == 12 and cli.events(proc)[-1]["code"] == "E_INPUT_NOT_FOUND"


def test_dev_override_is_loud_for_people(cli: Any, tmp_path: Path) -> None:
    proc = cli("separate", "-m", "pf-steps", "--enforcement", "soft", "--dev-override", cli.song,
               "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "W_DEV_OVERRIDE" in proc.stderr and "DEV OVERRIDE: proceeding despite 1 error(s) (E_MANUAL_STEPS)" in proc.stderr


def test_recommended_settings_apply_unless_overridden(cli: Any) -> None:
    """Preflight's resolved settings carry provenance; an explicit value is shown as the user's."""
    proc = cli("preflight", cli.song, "-m", "bs-roformer-viperx-1297", "--runtime", "msst", "--json",
               "--no-download", "--overlap", "8")
    report = json.loads(proc.stdout)
    overlap = report["resolved"]["settings"]["settings"]["overlap"]
    assert (overlap["param"], overlap["value"], overlap["provenance"]) == ("inference.num_overlap", 8, "user")
    assert "W_SETTING_OVERRIDDEN" in {w["code"] for w in report["warnings"]}
    proc = cli("preflight", cli.song, "-m", "bs-roformer-viperx-1297", "--runtime", "msst", "--json", "--no-download")
    overlap = json.loads(proc.stdout)["resolved"]["settings"]["settings"]["overlap"]
    assert (overlap["value"], overlap["provenance"]) == (4, "registry")


def test_overlap_is_read_as_written_and_a_float_divisor_becomes_an_int(cli: Any) -> None:
    """`--overlap 4.0` for a divisor reaches the runtime as the int 4 (a float divisor crashes all three),
    with a note; a value no runtime accepts is refused by the option itself."""
    proc = cli("preflight", cli.song, "-m", "bs-roformer-viperx-1297", "--runtime", "msst", "--json",
               "--no-download", "--overlap", "4.0")
    resolved = json.loads(proc.stdout)["resolved"]["settings"]
    overlap = resolved["settings"]["overlap"]
    assert (overlap["source_value"], overlap["value"]) == (4.0, 4) and "integer 4" in overlap["note"]
    assert '"num_overlap": 4}' in json.dumps(resolved["native"])  # an int in the job message, not 4.0
    proc = cli("preflight", cli.song, "-m", "bs-roformer-viperx-1297", "--overlap", "-1")
    assert proc.returncode == 2 and "not a number >= 0" in proc.stderr


def test_batch_skips_inputs_preflight_blocks_and_runs_the_rest(cli: Any, tmp_path: Path) -> None:
    """An input-level policy error (mono into a stereo-only model on a runtime that does not upmix) blocks
    that input only: the other input is separated and the batch exits with the blocked input's code."""
    mono = write_audio(tmp_path / "mono.wav", channels=1)
    out = tmp_path / "out"
    proc = cli("separate", "--json", "-m", "pf-stereo-only", cli.song, mono, "-o", out)
    events = cli.events(proc)
    report = events[0]["report"]
    assert report["can_proceed"] and [i["state"] for i in report["inputs"]] == ["ok", "blocked"]
    skipped = next(e for e in events if e["type"] == "error")
    assert (skipped["job"], skipped["input"], skipped["code"], skipped["exit_code"]) == (None, str(mono),
                                                                                          "E_MONO_UNSUPPORTED", 3)
    summary = next(e for e in events if e["type"] == "summary")
    assert (summary["ok"], summary["failed"]) == (1, 1)
    assert proc.returncode == 3 and events[-1]["code"] == "E_BATCH"
    assert sorted(p.name for p in out.iterdir()) == ["song_(instrumental)_pf-stereo-only.wav",
                                                     "song_(vocals)_pf-stereo-only.wav"]
