"""Machine configuration: defaults under STEMSEP_HOME, file < STEMSEP_<KEY> < CLI, sources, bad values;
`stemsep env config set/unset/show` writing and reading config.toml through the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envmgr.config import KEYS, config_file_path, load_config
from envmgr.errors import ConfigError
from registry.errors import ExitCode

from tests.support.cli import spawn_cli

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
    ("debug_bundle_keep = -1\n", "debug_bundle_keep"),
    ('debug_bundle_keep = "many"\n', "debug_bundle_keep"),
    ('debug_bundle_keep = "\u00b2"\n', "debug_bundle_keep"),  # a digit to str.isdigit, not to int()
])
def test_bad_config_file_is_a_clear_error(home, text, fragment):
    write_config(home, text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert info.value.exit_code == ExitCode.INVALID
    assert fragment in str(info.value)


def test_a_whole_number_key_loads_from_the_file_a_variable_and_set(home, monkeypatch):
    assert load_config().debug_bundle_keep == 50
    write_config(home, "debug_bundle_keep = 7\n")
    assert load_config().debug_bundle_keep == 7
    monkeypatch.setenv("STEMSEP_DEBUG_BUNDLE_KEEP", " 0 ")
    assert load_config().debug_bundle_keep == 0
    monkeypatch.delenv("STEMSEP_DEBUG_BUNDLE_KEEP")
    assert config_set("debug_bundle_keep", "12").returncode == 0
    assert "debug_bundle_keep = 12\n" in config_file_path().read_text() and load_config().debug_bundle_keep == 12
    refused = config_set("debug_bundle_keep", "ten")
    assert refused.returncode == ExitCode.INVALID and "a whole number" in refused.stderr


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


# -- stemsep env config set / unset / show: config.toml written by the command --------------------------------

def config_set(*args: str, **kw):
    return cli("env", "config", "set", *args, **kw)


def test_set_writes_values_that_load_from_the_file_and_show_reports_them(home, tmp_path):
    result = config_set("torch_backend", "none")
    path = config_file_path()
    assert result.returncode == 0, result.stderr
    assert "torch_backend: auto (default) -> none" in result.stdout and str(path) in result.stdout
    # A list key takes each value as one item (a comma inside a pin stays); a relative dir is made absolute
    # against the cwd, a URL is kept.
    work = tmp_path / "work"
    work.mkdir()
    assert config_set("find_links", "wheels", "https://x.org/w", cwd=work).returncode == 0
    assert config_set("overrides", "numpy>=1,<3", "torch==2.13.0+cpu").returncode == 0
    assert config_set("offline", "yes").returncode == 0
    assert config_set("use-uv", "false").returncode == 0  # dashes as the flags spell keys
    config = load_config()
    assert config.torch_backend == "none" and config.overrides == ["numpy>=1,<3", "torch==2.13.0+cpu"]
    assert config.find_links == [str(work / "wheels"), "https://x.org/w"]
    assert config.offline is True and config.use_uv is False
    assert all(config.sources[k] == f"config file {path}"
               for k in ("torch_backend", "find_links", "overrides", "offline", "use_uv"))
    for args in (("env", "config", "show", "--json"), ("env", "config", "--json")):  # plain `config` shows too
        shown = cli(*args)
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)
        assert data["values"]["torch_backend"] == "none" and data["sources"]["offline"].startswith("config file")
    # Setting the same value again writes nothing.
    before = path.stat().st_mtime_ns
    again = config_set("torch_backend", "none")
    assert again.returncode == 0 and "already none" in again.stdout and path.stat().st_mtime_ns == before


def test_unset_removes_keys_and_keeps_the_others(home):
    for key, value in (("torch_backend", "cpu"), ("python", "3.11"), ("enforcement", "report")):
        assert config_set(key, value).returncode == 0
    result = cli("env", "config", "unset", "torch_backend", "python")
    assert result.returncode == 0, result.stderr
    assert "torch_backend: removed" in result.stdout and "auto, the default" in result.stdout
    config = load_config()
    assert config.torch_backend == "auto" and config.sources["torch_backend"] == "default"
    assert config.python is None and config.enforcement == "report"
    text = config_file_path().read_text()
    absent = cli("env", "config", "unset", "python")
    assert absent.returncode == 0 and "nothing to remove" in absent.stdout
    assert config_file_path().read_text() == text


def test_set_refuses_a_bad_value_with_loadings_own_error_and_writes_nothing(home, monkeypatch):
    assert config_set("python", "3.11").returncode == 0
    text = config_file_path().read_text()
    for key, value, expected in (("offline", "maybe", "expected true or false"),
                                 ("torch_backend", "cuda", "unknown torch_backend 'cuda'"),
                                 ("overrides", "torch==", "bad requirement in overrides")):
        result = config_set(key, value)
        assert result.returncode == ExitCode.INVALID and "E_CONFIG" in result.stderr, result.stderr
        assert expected in " ".join(result.stderr.split()), result.stderr
        # The same parser as loading: the variable with that value fails with the same words.
        monkeypatch.setenv(env_var := f"STEMSEP_{key.upper()}", value)
        with pytest.raises(ConfigError) as loading:
            load_config()
        monkeypatch.delenv(env_var)
        assert expected in str(loading.value) or expected in loading.value.why
    assert config_file_path().read_text() == text
    two = config_set("python", "3.11", "3.12")
    assert two.returncode == ExitCode.USAGE and "takes one value" in two.stderr


def test_an_unknown_key_is_a_usage_error_that_lists_the_keys(home):
    result = config_set("torch_bakend", "cpu")
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "E_CONFIG_UNKNOWN_KEY" in result.stderr and "torch_bakend" in result.stderr
    said = " ".join(result.stderr.split())
    assert all(key in said for key in KEYS) and "did you mean torch_backend?" in said
    unset = cli("env", "config", "unset", "nope")
    assert unset.returncode == ExitCode.USAGE and "E_CONFIG_UNKNOWN_KEY" in unset.stderr
    assert not config_file_path().exists()


def test_a_variable_that_still_wins_is_named(home):
    result = config_set("torch_backend", "none", env={"STEMSEP_TORCH_BACKEND": "cpu"})
    assert result.returncode == 0, result.stderr
    assert "STEMSEP_TORCH_BACKEND is set in this environment and wins over the file" in result.stdout
    data = json.loads(cli("env", "config", "show", "--json", env={"STEMSEP_TORCH_BACKEND": "cpu"}).stdout)
    assert data["values"]["torch_backend"] == "cpu" and data["sources"]["torch_backend"] == "env STEMSEP_TORCH_BACKEND"
    assert load_config().torch_backend == "none"  # without the variable the file's value applies


def test_set_keeps_the_other_keys_as_written_and_says_comments_are_dropped(home):
    path = write_config(home, '# my wheels\nenv_store = "rel/envs"\nfind_links = ["/srv/wheels"]\n')
    result = config_set("prewarm", "off")
    assert result.returncode == 0, result.stderr
    assert "comments" in result.stdout and "not kept" in result.stdout
    config = load_config()
    assert config.env_store == path.parent / "rel" / "envs"  # still relative to the file's folder
    assert config.find_links == ["/srv/wheels"] and config.prewarm is False
    assert "# my wheels" not in path.read_text()


def test_values_with_quotes_backslashes_and_non_ascii_round_trip(home, tmp_path):
    odd = tmp_path / 'py "quoted" \\ back\tslash ü'
    assert config_set("python_paths", str(odd), "/usr/bin/python3").returncode == 0
    assert config_set("index_url", "https://mirror.example/simple?token=a\"b").returncode == 0
    config = load_config()
    assert config.python_paths == [odd, Path("/usr/bin/python3")]
    assert config.index_url == "https://mirror.example/simple?token=a\"b"


def test_concurrent_sets_keep_every_key(home):
    """Each `set` reads, changes and writes the file under a lock: no update is lost to another."""
    values = {"torch_backend": "cpu", "python": "3.11", "enforcement": "soft", "offline": "true",
              "prewarm": "false", "index_url": "https://mirror.example/simple"}
    procs = [spawn_cli("env", "config", "set", key, value) for key, value in values.items()]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    config = load_config()
    assert (config.torch_backend, config.python, config.enforcement, config.offline, config.prewarm,
            config.index_url) == ("cpu", "3.11", "soft", True, False, "https://mirror.example/simple")
