"""Bad input through the real CLI: each a clear error (what, why, what to do) with its own exit code,
and nothing half-built left in the store."""

from __future__ import annotations

import resource
import socket
from pathlib import Path

import pytest

from envmgr.config import env_var, load_config
from envmgr.envs.manager import EnvManager
from envmgr.envs.request import request_for_requirements
from envmgr.errors import EnvBuildError
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
    said = " ".join(result.stderr.split())  # rich wraps lines at the terminal's width
    for fragment in fragments:
        assert fragment in said, (fragment, result.stderr)


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
    assert_clear(result, ExitCode.ENV_BUILD, f"the package index {index} (index_url) is unreachable")
    said = " ".join(result.stderr.split())
    assert "`stemsep env config set index_url" in said and "`stemsep env config unset index_url`" in said
    assert "STEMSEP_INDEX_URL, which wins over config.toml" in said  # the variable set it: changing the file won't do
    assert "PyPI" not in result.stderr.split("what to do:")[0]
    assert no_env_left(tmp_path)


def persisted(tmp_path: Path, key: str, *values: str) -> dict[str, str]:
    """A home of the test's own whose config.toml gets `key = values` through `stemsep env config set`; the
    machine's own variable for that key is blanked so the file's value is the one in effect."""
    env = {"STEMSEP_HOME": str(tmp_path / "home"), env_var(key): ""}
    result = cli("env", "config", "set", key, *values, env=env, unset=[env_var(key)])
    assert result.returncode == 0, result.stderr
    del env[env_var(key)]
    return env


def test_a_missing_find_links_dir_is_named_with_the_settings_that_fix_it(tmp_path):
    missing = tmp_path / "no-wheels-here"
    env = persisted(tmp_path, "find_links", str(missing))
    registry = write_registry(tmp_path / "registry.json", light_entry("envtest-missing-links", ["six"]))
    result = cli("setup", "envtest-missing-links", "--registry", str(registry), unset=["STEMSEP_FIND_LINKS"],
                 env={**env, "STEMSEP_ENV_STORE": str(tmp_path / "envs"), "UV_HTTP_RETRIES": "0"})
    assert_clear(result, ExitCode.ENV_BUILD, f"the find-links dir {missing} cannot be read")
    said = " ".join(result.stderr.split())
    assert "`stemsep env config set find_links" in said and "`stemsep env config unset find_links`" in said
    assert "wins over config.toml" not in said  # it comes from the file: the commands are the fix
    assert no_env_left(tmp_path)


def test_an_unreachable_extra_index_is_named_not_pypi(tmp_path):
    extra = f"http://127.0.0.1:{closed_port()}/extra/simple"
    env = persisted(tmp_path, "extra_index_urls", extra)
    registry = write_registry(tmp_path / "registry.json", light_entry("envtest-extra-index", ["six"]))
    result = cli("setup", "envtest-extra-index", "--registry", str(registry),
                 env={**env, "STEMSEP_ENV_STORE": str(tmp_path / "envs"), "UV_HTTP_RETRIES": "0"})
    assert_clear(result, ExitCode.ENV_BUILD, f"the extra package index {extra} (extra_index_urls) is unreachable")
    assert "`stemsep env config unset extra_index_urls`" in " ".join(result.stderr.split())


def test_an_unreachable_pytorch_index_blames_torch_backend_not_pypi(tmp_path, monkeypatch):
    """torch_backend cpu makes uv fetch torch from download.pytorch.org; a dead proxy makes that host
    unreachable on any machine (a fresh uv cache, so nothing is answered from an earlier run)."""
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{closed_port()}")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    config = load_config(torch_backend="cpu", find_links=[], overrides=[], constraints=[],
                         cache_dir=tmp_path / "cache", uv_cache_dir=tmp_path / "uv-cache", env_store=tmp_path / "envs")
    with pytest.raises(EnvBuildError) as info:
        EnvManager(config).lock(request_for_requirements(["torch"], runtime="test", config=config))
    error = info.value
    assert error.message.endswith("PyTorch's package index (torch_backend = cpu) is unreachable "
                                  "(https://download.pytorch.org/whl/cpu/torch/)"), error.message
    assert "`stemsep env config set torch_backend none`" in error.hint
    assert "`stemsep env config set overrides 'torch==<version>+cpu'`" in error.hint
    assert "PyPI" not in error.message


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
