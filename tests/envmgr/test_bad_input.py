"""Bad input through the real CLI: each a clear error (what, why, what to do) with its own exit code,
and nothing half-built left in the store."""

from __future__ import annotations

import resource
import socket
from pathlib import Path

import pytest

from registry.errors import ExitCode

from .conftest import cli, light_entry, write_registry

pytestmark = pytest.mark.envs


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_one(tmp_path: Path, model, env: dict | None = None, **kw):
    registry = write_registry(tmp_path / "registry.json", model)
    env = {"STEMSEP_ENV_STORE": str(tmp_path / "envs"), "STEMSEP_LOG_DIR": str(tmp_path / "logs"), **(env or {})}
    return cli("setup", model.id, "--registry", str(registry), env=env, **kw)


def no_env_left(tmp_path: Path) -> bool:
    store = tmp_path / "envs"
    if not store.is_dir():
        return True
    return not [p for p in store.iterdir() if not p.name.startswith(".")] and \
        not list((store / ".tmp").glob("*")) if (store / ".tmp").is_dir() else True


def assert_clear(result, code: ExitCode, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    assert "what to do:" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def test_unresolvable_pins_name_the_conflicting_packages(tmp_path):
    model = light_entry("envtest-conflicted", ["python-dateutil==2.9.0", "six<1.5"])
    result = setup_one(tmp_path, model)
    assert_clear(result, ExitCode.UNRESOLVABLE, "python-dateutil", "six")
    assert no_env_left(tmp_path)


def test_python_range_no_interpreter_satisfies_lists_what_was_found(tmp_path):
    model = light_entry("envtest-future", python={"min": "3.99"})
    result = setup_one(tmp_path, model)
    assert_clear(result, ExitCode.NO_INTERPRETER, ">=3.99", "found:")
    assert no_env_left(tmp_path)


def test_unreachable_index_is_a_build_error_naming_the_index(tmp_path):
    index = f"http://127.0.0.1:{closed_port()}/simple"
    result = setup_one(tmp_path, light_entry("envtest-offline-index", ["six"]),
                       env={"STEMSEP_INDEX_URL": index, "STEMSEP_FIND_LINKS": "", "UV_HTTP_RETRIES": "0"})
    assert_clear(result, ExitCode.ENV_BUILD, "unreachable", index)
    assert no_env_left(tmp_path)


def test_store_under_a_regular_file_is_a_store_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = setup_one(tmp_path, light_entry("envtest-light"), env={"STEMSEP_ENV_STORE": str(blocker / "envs")})
    assert_clear(result, ExitCode.STORE, str(blocker))


def test_full_disk_is_a_store_error_and_leaves_no_env(tmp_path):
    """RLIMIT_FSIZE makes every write past 64 KiB fail as on a full disk (root ignores chmod, not this)."""
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = setup_one(tmp_path, light_entry("envtest-big", ["six"]), preexec_fn=limit_file_size,
                       env={"STEMSEP_UV_CACHE_DIR": str(tmp_path / "cold-uv-cache")})
    assert_clear(result, ExitCode.STORE)
    assert no_env_left(tmp_path)


def test_unknown_model_and_runtime_are_usage_errors(tmp_path):
    registry = write_registry(tmp_path / "r.json", light_entry("envtest-known"))
    result = cli("setup", "envtest-knwon", "--registry", str(registry))
    assert result.returncode == ExitCode.USAGE and "envtest-knwon" in result.stderr
