"""Shared test fixtures.

Tests never touch the user's real state: every session gets a throwaway STEMSEP_HOME. The machine
configuration (find-links dir of the local torch wheel, overrides, torch backend, python) is the one the
suite starts with: STEMSEP_* variables, or the config file `.ci/run` writes with `stemsep env config set`
(derived from pip's own config), whose package-source keys the session carries into its own home as
STEMSEP_* variables; nothing here names machine paths.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session", autouse=True)
def stemsep_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway STEMSEP_HOME for the whole session (envs built once are reused across tests).

    STEMSEP_TEST_UV_CACHE (optional) keeps uv's download cache between local runs.
    """
    machine = _machine_package_sources()
    home = tmp_path_factory.mktemp("stemsep-home")
    os.environ["STEMSEP_HOME"] = str(home)
    os.environ.update(machine)
    cache = os.environ.get("STEMSEP_TEST_UV_CACHE")
    if cache:
        os.environ["STEMSEP_UV_CACHE_DIR"] = cache
    return home


def _machine_package_sources() -> dict[str, str]:
    """The package-source keys of the machine config the suite starts with that come from its config file,
    as STEMSEP_* variables: children started with homes of their own inherit them too. Dirs and other
    state keys are never carried (the session's state stays throwaway)."""
    from envmgr.config import env_var, load_config, parse_value

    config = load_config()
    carried = {}
    for name in ("index_url", "extra_index_urls", "find_links", "constraints", "overrides", "torch_backend",
                 "python", "offline"):
        if not config.sources[name].startswith("config file"):
            continue
        value = getattr(config, name)
        if isinstance(value, list):
            text = "\n".join(value)
        else:
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if parse_value(name, text, origin=env_var(name)) != value:  # a list item with a comma would be split
            raise pytest.UsageError(f"{name} in {config.config_file} cannot be passed on as {env_var(name)}: "
                                    f"{value!r}; set that variable yourself for the test run")
        carried[env_var(name)] = text
    return carried


@pytest.fixture
def host_stop_signals() -> Iterator[None]:
    """The CLI's stop-signal handlers (envmgr/stop_signals.py) in this process, for tests that stop an in-process
    worker client with a real SIGINT to themselves: it works even when the suite itself runs in the background
    with SIGINT ignored, as `pytest ... &` starts it. The handlers before are restored after the test."""
    from envmgr import stop_signals

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    stop_signals.install()
    yield
    for sig, handler in previous.items():
        if handler is not None:  # None: set outside Python, cannot be put back from here
            signal.signal(sig, handler)


@pytest.fixture(scope="session")
def legacy_registry_path() -> Path:
    """The real legacy StemSep registry from ../shared; tests that need it skip where it is absent."""
    path = SHARED_REFERENCE / "stemsep" / "models.json.bak"
    if not path.is_file():
        pytest.skip(f"legacy registry not available at {path} (it lives in the shared reference data, not the repo)")
    return path


@pytest.fixture(scope="session")
def msst_configs_dir() -> Path:
    path = SHARED_REFERENCE / "msst-configs"
    if not path.is_dir():
        pytest.skip(f"MSST reference configs not available at {path}")
    return path
