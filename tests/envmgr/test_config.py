"""Machine configuration: defaults under STEMSEP_HOME, file < STEMSEP_<KEY> < CLI, sources, bad values."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envmgr.config import KEYS, config_file_path, load_config
from envmgr.errors import ConfigError
from registry.errors import ExitCode

from .conftest import cli


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private STEMSEP_HOME with no STEMSEP_* settings leaking in from the machine."""
    for var in list(os.environ):
        if var.startswith("STEMSEP_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("STEMSEP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write_config(home: Path, text: str) -> Path:
    path = config_file_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_stemsep_home_relocates_all_state(home):
    config = load_config()
    assert config.config_file == home / "config" / "config.toml"
    for key in ("env_store", "cache_dir", "uv_cache_dir", "model_store", "log_dir"):
        assert Path(getattr(config, key)).is_relative_to(home), key
        assert config.sources[key] == "STEMSEP_HOME"
    assert config.torch_backend == "auto" and config.use_uv is True and config.offline is False
    assert config.sources["torch_backend"] == "default"


def test_precedence_file_then_env_then_cli_with_sources(home, monkeypatch):
    path = write_config(home, 'python = "3.10"\ntorch_backend = "cu126"\noverrides = ["torch==2.5.1"]\n'
                              'env_store = "rel/envs"\noffline = true\n')
    monkeypatch.setenv("STEMSEP_TORCH_BACKEND", "cpu")
    monkeypatch.setenv("STEMSEP_PYTHON", "3.12")
    config = load_config(python="3.11")
    assert config.python == "3.11" and config.sources["python"] == "cli"
    assert config.torch_backend == "cpu" and config.sources["torch_backend"] == "env STEMSEP_TORCH_BACKEND"
    assert config.overrides == ["torch==2.5.1"] and config.sources["overrides"] == f"config file {path}"
    assert config.offline is True
    # A relative path in the file is relative to the file's folder, not to the cwd.
    assert config.env_store == path.parent / "rel" / "envs"


def test_env_var_lists_split_on_pathsep_and_commas_but_keep_urls(home, monkeypatch):
    monkeypatch.setenv("STEMSEP_FIND_LINKS", os.pathsep.join(["/wheels/a", "/wheels/b"]) + ",https://x.org/w")
    monkeypatch.setenv("STEMSEP_EXTRA_INDEX_URLS", "https://a.example/simple, http://127.0.0.1:8080/simple")
    monkeypatch.setenv("STEMSEP_OVERRIDES", "torch==2.13.0+cpu,numpy<3")
    monkeypatch.setenv("STEMSEP_USE_UV", "no")
    config = load_config()
    assert config.find_links == ["/wheels/a", "/wheels/b", "https://x.org/w"]
    assert config.extra_index_urls == ["https://a.example/simple", "http://127.0.0.1:8080/simple"]
    assert config.overrides == ["torch==2.13.0+cpu", "numpy<3"]
    assert config.use_uv is False


@pytest.mark.parametrize("text, fragment", [
    ('torch_backnd = "cpu"\n', "torch_backend"),  # typo: the error suggests the real key
    ('torch_backend = "cuda"\n', "torch_backend"),
    ('overrides = ["torch=="]\n', "overrides"),
    ('offline = "maybe"\n', "offline"),
    ('python = "three"\n', "python"),
    ("python = \n", "TOML"),
])
def test_bad_config_file_is_a_clear_error(home, text, fragment):
    write_config(home, text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert info.value.exit_code == ExitCode.INVALID
    assert fragment in str(info.value)


def test_bad_env_var_names_the_variable(home, monkeypatch):
    monkeypatch.setenv("STEMSEP_OFFLINE", "sometimes")
    with pytest.raises(ConfigError, match="STEMSEP_OFFLINE"):
        load_config()


def test_env_config_cli_shows_values_and_sources(home, monkeypatch):
    write_config(home, 'find_links = ["/srv/wheels"]\n')
    result = cli("env", "config", "--json", "--torch-backend", "cpu", env={"STEMSEP_PYTHON": "3.11"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["values"]) == set(KEYS)
    assert data["values"]["torch_backend"] == "cpu" and data["sources"]["torch_backend"] == "cli"
    assert data["values"]["python"] == "3.11" and data["sources"]["python"] == "env STEMSEP_PYTHON"
    assert data["values"]["find_links"] == ["/srv/wheels"] and data["sources"]["find_links"].startswith("config file")
    table = cli("env", "config")
    assert table.returncode == 0 and "STEMSEP_UV_CACHE_DIR" in table.stdout


def test_bad_cli_value_exits_invalid(home):
    result = cli("env", "config", "--torch-backend", "cuda")
    assert result.returncode == ExitCode.INVALID
    assert "torch_backend" in result.stderr and "what to do" in result.stderr
